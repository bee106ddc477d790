# %% tags=["after:owner-waiting"]
# PySyft 0.5's examples/differential-privacy/pydp, the data scientist's notebook, for duet.
# Changed: `import duet as sy`; the Max cells come last, as duet refuses PyDP's Max (no DP
# maximum here: duet.pydp maps BoundedMean, BoundedSum and Count onto duet.privacy) and a
# refused cell ends the notebook. Each result is released under the owner's budget at once:
# the notebook's .get(request_block=True, ...) returns it, and no request is made.
import duet as sy

duet = sy.join_duet(loopback=True)

# %% tags=["after:published"]
print(duet.store.pandas)

# %%
# this will allow us to use pydp like duet.pydp.xxx
sy.load("pydp")

# %%
BoundedMean = duet.pydp.algorithms.laplacian.BoundedMean

# %%
carrots_eaten_ptr = duet.store["carrots_eaten"]


# calculates mean applying differential privacy
def private_mean(privacy_budget: float) -> float:
    x_ptr = BoundedMean(privacy_budget, 1, 100)
    return x_ptr.quick_result(carrots_eaten_ptr).get(
        request_block=True,
        reason="To get the private_mean",
        timeout_secs=10,
    )


# %%
prv_mean = private_mean(0.8)
print("Private Mean: ", prv_mean)

# %%
assert prv_mean > 40 and prv_mean < 60

# %%
Count = duet.pydp.algorithms.laplacian.Count

# %%
carrots_eaten_limit_ptr = duet.store["carrots_eaten_limit"]


# Calculates number of animals who ate more than "limit" carrots applying differential privacy.
def private_count_above(privacy_budget: float) -> int:
    x = Count(privacy_budget, dtype="int")
    return x.quick_result(carrots_eaten_limit_ptr).get(
        request_block=True,
        reason="To get the private_count_above",
        timeout_secs=10,
    )


# %%
prv_count_above = private_count_above(1)
print("private count above:\t" + str(prv_count_above))

# %%
assert prv_count_above > 60

# %%
BoundedSum = duet.pydp.algorithms.laplacian.BoundedSum


# %%
# Function to calculate sum of carrots eaten applying differential privacy.
def private_sum(privacy_budget: float) -> int:
    x = BoundedSum(privacy_budget, 1, 100, dtype="float")
    return x.quick_result(carrots_eaten_ptr).get(
        request_block=True,
        reason="To get the private_count_above",
        timeout_secs=10,
    )


# %%
prv_sum = private_sum(1)
print("Private Sum:\t" + str(prv_sum))

# %%
assert prv_sum > 9000 and prv_sum < 11000

# %% tags=["done"]
# duet: what is left of the budget on the carrots
print("left on carrots_eaten:", duet.privacy.budget("carrots_eaten")["remaining"])

# %% tags=["raises-exception"]
Max = duet.pydp.algorithms.laplacian.Max


# %%
# Function to return the maximum of the number of carrots eaten by any one animal appyling differential privacy.
def private_max(privacy_budget: float) -> int:
    # 0 and 100 are the upper and lower limits for the search bound.
    x = Max(privacy_budget, 0, 100, dtype="int")
    return x.quick_result(carrots_eaten_ptr).get(
        request_block=True,
        reason="To get the private_max",
        timeout_secs=10,
    )


# %%
prv_max = private_max(1)
print("private max:\t" + str(prv_max))

# %%
assert prv_max < 100
