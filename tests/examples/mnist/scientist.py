# %% tags=["after:owner-waiting"]
import torch
import torchvision

import duet as sy
from duet.util import get_root_data_path

duet = sy.join_duet(loopback=True)

# %% tags=["after:setup-done"]
remote_torch = duet.torch
remote_torchvision = duet.torchvision


class SyNet(sy.Module):
    def __init__(self, torch_ref):
        super().__init__(torch_ref=torch_ref)
        self.conv1 = self.torch_ref.nn.Conv2d(1, 32, 3, 1)
        self.conv2 = self.torch_ref.nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = self.torch_ref.nn.Dropout2d(0.25)
        self.dropout2 = self.torch_ref.nn.Dropout(0.5)
        self.fc1 = self.torch_ref.nn.Linear(9216, 128)
        self.fc2 = self.torch_ref.nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = self.torch_ref.nn.functional.relu(x)
        x = self.conv2(x)
        x = self.torch_ref.nn.functional.relu(x)
        x = self.torch_ref.nn.functional.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = self.torch_ref.flatten(x, 1)
        x = self.fc1(x)
        x = self.torch_ref.nn.functional.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = self.torch_ref.nn.functional.log_softmax(x, dim=1)
        return output


local_model = SyNet(torch)

# %%
args = {
    "batch_size": 64,
    "test_batch_size": 1000,
    "epochs": 2,
    "lr": 1.0,
    "gamma": 0.7,
    "no_cuda": False,
    "dry_run": False,
    "seed": 42,
    "log_interval": 4,
    "save_model": False,
}

# %%
has_cuda = False
has_cuda_ptr = remote_torch.cuda.is_available()
has_cuda = bool(
    has_cuda_ptr.get(
        request_block=True,
        name="cuda_is_available",
        reason="To run test and inference locally",
        timeout_secs=30,
    )
)
print(has_cuda)
use_cuda = not args["no_cuda"] and has_cuda
remote_torch.manual_seed(args["seed"])
device = remote_torch.device("cuda" if use_cuda else "cpu")
print(f"Data Owner device is {device.type.get()}")

# %%
model = local_model.send(duet)
if has_cuda:
    model.cuda(device)
else:
    model.cpu()
params = model.parameters()
optimizer = remote_torch.optim.Adadelta(params, lr=args["lr"])
scheduler = remote_torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=args["gamma"])


# %%
def train(model, torch_ref, train_loader, optimizer, epoch, args, train_data_length):
    train_batches = round((train_data_length / args["batch_size"]) + 0.5)
    print(f"> Epoch {epoch} in {train_batches} batches")
    if model.is_local:
        print("Error: training requires a remote model")
        return
    model.train()
    for batch_idx, data in enumerate(train_loader):
        data_ptr, target_ptr = data[0], data[1]
        optimizer.zero_grad()
        output = model(data_ptr)
        loss = torch_ref.nn.functional.nll_loss(output, target_ptr)
        loss.backward()
        optimizer.step()
        loss_item = loss.item()
        train_loss = duet.python.Float(0)  # a remote Float for summing
        train_loss += loss_item
        if batch_idx % args["log_interval"] == 0:
            local_loss = None
            local_loss = loss_item.get(
                name="loss",
                reason="To evaluate training progress",
                request_block=True,
                timeout_secs=5,
            )
            if local_loss is not None:
                print(f"Train Epoch: {epoch} {batch_idx} {local_loss:.4}")
            else:
                print(f"Train Epoch: {epoch} {batch_idx} ?")
            if args["dry_run"]:
                break
        if batch_idx >= train_batches - 1:
            print("batch_idx >= train_batches, breaking")
            break


def test_local(model, test_loader, test_data_length):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            output = model(data)
            test_loss += torch.nn.functional.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    test_loss /= test_data_length
    print(
        f"Test set: Average loss: {test_loss:.4f}, Accuracy: {correct}/{test_data_length} "
        f"({100.0 * correct / test_data_length:.0f}%)"
    )


# %%
# MNIST as the owner keeps it, opened on the owner's machine with the transforms we choose
transform_1 = remote_torchvision.transforms.ToTensor()
transform_2 = remote_torchvision.transforms.Normalize(0.1307, 0.3081)
remote_list = duet.python.List()
remote_list.append(transform_1)
remote_list.append(transform_2)
transforms = remote_torchvision.transforms.Compose(remote_list)
train_kwargs = {"batch_size": args["batch_size"]}
train_data_ptr = remote_torchvision.datasets.MNIST(
    str(get_root_data_path()), train=True, download=True, transform=transforms
)
train_loader_ptr = remote_torch.utils.data.DataLoader(train_data_ptr, **train_kwargs)


def get_train_length(train_data_ptr):
    train_data_length = len(train_data_ptr)
    return train_data_length


try:
    if train_data_length is None:
        train_data_length = get_train_length(train_data_ptr)
except NameError:
    train_data_length = get_train_length(train_data_ptr)
print(f"Training Dataset size is: {train_data_length}")

# %%
# our own test set, here
local_transform_1 = torchvision.transforms.ToTensor()
local_transform_2 = torchvision.transforms.Normalize(0.1307, 0.3081)
local_transforms = torchvision.transforms.Compose([local_transform_1, local_transform_2])
test_kwargs = {"batch_size": args["test_batch_size"]}
test_data = torchvision.datasets.MNIST(
    str(get_root_data_path()), train=False, download=True, transform=local_transforms
)
test_loader = torch.utils.data.DataLoader(test_data, **test_kwargs)
test_data_length = len(test_loader.dataset)
print(test_data_length)

# %%
for epoch in range(1, args["epochs"] + 1):
    train(model, remote_torch, train_loader_ptr, optimizer, epoch, args, train_data_length)
    scheduler.step()

# %% tags=["evaluated"]
local_model = model.get(
    request_block=True, name="model_download", reason="test evaluation", timeout_secs=5
)
test_local(local_model, test_loader, test_data_length)

# %%
# one digit of our own, classified by the downloaded model
image, label = test_data[0]
prediction = local_model(image.unsqueeze(0)).argmax().item()
print(f"the model says {prediction}, the label is {label}")
