# %% tags=["after:owner-waiting"]
import os

import torch
import torchvision.utils as vutils
from PIL import Image

import duet as sy
from duet.util import get_root_data_path

duet = sy.join_duet(loopback=True)
sy.logger.add(sink="./syft_ds.log")

# %% tags=["after:setup-done"]
remote_torch = duet.torch
config = {
    "image_size": 28,
    "batch_size": 64,
    "no_cuda": True,
    "seed": 42,
    "nz": 100,
    "ngf": 28,
    "ndf": 28,
    "lr": 0.0002,
    "beta1": 0.5,
    "ngpu": 0,
    "num_iter": 1,
    "dry_run": False,
    "log_interval": 3,
    "save_model": False,
    "save_model_interval": 20,
    "cuda": False,
    "outf": "result",
}
if not os.path.exists(config["outf"]):
    os.mkdir(config["outf"])

# %%
# MNIST, resized and normalized to [-1, 1] on the owner's machine
remote_torchvision = duet.torchvision
transform_1 = remote_torchvision.transforms.ToTensor()
transform_2 = remote_torchvision.transforms.Normalize((0.5), (0.5))
remote_list = duet.python.List()
remote_list.append(remote_torchvision.transforms.Resize(config["image_size"]))
remote_list.append(transform_1)
remote_list.append(transform_2)
transforms = remote_torchvision.transforms.Compose(remote_list)
train_kwargs = {"batch_size": config["batch_size"], "shuffle": True}
train_data_ptr = remote_torchvision.datasets.MNIST(
    str(get_root_data_path()), train=True, download=True, transform=transforms
)
train_loader_ptr = remote_torch.utils.data.DataLoader(train_data_ptr, **train_kwargs)


# %%
def get_train_length(train_data_ptr):
    train_length = train_data_ptr.__len__()
    return train_length


try:
    if train_data_length is None:
        train_data_length = get_train_length(train_data_ptr)
except NameError:
    train_data_length = get_train_length(train_data_ptr)
print(f"Training Dataset size is: {train_data_length}")

# %%
has_cuda = False
has_cuda = remote_torch.cuda.is_available().get(request_block=True)
print("Is cuda available ? : ", has_cuda)
use_cuda = not config["no_cuda"] and has_cuda
remote_torch.manual_seed(config["seed"])
device = remote_torch.device("cuda" if use_cuda else "cpu")
print(f"Data Owner device is {device.type.get()}")

# %%
nz = config["nz"]
ngf = config["ngf"]
ndf = config["ndf"]
nc = 1


class Generator(sy.Module):
    def __init__(self, torch_ref):
        super().__init__(torch_ref=torch_ref)
        self.conv1 = self.torch_ref.nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False)
        self.norm1 = self.torch_ref.nn.BatchNorm2d(ngf * 4)
        self.relu1 = self.torch_ref.nn.ReLU(True)
        self.conv2 = self.torch_ref.nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, 2, 1, bias=False)
        self.norm2 = self.torch_ref.nn.BatchNorm2d(ngf * 2)
        self.relu2 = self.torch_ref.nn.ReLU(True)
        self.conv3 = self.torch_ref.nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False)
        self.norm3 = self.torch_ref.nn.BatchNorm2d(ngf)
        self.relu3 = self.torch_ref.nn.ReLU(True)
        self.conv4 = self.torch_ref.nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False)

    def forward(self, x):
        x = self.relu1(self.norm1(self.conv1(x)))  # 7x7 ... 4x4 -> 7x7 -> 14x14 -> 28x28
        x = self.relu2(self.norm2(self.conv2(x)))
        x = self.relu3(self.norm3(self.conv3(x)))
        x = self.conv4(x)
        output = self.torch_ref.nn.Tanh()(x)
        return output


