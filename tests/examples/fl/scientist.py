# %% tags=["after:owner1-waiting", "joined-1"]
from collections import OrderedDict

import numpy as np
import torch
import torch as th

import duet as sy

duet1 = sy.join_duet(loopback=True)

# %% tags=["after:owner2-waiting"]
duet2 = sy.join_duet(loopback=True)

# %% tags=["after:published-1", "after:published-2"]
print(duet1.store.pandas)
print(duet2.store.pandas)
data1_ptr = duet1.store[0]
data2_ptr = duet2.store[0]
print(data1_ptr)
print(data2_ptr)

# %%
in_dim = 1
out_dim = 1


class SyNet(sy.Module):
    def __init__(self, torch_ref):
        super().__init__(torch_ref=torch_ref)
        self.linear = self.torch_ref.nn.Linear(in_dim, out_dim)

    def forward(self, x):
        x = self.linear(x)
        return x


torch.manual_seed(1)
combined_model = SyNet(torch)


def train(iterations, model, torch_ref, optim, data_ptr, target_ptr):
    losses = []
    for i in range(iterations):
        optim.zero_grad()
        output = model(data_ptr)
        loss = torch_ref.nn.functional.mse_loss(output, target_ptr)
        loss_item = loss.item()
        loss_value = loss_item.get(
            reason="To evaluate training progress",
            request_block=True,
            timeout_secs=5,
        )
        if i % 10 == 0:
            print("Epoch", i, "loss", loss_value)
        losses.append(loss_value)
        loss.backward()
        optim.step()
    return losses


# %%
# the first owner's part: our targets for its six samples stay with us until the model asks
local_model1 = SyNet(torch)
remote_model1 = local_model1.send(duet1)
remote_torch1 = duet1.torch
params = remote_model1.parameters()
optim1 = remote_torch1.optim.Adam(params=params, lr=0.1)
target1_ptr = th.FloatTensor(np.array([4, 9, 14, 19, 25, 29]).reshape(-1, 1))
iteration = 60
losses1 = train(iteration, remote_model1, remote_torch1, optim1, data1_ptr, target1_ptr)
print("owner 1: first loss", losses1[0], "last loss", losses1[-1])

# %%
local_model2 = SyNet(torch)
remote_model2 = local_model2.send(duet2)
remote_torch2 = duet2.torch
params = remote_model2.parameters()
optim2 = remote_torch2.optim.Adam(params=params, lr=0.1)
target2_ptr = th.FloatTensor(np.array([33, 38, 44, 49, 54]).reshape(-1, 1))
losses2 = train(iteration, remote_model2, remote_torch2, optim2, data2_ptr, target2_ptr)
print("owner 2: first loss", losses2[0], "last loss", losses2[-1])

# %% tags=["averaged"]
# averaging the two models' weights
param1 = remote_model1.parameters().get(request_block=True)
param2 = remote_model2.parameters().get(request_block=True)
print("Remote model1 parameters:", param1)
print("Remote model2 parameters:", param2)
remote_model1_updates = remote_model1.get(request_block=True).state_dict()
remote_model2_updates = remote_model2.get(request_block=True).state_dict()
avg_updates = OrderedDict()
avg_updates["linear.weight"] = (
    remote_model1_updates["linear.weight"] + remote_model2_updates["linear.weight"]
) / 2
avg_updates["linear.bias"] = (
    remote_model1_updates["linear.bias"] + remote_model2_updates["linear.bias"]
) / 2
print(avg_updates)

# %%
untrained_model = SyNet(torch)
combined_model.load_state_dict(avg_updates)
del avg_updates
test_data = th.FloatTensor(np.array([16, 30, 40, 62, 78]).reshape(-1, 1))
test_target = th.FloatTensor(np.array([11, 20, 26, 41, 52]).reshape(-1, 1))
with torch.no_grad():
    for i in range(len(test_data)):
        sample = test_data[i]
        y_hat = combined_model(sample)
        print(f"Prediction: {y_hat.item()} Ground Truth: {test_target[i].item()}")
    combined_mse = torch.nn.functional.mse_loss(combined_model(test_data), test_target).item()
    untrained_mse = torch.nn.functional.mse_loss(untrained_model(test_data), test_target).item()
print("test MSE of the averaged model", combined_mse, "untrained", untrained_mse)
