# %%
import time

import torch

import duet as sy

# %%
duet = sy.launch_duet(loopback=True)

# %% tags=["published"]
torch.tensor([1.0, 2.0, 3.0], requires_grad=True).send(duet, pointable=True, tags=["a"])
torch.tensor([2.0, 3.0]).send(duet, pointable=True, tags=["b"])
torch.tensor([4.0, 5.0]).send(duet, pointable=True, tags=["c"])
torch.tensor([6.0, 7.0]).send(duet, pointable=True, tags=["d"])
sy.lib.python.Int(2).send(duet, pointable=True, tags=["e"])
print(duet.store.pandas)

# %% tags=["after:requested"]
# each request says which tagged data, and which operation, the value came from
deadline = time.monotonic() + 20
while len(duet.requests) < 5 and time.monotonic() < deadline:
    time.sleep(0.1)
print(duet.requests.pandas[["Reason", "Tags", "Op"]].to_string())
