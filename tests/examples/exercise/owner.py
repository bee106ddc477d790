# %%
import torch as th

import duet as sy

# %%
duet = sy.launch_duet(loopback=True)

# %%
# Heights (cm) of six hikers of group B, tagged and described, then sent.
height_data = th.tensor([160.0, 172.5, 181.0, 155.0, 168.0, 190.0])
height_data = height_data.tag("HEIGHTS of GROUP B")
height_data = height_data.describe("Heights (cm) of the six hikers of GROUP B.")
height_data_pointer = height_data.send(duet, pointable=True)

# %%
# Their weights (kg).
weight_data = th.tensor([52, 80, 104, 70, 59, 88])
weight_data = weight_data.tag("WEIGHTS of GROUP B")
weight_data = weight_data.describe("Body weights (kg) of the six hikers of GROUP B.")
weight_data_pointer = weight_data.send(duet, pointable=True)

# %%
print(duet.store.pandas)
assert len(duet.store) == 2

# %% tags=["setup-done"]
duet.requests.add_handler(action="accept")
