# %%
import time

import torch

import duet as sy


def wait_until(condition, timeout=20):
    """Poll until condition(duet) holds, as a person refreshing a table would."""
    deadline = time.monotonic() + timeout
    while not condition(duet):
        if time.monotonic() > deadline:
            raise Exception(f"condition not satisfied in {timeout} seconds")
        time.sleep(0.1)


# %%
duet = sy.launch_duet(loopback=True)

# %% tags=["published"]
torch.tensor([1.0, 2.0]).send(duet, pointable=True, tags=["tag1"], description="some description")
torch.tensor([3.0, 4.0]).send(duet, pointable=True, tags=["tag2"], description="some description")
torch.tensor([5.0, 6.0]).send(
    duet, pointable=True, tags=["tag3", "tag4"], description="some description"
)
print(duet.store.pandas)

# %% tags=["after:requested"]
# the scientist asked for all three; nobody has decided yet
wait_until(lambda duet: len(duet.requests.requests) == 3)
print(duet.requests.pandas)

# %% tags=["handled"]
# handlers decide the requests waiting, and those to come
duet.requests.add_handler(action="accept", tags=["tag1"])
wait_until(lambda duet: len(duet.requests.requests) == 2)
duet.requests.add_handler(action="deny", tags=["tag2"])
wait_until(lambda duet: len(duet.requests.requests) == 1)
duet.requests.add_handler(action="accept", tags=["tag3", "tag4"])
wait_until(lambda duet: len(duet.requests.requests) == 0)
print(duet.requests.pandas)

# %% tags=["after:checked"]
# remove_handler, clear_handlers
wait_until(lambda duet: len(duet.requests.handlers.handlers) == 3)
print(duet.requests.handlers.pandas)
duet.requests.remove_handler("tag1")
wait_until(lambda duet: len(duet.requests.handlers.handlers) == 2)
print(duet.requests.handlers.pandas)
duet.requests.remove_handler(duet.requests.handlers[0]["id"])
wait_until(lambda duet: len(duet.requests.handlers.handlers) == 1)
print(duet.requests.handlers.pandas)
duet.requests.clear_handlers()
wait_until(lambda duet: len(duet.requests.handlers.handlers) == 0)
print("handlers left:", len(duet.requests.handlers.handlers))

# %%
# a handler that expires by itself
duet.requests.add_handler(action="accept", tags=["tag1"], timeout_secs=2)
print(duet.requests.handlers.pandas)
wait_until(lambda duet: len(duet.requests.handlers.handlers) == 0, 4)
print("the timed handler is gone:", len(duet.requests.handlers.handlers) == 0)

# %% tags=["list-published"]
# iteration: accept lengths of the objects tagged "tag_x", not the objects themselves
duet.requests.add_handler(action="accept", tags=["tag_x", "__len__"])
wait_until(lambda duet: len(duet.requests.handlers.handlers) == 1)
values = sy.lib.python.List([1.5, 2.5, 3.5])
values.send(duet, pointable=True, tags=["tag_x"])
print(duet.store.pandas)
