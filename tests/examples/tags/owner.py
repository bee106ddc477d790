# %%
import duet as sy
# %%
import torch
# %%
duet = sy.launch_duet(network_url="http://localhost:5000", loopback=True)
# %% tags=["published"]
torch.Tensor([1,2,3]).send(duet, pointable=True, tags=["a"])
torch.Tensor([1,2,3]).send(duet, pointable=True, tags=["b"])
torch.Tensor([1,2,3]).send(duet, pointable=True, tags=["c"])
torch.Tensor([1,2,3]).send(duet, pointable=True, tags=["d"])
sy.lib.python.Int(2).send(duet, pointable=True, tags=["e"])
# %% tags=["after:requested", "requests"]
duet.requests.pandas
