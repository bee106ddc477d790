# %% tags=["after:owner-waiting"]
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score

import duet as sy
from duet.util import get_root_data_path

duet = sy.join_duet(loopback=True)

# %% tags=["after:setup-done"]
print(duet.store.pandas)
data_ptr = duet.store[0]
target_ptr = duet.store[1]
print(data_ptr)
print(target_ptr)

# %%
# what the owner tells about the data is all we know of it
print(duet.store.pandas["Description"][0])
print(duet.store.pandas["Description"][1])
in_dim = 4
out_dim = 3
n_samples = 150


# %%
class SyNet(sy.Module):
    def __init__(self, torch_ref):
        super().__init__(torch_ref=torch_ref)
        self.layer1 = self.torch_ref.nn.Linear(in_dim, 20)
        self.layer2 = self.torch_ref.nn.Linear(20, 30)
        self.out = self.torch_ref.nn.Linear(30, out_dim)

    def forward(self, x):
        x = self.torch_ref.nn.functional.relu(self.layer1(x))
        x = self.torch_ref.nn.functional.relu(self.layer2(x))
        output = self.torch_ref.nn.functional.log_softmax(self.out(x), dim=1)
        return output


torch.manual_seed(0)
local_model = SyNet(torch)
remote_model = local_model.send(duet)
remote_torch = duet.torch
params = remote_model.parameters()
optim = remote_torch.optim.Adam(params=params, lr=0.05)


# %%
def train(iterations, model, torch_ref, optim, data_ptr, target_ptr):
    losses = []
    for i in range(iterations):
        optim.zero_grad()
        output = model(data_ptr)
        loss = torch_ref.nn.functional.nll_loss(output, target_ptr.long())
        loss_item = loss.item()
        loss_value = loss_item.get(
            reason="To evaluate training progress", request_block=True, timeout_secs=5
        )
        if i % 10 == 0:
            print("Epoch", i, "loss", loss_value)
        losses.append(loss_value)
        loss.backward()
        optim.step()
    return losses


iteration = 40
losses = train(iteration, remote_model, remote_torch, optim, data_ptr, target_ptr)
print("first loss", losses[0], "last loss", losses[-1])


# %%
def get_local_model(model):
    if not model.is_local:
        local_model = model.get(
            request_block=True,
            reason="To run test and inference locally",
            timeout_secs=5,
        )
    else:
        local_model = model
    return local_model


local_model = get_local_model(remote_model)

# %%
# our own held-out flowers, in our own data folder
iris_test = pd.read_csv(get_root_data_path() / "iris-test.csv")
X_test = iris_test.loc[:, iris_test.columns != "species"]
y_test = iris_test["species"]
X_test = torch.FloatTensor(np.array(X_test))
y_test = torch.LongTensor(np.array(y_test))

# %%
preds = []
with torch.no_grad():
    for i in range(len(X_test)):
        sample = X_test[i]
        y_hat = local_model(sample.unsqueeze(0))
        pred = y_hat.argmax().item()
        preds.append(pred)
acc = accuracy_score(y_test, preds)
print("Overall test accuracy", acc * 100)
