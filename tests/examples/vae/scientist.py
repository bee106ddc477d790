# %% tags=["after:owner-waiting"]
import torch
from torchvision.utils import save_image

import duet as sy
from duet.util import get_root_data_path

duet = sy.join_duet(loopback=True)
sy.logger.add(sink="./syft_ds.log")

# %% tags=["after:setup-done"]
remote_torch = duet.torch
epochs = 2
dry_run = False
config = {
    "batch_size": 64,
    "no_cuda": True,
    "seed": 42,
    "epochs": epochs,
    "dry_run": dry_run,
    "log_interval": 4,
}

# %%
# MNIST on the owner's machine, as tensors in [0, 1]
remote_torchvision = duet.torchvision
transform_1 = remote_torchvision.transforms.ToTensor()
remote_list = duet.python.List()
remote_list.append(transform_1)
transforms = remote_torchvision.transforms.Compose(remote_list)
train_kwargs = {"batch_size": config["batch_size"], "shuffle": True}
train_data_ptr = remote_torchvision.datasets.MNIST(
    str(get_root_data_path()), train=True, download=True, transform=transforms
)
train_loader_ptr = remote_torch.utils.data.DataLoader(train_data_ptr, **train_kwargs)
test_data_ptr = remote_torchvision.datasets.MNIST(
    str(get_root_data_path()), train=False, download=True, transform=transforms
)
test_loader_ptr = remote_torch.utils.data.DataLoader(test_data_ptr, **train_kwargs)


# %%
def get_train_length(train_data_ptr):
    train_length = train_data_ptr.__len__()
    return train_length


try:
    if train_data_length is None:
        train_data_length = get_train_length(train_data_ptr)
except NameError:
    train_data_length = get_train_length(train_data_ptr)
try:
    if test_data_length is None:
        test_data_length = get_train_length(test_data_ptr)
except NameError:
    test_data_length = get_train_length(test_data_ptr)
print(f"Training Dataset size is: {train_data_length}")
print(f"Test Dataset size is: {test_data_length}")

# %%
train_loader_length = train_loader_ptr.len().get(request_block=True)
print("batches per epoch:", train_loader_length)

# %%
has_cuda = False
has_cuda_ptr = remote_torch.cuda.is_available().get(request_block=True)
print("Is cuda available ? : ", has_cuda)
use_cuda = not config["no_cuda"] and has_cuda
remote_torch.manual_seed(config["seed"])
device = remote_torch.device("cuda" if use_cuda else "cpu")


# %%
class VAE(sy.Module):
    def __init__(self, torch_ref):
        super().__init__(torch_ref=torch_ref)
        self.fc1 = self.torch_ref.nn.Linear(784, 400)
        self.fc21 = self.torch_ref.nn.Linear(400, 20)
        self.fc22 = self.torch_ref.nn.Linear(400, 20)
        self.fc3 = self.torch_ref.nn.Linear(20, 400)
        self.fc4 = self.torch_ref.nn.Linear(400, 784)

    def encode(self, x):
        h1 = self.torch_ref.nn.ReLU()(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = remote_torch.exp(0.5 * logvar)
        eps = torch.randn(config["batch_size"], 20)  # our own noise, sent along
        return mu + eps * std

    def decode(self, z):
        h3 = self.torch_ref.nn.ReLU()(self.fc3(z))
        return self.torch_ref.nn.Sigmoid()(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


torch.manual_seed(0)
local_vae = VAE(torch)
vae = local_vae.send(duet)
if has_cuda:
    vae.cuda(device)
else:
    vae.cpu()
assert not vae.is_local, "Training requires remote model"
optimizer = remote_torch.optim.Adam(vae.parameters(), lr=1e-3)


# %%
def loss_function(recon_x, x, mu, logvar):
    BCE = remote_torch.nn.BCELoss(reduction="sum")(recon_x, x.view(-1, 784))
    # the KL divergence of N(mu, sigma) from N(0, 1), summed over the batch
    KLD = -0.5 * remote_torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def train(epoch):
    vae.train()
    train_loss = 0
    for batch_idx, data in enumerate(train_loader_ptr):
        data_ptr = remote_torch.Tensor(data[0]).to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = vae(data_ptr)
        loss = loss_function(recon_batch, data_ptr, mu, logvar)
        loss.backward()
        optimizer.step()
        batch_loss = loss.item().get(request_block=True)
        if batch_loss is not None:
            train_loss += batch_loss
            if batch_idx % config["log_interval"] == 0:
                print(
                    "Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}".format(
                        epoch,
                        batch_idx * config["batch_size"],
                        train_data_length,
                        100.0 * (batch_idx / train_loader_length),
                        batch_loss / config["batch_size"],
                    )
                )
        if config["dry_run"]:
            break
    print(f"====> Epoch: {epoch} Average loss: {train_loss / train_data_length:.4f}")


def test(epoch):
    vae.eval()
    test_loss = 0
    with torch.no_grad():
        for _, data in enumerate(test_loader_ptr):
            data_ptr = remote_torch.Tensor(data[0]).to(device)
            recon_batch, mu, logvar = vae(data_ptr)
            batch_loss = loss_function(recon_batch, data_ptr, mu, logvar).get(request_block=True)
            if batch_loss is not None:
                test_loss += batch_loss / test_data_length
            if config["dry_run"]:
                break
    print(f"====> Test set loss: {test_loss:.4f}")


# %%
for epoch in range(1, config["epochs"] + 1):
    train(epoch)
    test(epoch)
    with torch.no_grad():
        sample = torch.randn(64, 20).to("cuda" if use_cuda else "cpu")
        sample = vae.decode(sample).cpu()
        sample_image = sample.get(request_block=True)
        save_image(sample_image.view(64, 1, 28, 28), "sample_" + str(epoch) + ".png")
    if config["dry_run"]:
        break

# %%
sample = torch.randn(64, 20).to("cuda" if use_cuda else "cpu")
sample = vae.decode(sample).cpu()
sample_image = sample.get(request_block=True)
save_image(sample_image.view(64, 1, 28, 28), "output.png")
print("decoded from our own noise:", tuple(sample_image.shape))
