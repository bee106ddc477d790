# %% tags=["after:owner-waiting"]
import time

import duet as sy

duet = sy.join_duet(loopback=True)


def wait_until(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while not condition(duet):
        if time.monotonic() > deadline:
            raise Exception(f"condition not satisfied in {timeout} seconds")
        time.sleep(0.1)


# %% tags=["after:published", "requested"]
wait_until(lambda duet: len(duet.store) == 3)
print(duet.store.pandas)
for ptr in duet.store:
    ptr.request(reason="some reason")
wait_until(lambda duet: len(duet.requests.requests) == 3)  # ours, waiting for the owner
print(duet.requests.pandas)

# %% tags=["after:handled", "checked"]
# what the owner's handlers answered
print(duet.requests.pandas)
print("accepted:", duet.store[0].get(request_block=True, reason="once more", timeout_secs=10))
denied = duet.store[1].get(request_block=True, reason="once more", timeout_secs=10)
print("denied:", denied)

# %% tags=["after:list-published"]
wait_until(lambda duet: duet.store[-1].tags == ["tag_x"])
list_ptr = duet.store[-1]
for p in list_ptr:
    print(p)
