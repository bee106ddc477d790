# %%
# PySyft 0.5's examples/differential-privacy/pydp, the data owner's notebook, for duet.
# Changed: `import duet as sy`; the carrots are read from this machine's data folder (no
# download); the owner sets a privacy budget on each published list, since duet releases DP
# statistics under the owner's budget (no request), not through the accept-all handlers.
# on the DO side, there is no need to call pydp.xxx, so it's not necessary to import pydp
import statistics

import pandas as pd

import duet as sy
from duet.util import get_root_data_path

duet = sy.launch_duet(loopback=True)

# %%
# this will allow the DS to call duet.pydp.xxx
sy.load("pydp")

# %%
df = pd.read_csv(
    get_root_data_path() / "animals_and_carrots.csv", sep=",", names=["animal", "carrots_eaten"]
)
df.head()

# %%
# prepare shared data items
carrots_eaten = list(df["carrots_eaten"])
# make it available on duet as the tag "carrots_eaten"
carrots_eaten_ptr = (
    sy.lib.python.List(carrots_eaten).tag("carrots_eaten").send(duet, pointable=True)
)


# %%
# calculates mean without applying differential privacy
def mean_carrots() -> float:
    return statistics.mean(carrots_eaten)


# %%
duet.requests.add_handler(action="accept", print_local=True)
print(duet.requests.handlers)

# %%
print("Mean: ", mean_carrots())

# %%
limit = 70
carrots_eaten_limit = list(df[df.carrots_eaten > limit]["carrots_eaten"])
carrots_eaten_limit_ptr = (
    sy.lib.python.List(carrots_eaten_limit).tag("carrots_eaten_limit").send(duet, pointable=True)
)

# %% tags=["published"]
# duet: what each scientist may spend on each list (epsilon, at delta)
duet.privacy.set_budget("*", "carrots_eaten", epsilon=2.0, delta=1e-5)
duet.privacy.set_budget("*", "carrots_eaten_limit", epsilon=1.0, delta=1e-5)
print(duet.store.pandas)


# %%
# Calculates number of animals who ate more than "limit" carrots without applying differential privacy.
def count_above() -> int:
    return len(carrots_eaten_limit)


# %%
print("Above 70:\t" + str(count_above()))


# %%
# Function to return the maximum of the number of carrots eaten by any one animal without appyling differential privacy.
def max() -> int:
    return df.max().iloc[1]


# %%
print("Max:\t" + str(max()))


# %%
# Function to calculate sum of carrots eaten without applying differential privacy.
def sum_carrots() -> int:
    return df.sum().iloc[1]


# %%
print("Sum:\t" + str(sum_carrots()))

# %% tags=["after:done"]
# duet: what the scientist spent, by the ledger
print(duet.privacy.pandas.to_string())
