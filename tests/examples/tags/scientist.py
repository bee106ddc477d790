# %%
import duet as sy
# %%
import torch
# %% tags=["after:owner-waiting"]
duet = sy.join_duet(network_url="http://localhost:5000", loopback=True)
# %% tags=["after:published"]
duet.store.pandas
# %%
a = duet.store["a"]
b = duet.store["b"]
c = duet.store["c"]
d = duet.store["d"]
e = duet.store["e"]
# %%
result_ptr = a.requires_grad
assert result_ptr.tags == ["a", "requires_grad"]

result_ptr.request(reason="obj.property")
# %%
result_ptr = b.pow(e)
assert result_ptr.tags == ["b", "e", "pow"]

result_ptr.request(reason="obj.method(args)")
# %%
result_ptr = c.pow(exponent=e)
assert result_ptr.tags == ["c", "e", "pow"]

result_ptr.request(reason="obj.method(kwargs)")
# %%
result_ptr = duet.torch.pow(d, e)
assert result_ptr.tags == ["d", "e", "pow"]

result_ptr.request(reason="class.method(args)")
# %% tags=["requested"]
result_ptr = duet.torch.pow(d, 3)
assert result_ptr.tags == ["d", "pow"]

result_ptr.request(reason="args with no .tags")
