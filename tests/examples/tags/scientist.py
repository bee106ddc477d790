# %% tags=["after:owner-waiting"]
import duet as sy

duet = sy.join_duet(loopback=True)

# %% tags=["after:published"]
print(duet.store.pandas)
a = duet.store["a"]
b = duet.store["b"]
c = duet.store["c"]
d = duet.store["d"]
e = duet.store["e"]

# %%
# obj.property: the result carries its input's tags and the attribute's name
result_ptr = a.requires_grad
print(result_ptr.tags)
assert result_ptr.tags == ["a", "requires_grad"]
result_ptr.request(reason="obj.property")

# %%
# obj.method(args)
result_ptr = b.pow(e)
assert result_ptr.tags == ["b", "e", "pow"]
result_ptr.request(reason="obj.method(args)")

# %%
# obj.method(kwargs)
result_ptr = c.pow(exponent=e)
assert result_ptr.tags == ["c", "e", "pow"]
result_ptr.request(reason="obj.method(kwargs)")

# %%
# func(args)
result_ptr = duet.torch.pow(d, e)
assert result_ptr.tags == ["d", "e", "pow"]
result_ptr.request(reason="class.method(args)")

# %% tags=["requested"]
# args with no tags add none
result_ptr = duet.torch.pow(d, 3)
assert result_ptr.tags == ["d", "pow"]
result_ptr.request(reason="args with no .tags")
