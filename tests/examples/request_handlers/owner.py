# %%
import duet as sy

duet = sy.launch_duet(network_url="http://localhost:5000", loopback=True)
# %%
import asyncio


async def wait_until(condition_func, timeout=3):
    i = 0
    cond = condition_func(duet)
    while not cond:
        await asyncio.sleep(1)
        i += 1
        if i >= timeout:
            raise Exception(f"condition not statisfied in {timeout} second")
        cond = condition_func(duet)
# %%
import torch
# %% tags=["published"]
torch.rand((1, 3)).send(
    duet, tags=["tag1"], description="some description", pointable=True
)
torch.rand((1, 3)).send(
    duet, tags=["tag2"], description="some description", pointable=True
)
torch.rand((1, 3)).send(
    duet, tags=["tag3", "tag4"], description="some description", pointable=True
);
# %% tags=["store"]
await wait_until(lambda duet: len(duet.store) == 3)
duet.store.pandas
# %% tags=["after:requested", "waiting"]
await wait_until(lambda duet: len(duet.requests.requests) == 3)
duet.requests.pandas
# %% tags=["accepted"]
duet.requests.add_handler(action="accept", tags=["tag1"])

await wait_until(lambda duet: len(duet.requests.requests) == 2)
duet.requests.pandas
# %% tags=["denied"]
duet.requests.add_handler(action="deny", tags=["tag2"])

await wait_until(lambda duet: len(duet.requests.requests) == 1)
duet.requests.pandas
# %%
duet.requests.add_handler(action="accept", tags=["tag3", "tag4"])

await wait_until(lambda duet: len(duet.requests.requests) == 0)
# %% tags=["three-handlers"]
await wait_until(lambda duet: len(duet.requests.handlers.handlers) == 3)
duet.requests.handlers.pandas
# %% tags=["two-handlers"]
duet.requests.remove_handler("tag1")
await wait_until(lambda duet: len(duet.requests.handlers.handlers) == 2)
duet.requests.handlers.pandas
# %% tags=["one-handler"]
id_str = duet.requests.handlers[0]["id"].value.__str__().replace("-", "")
duet.requests.remove_handler(id_str)
await wait_until(lambda duet: len(duet.requests.handlers.handlers) == 1)
duet.requests.handlers.pandas
# %% tags=["no-handler"]
duet.requests.clear_handlers()
await wait_until(lambda duet: len(duet.requests.handlers.handlers) == 0)
duet.requests.handlers.pandas
# %% tags=["timed-handler"]
duet.requests.add_handler(action="accept", tags=["tag1"], timeout_secs=5)
duet.requests.handlers.pandas
# %% tags=["timed-out"]
await wait_until(lambda duet: len(duet.requests.handlers.handlers) == 0, 6)
duet.requests.handlers.pandas
# %%
# this says:
#     Accept requests to results of `__len__()` called on objects whose tags is ["tag_x"]
duet.requests.add_handler(action="accept", tags=["tag_x", "__len__"])
await wait_until(lambda duet: len(duet.requests.handlers.handlers) == 1)
duet.requests.handlers.pandas
# %% tags=["list-published"]
sy.lib.python.List([1, 2, 3]).send(duet, pointable=True, tags=["tag_x"])
duet.store.pandas