class Discriminator(sy.Module):
    def __init__(self, torch_ref):
        super().__init__(torch_ref=torch_ref)
        self.conv1 = self.torch_ref.nn.Conv2d(nc, ndf, 4, 2, 1, bias=False)
        self.lerelu1 = self.torch_ref.nn.LeakyReLU(0.2, inplace=True)
        self.conv2 = self.torch_ref.nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False)
        self.norm2 = self.torch_ref.nn.BatchNorm2d(ndf * 2)
        self.lerelu2 = self.torch_ref.nn.LeakyReLU(0.2, inplace=True)
        self.conv3 = self.torch_ref.nn.Conv2d(ndf * 2, ndf * 4, 3, 2, 1, bias=False)
        self.norm3 = self.torch_ref.nn.BatchNorm2d(ndf * 4)
        self.lerelu3 = self.torch_ref.nn.LeakyReLU(0.2, inplace=True)
        self.conv4 = self.torch_ref.nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False)

    def forward(self, x):
        x = self.lerelu1(self.conv1(x))
        x = self.lerelu2(self.norm2(self.conv2(x)))
        x = self.lerelu3(self.norm3(self.conv3(x)))
        x = self.conv4(x)
        output = self.torch_ref.nn.Sigmoid()(x)
        return output.view(-1, 1).squeeze(1)


local_netG = Generator(torch)
local_netD = Discriminator(torch)
netG = local_netG.send(duet)
netD = local_netD.send(duet)
if has_cuda:
    netD.cuda(device)
    netG.cuda(device)
else:
    netD.cpu()
    netG.cpu()
assert not netD.is_local, "Training requires remote model"
assert not netG.is_local, "Training requires remote model"

# %%
# our own noise, sent once, to watch the generator learn
fixed_noise = torch.randn(config["batch_size"], nz, 1, 1)
fixed_noise.tag("noise")
fixed_noise_ptr = fixed_noise.send(duet, pointable=True)
train_batches = round((train_data_length / config["batch_size"]) + 0.5)
print(f"> Running train in {train_batches} batches")
optimizerD = remote_torch.optim.Adam(
    netD.parameters(), lr=config["lr"], betas=(config["beta1"], 0.999)
)
optimizerG = remote_torch.optim.Adam(
    netG.parameters(), lr=config["lr"], betas=(config["beta1"], 0.999)
)
criterion = remote_torch.nn.BCELoss()
real_label = 1
fake_label = 0

# %%
num_iter = 1 if config["dry_run"] else config["num_iter"]
for epoch in range(num_iter):
    netD.train()
    netG.train()
    for batch_idx, data in enumerate(train_loader_ptr):
        # (1) the discriminator: real images up, generated ones down
        optimizerD.zero_grad()
        data_ptr = data[0].resolve_pointer_type().to(device)
        batch_size = config["batch_size"]
        output = netD(data_ptr)
        label = remote_torch.zeros_like(output)
        label = label.fill_(real_label)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = remote_torch.randn(batch_size, nz, 1, 1)
        fake = netG(noise.to(device))
        output = netD(fake.detach())
        label = remote_torch.zeros_like(output)
        label.fill_(fake_label)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()
        # (2) the generator: make the discriminator say "real"
        optimizerG.zero_grad()
        label.fill_(real_label)
        output = netD(fake.to(device))
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        optimizerG.step()
        if batch_idx % config["log_interval"] == 0:
            local_errD = None
            local_errD = errD.item().get(request_block=True)
            local_errG = None
            local_errG = errG.item().get(request_block=True)
            if (local_errD is not None) and (local_errG is not None):
                print(
                    f"[{epoch}/{config['num_iter']}][{batch_idx}/{train_batches}] "
                    f"Loss_D: {local_errD:.4f} Loss_G: {local_errG:.4f}"
                )
            else:
                print(
                    f"[{epoch}/{config['num_iter']}][{batch_idx}/{train_batches}] Loss_D: - Loss_G: - "
                )
            created_img = netG(fixed_noise_ptr.to(device))
            created_img = created_img.get(request_block=True)
            vutils.save_image(
                created_img,
                f"{config['outf']}/fake_samples_{epoch}_{batch_idx}.png",
                normalize=True,
            )
        if batch_idx >= train_batches - 1:
            break
        if config["dry_run"]:
            break

# %%
local_netG = netG.get(request_block=True, timeout_secs=5, delete_obj=False)
local_netG.save(f"{config['outf']}/final_netG_mnist.pt")
netD.get(request_block=True, timeout_secs=5, delete_obj=False).save(
    f"{config['outf']}/final_netD_mnist.pt"
)

# %%
assert local_netG.is_local, "model is remote try .get()"
created_img = local_netG(fixed_noise)
vutils.save_image(created_img.detach(), "fake_samples_local.png", normalize=True)
fake_image = Image.open("fake_samples_local.png")
print("generated locally:", fake_image.size, sorted(os.listdir(config["outf"])))
