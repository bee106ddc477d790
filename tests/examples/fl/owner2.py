# %%
import numpy as np
import torch as th

import duet as sy

# %% tags=["after:joined-1"]
duet = sy.launch_duet(loopback=True)

# %%
data = th.FloatTensor(np.array([50, 58, 66, 74, 82]).reshape(-1, 1))
data = data.tag("DO2 data")
data = data.describe("Dataset of 5 samples, 1 feature")
data_ptr = data.send(duet, searchable=True)
print(duet.store.pandas)

# %% tags=["published-2"]
duet.requests.add_handler(
    action="accept",
    print_local=True,  # print the result in your notebook
)

# %% tags=["after:averaged"]
# what was released, and who decided
print(duet.requests.pandas.groupby(["Status", "Decided by"]).size().to_string())
