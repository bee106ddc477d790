# %% tags=["after:owner-waiting"]
import duet as sy

duet = sy.join_duet(network_url="http://localhost:5000", loopback=True)
# %%
import asyncio


async def wait_until(condition_func, timeout=20):
    i = 0
    cond = condition_func(duet)
    while not cond:
        await asyncio.sleep(1)
        i += 1
        if i >= timeout:
            raise Exception(f"condition not statisfied in {timeout} second")
        cond = condition_func(duet)
# %% tags=["after:published", "store"]
await wait_until(lambda duet: len(duet.store) == 3)
duet.store.pandas
# %%
for ptr in duet.store:
    ptr.request(reason="some reason")
# %% tags=["requested"]
await wait_until(lambda duet: len(duet.requests.requests) == 3)
duet.requests.pandas
# %% tags=["after:list-published"]
await wait_until(lambda duet: duet.store[-1].tags == ["tag_x"])
list_ptr = duet.store[-1]
for p in list_ptr:
    print(p)
