# %% tags=["after:owner-waiting"]
# PySyft 0.5's examples/differential-privacy/opacus, the data scientist's notebook, for duet.
# Changed: `import duet as sy`. The notebook stops at the PrivacyEngine, which duet refuses: a
# training loop the scientist drives cannot carry an owner-enforced DP guarantee, and the
# refusal names the duet.privacy.train job the engine's settings become. The training, test
# and inference cells after it (which would never run) are left out.
import torch
import torchvision

import duet as sy
from duet.util import get_root_data_path

sy.load("opacus")

# %%
duet = sy.join_duet(loopback=True)


# %% tags=["after:setup-done"]
class SyNet(sy.Module):
    def __init__(self, torch_ref):
        super().__init__(torch_ref=torch_ref)
        self.conv1 = self.torch_ref.nn.Conv2d(1, 16, 8, 2, padding=3)
        self.conv2 = self.torch_ref.nn.Conv2d(16, 32, 4, 2)
        self.fc1 = self.torch_ref.nn.Linear(32 * 4 * 4, 32)
        self.fc2 = self.torch_ref.nn.Linear(32, 10)

    def forward(self, x):
        F = self.torch_ref.nn.functional
        # x of shape [B, 1, 28, 28]
        x = F.relu(self.conv1(x))  # -> [B, 16, 14, 14]
        x = F.max_pool2d(x, 2, 1)  # -> [B, 16, 13, 13]
        x = F.relu(self.conv2(x))  # -> [B, 32, 5, 5]
        x = F.max_pool2d(x, 2, 1)  # -> [B, 32, 4, 4]
        x = x.view(-1, 32 * 4 * 4)  # -> [B, 512]
        x = F.relu(self.fc1(x))  # -> [B, 32]
        x = self.fc2(x)  # -> [B, 10]
        return x


# %%
# now we can create the model and pass in our local copy of torch
local_model = SyNet(torch)

# %%
# we need some transforms for the MNIST data set
local_transform_1 = torchvision.transforms.ToTensor()  # this converts PIL images to Tensors
local_transform_2 = torchvision.transforms.Normalize(0.1307, 0.3081)  # this normalizes the dataset

# compose our transforms
local_transforms = torchvision.transforms.Compose([local_transform_1, local_transform_2])

# %%
# Lets define a few settings which are from the original Opacus MNIST example args
batch_size = 64
test_batch_size = 1024
args = {
    "batch_size": batch_size,
    "test_batch_size": test_batch_size,
    "epochs": 10,
    "n_runs": 1,
    "lr": 0.1,
    "sigma": 1.0,
    "max_per_sample_grad_norm": 1.0,
    "delta": 1e-5,
    "no_cuda": False,
    "dry_run": True,
    "seed": 42,  # the meaning of life
    "log_interval": 10,
    "save_model": True,
    "disable_dp": False,
}

# %%
# we will configure the test set here locally since we want to know if our Data Owner's
# private training dataset will help us reach new SOTA results for our benchmark test set
test_kwargs = {
    "batch_size": args["test_batch_size"],
}

test_data = torchvision.datasets.MNIST(
    str(get_root_data_path()), train=False, download=True, transform=local_transforms
)
test_loader = torch.utils.data.DataLoader(test_data, **test_kwargs)
test_data_length = len(test_loader.dataset)
print(test_data_length)

# %%
model = local_model.send(duet)

# %%
remote_torch = duet.torch

# %%
# lets ask to see if our Data Owner has CUDA
has_cuda = False
has_cuda_ptr = remote_torch.cuda.is_available()
has_cuda = bool(
    has_cuda_ptr.get(
        request_block=True,
        reason="To run test and inference locally",
        timeout_secs=5,  # change to something slower
    )
)
print(has_cuda)

# %%
use_cuda = not args["no_cuda"] and has_cuda
# now we can set the seed
remote_torch.manual_seed(args["seed"])

device = remote_torch.device("cuda" if use_cuda else "cpu")
print(f"Data Owner device is {device.type.get()}")

# %%
# if we have CUDA lets send our model to the GPU
if has_cuda:
    model.cuda(device)
else:
    model.cpu()

# %%
params = model.parameters()

# %%
optimizer = remote_torch.optim.SGD(params, lr=args["lr"], momentum=0)

# %%
remote_opacus = duet.opacus

# %%
# this is the model we give to Opacus because its a real nn.ModulePointer on the other side
# and has all the real methods for searching layers and attaching to them
print(model.real_module)

# %% tags=["raises-exception"]
sample_size = 60000
noise_multiplier = 1.0
max_grad_norm = 1.0
privacy_engine_ptr = remote_opacus.privacy_engine.PrivacyEngine(
    model.real_module,
    batch_size=args["batch_size"],
    sample_size=sample_size,
    noise_multiplier=noise_multiplier,
    max_grad_norm=max_grad_norm,
)

# %%
privacy_engine_ptr.attach(optimizer)
print("attached")
