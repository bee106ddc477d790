# %% tags=["after:owner-waiting"]
import duet as sy

duet = sy.join_duet(loopback=True)

# %% tags=["after:published"]
# Part 2: what has the owner published?
print(duet.store.pandas)
data_ptr = duet.store[0]
print(data_ptr)

# %%
# Part 3: the mean age, computed on the owner's machine.
average_age = data_ptr.float().mean()
try:
    average_age.get()
except Exception as e:
    print(e)

# %% tags=["first-request"]
average_age.request(reason="Please approve!")

# %% tags=["after:denied"]
try:
    average_age.get()
except Exception as e:
    print(e)
print(duet.requests.pandas)

# %% tags=["second-request"]
average_age.request(reason="I need the mean age of the club for my report.")

# %% tags=["after:accepted"]
avg = average_age.get()
assert round(avg.item(), 4) == 42.3333
print("mean age:", avg.item())

# %% tags=["after:auto-accept"]
max_age = data_ptr.float().amax()
min_age = data_ptr.float().amin()
max_age_result = max_age.get(request_block=True, reason="download the maximum age", timeout_secs=10)
assert round(max_age_result.item()) == 62
min_age_result = min_age.get(request_block=True, reason="download the minimum age", timeout_secs=10)
assert round(min_age_result.item()) == 27
print("oldest:", max_age_result.item(), "youngest:", min_age_result.item())

# %%
# With an owner who accepts everything, the raw data is one request away.
age_data = data_ptr.get(request_block=True, delete_obj=False)
assert age_data.tolist() == [31, 45, 27, 62, 50, 39]
print(age_data)
