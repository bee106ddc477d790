# %% tags=["after:owner-waiting"]
import numpy as np
import torch
import torch.nn.init as init
import torch.utils.data as data
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import ToTensor

import duet as sy
from duet.util import get_root_data_path

duet = sy.join_duet(loopback=True)
sy.logger.add(sink="./syft_ds.log")

# %% tags=["after:setup-done"]
config = {
    "upscale_factor": 2,
    "threads": 0,
    "batchSize": 1,  # one image at a time: each item is a pointer
    "testBatchSize": 1,
    "lr": 0.001,
    "epochs": 2,
    "no_cuda": True,
    "log_batch_size": 2,
    "seed": 42,
    "dry_run": False,
    "test": False,
}
remote_torch = duet.torch
print(duet.store.pandas)
X_train = duet.store["X_train"]
y_train = duet.store["y_train"]
train_num = duet.store["train_num"]


# %%
class DatasetFromPointer(data.Dataset):
    def __init__(self, X_tensorpointer, y_tensorpointer, datanum_pointer):
        super().__init__()
        self.X_tensorpointer = X_tensorpointer
        self.y_tensorpointer = y_tensorpointer
        self.datanum_pointer = datanum_pointer

    def __getitem__(self, index):
        input = self.X_tensorpointer[index]
        target = self.y_tensorpointer[index]
        return input, target

    def __len__(self):
        return self.datanum_pointer.get(
            request_block=True,
            reason="To write the training loop",
            timeout_secs=30,
            delete_obj=False,
        )


def batch_idx_fn(batch):
    return batch[0]


train_set = DatasetFromPointer(X_train, y_train, train_num)
training_data_loader = DataLoader(
    dataset=train_set,
    num_workers=config["threads"],
    batch_size=config["batchSize"],
    shuffle=True,
    collate_fn=batch_idx_fn,
)


# %%
class Net(sy.Module):
    def __init__(self, torch_ref, upscale_factor):
        super().__init__(torch_ref=torch_ref)
        self.relu = self.torch_ref.nn.ReLU()
        self.conv1 = self.torch_ref.nn.Conv2d(1, 64, (5, 5), (1, 1), (2, 2))
        self.conv2 = self.torch_ref.nn.Conv2d(64, 64, (3, 3), (1, 1), (1, 1))
        self.conv3 = self.torch_ref.nn.Conv2d(64, 32, (3, 3), (1, 1), (1, 1))
        self.conv4 = self.torch_ref.nn.Conv2d(32, upscale_factor**2, (3, 3), (1, 1), (1, 1))
        self.pixel_shuffle = self.torch_ref.nn.PixelShuffle(upscale_factor)
        self._initialize_weights()

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        x = self.pixel_shuffle(self.conv4(x))
        return x

    def _initialize_weights(self):
        init.orthogonal_(self.conv1.weight, init.calculate_gain("relu"))
        init.orthogonal_(self.conv2.weight, init.calculate_gain("relu"))
        init.orthogonal_(self.conv3.weight, init.calculate_gain("relu"))
        init.orthogonal_(self.conv4.weight)


torch.manual_seed(0)
local_net = Net(torch, config["upscale_factor"])
remote_net = local_net.send(duet)

# %%
has_cuda = False
has_cuda_ptr = remote_torch.cuda.is_available()
has_cuda = bool(
    has_cuda_ptr.get(
        request_block=True,
        reason="To run test and inference locally",
        timeout_secs=3,
    )
)
print("Is cuda available ? : ", has_cuda)
use_cuda = not config["no_cuda"] and has_cuda
remote_torch.manual_seed(config["seed"])
device = remote_torch.device("cuda" if use_cuda else "cpu")
if has_cuda:
    remote_net.cuda(device)
else:
    remote_net.cpu()

# %%
criterion = remote_torch.nn.MSELoss()
optimizer = remote_torch.optim.Adam(remote_net.parameters(), lr=config["lr"])
for epoch in range(config["epochs"]):
    remote_net.train()
    epoch_loss = 0
    for batch_idx, data_pointers in enumerate(training_data_loader):
        optimizer.zero_grad()
        data_ptr, target_ptr = data_pointers[0], data_pointers[1]
        data_ptr_reshape = remote_torch.unsqueeze(remote_torch.unsqueeze(data_ptr, 0), 0)
        target_ptr_reshape = remote_torch.unsqueeze(remote_torch.unsqueeze(target_ptr, 0), 0)
        output_ptr = remote_net(data_ptr_reshape)
        loss = criterion(output_ptr, target_ptr_reshape)
        loss.backward()
        optimizer.step()
        if batch_idx % config["log_batch_size"] == 0:
            loss_item = loss.item().get(
                reason="To evaluate training progress",
                request_block=True,
                timeout_secs=3,
                delete_obj=False,
                verbose=False,
            )
            print(f"epoch {epoch}, batch_idx {batch_idx}, loss {loss_item}")
        if config["dry_run"]:
            break

# %%
local_net = remote_net.get(request_block=True, reason="test evaluation", timeout_secs=5)
local_net.save("super_resolve.pt")

# %%
# a photo of our own, twice as large
test_img_name = str(get_root_data_path() / "test.jpg")
output_img_name = "output.jpg"
img = Image.open(test_img_name).convert("YCbCr")
y, cb, cr = img.split()
img_to_tensor = ToTensor()
input = img_to_tensor(y).view(1, -1, y.size[1], y.size[0])
if has_cuda:
    local_net = local_net.cuda()
    input = input.cuda()
out = local_net(input)
out = out.cpu()
out_img_y = out[0].detach().numpy()
out_img_y *= 255.0
out_img_y = out_img_y.clip(0, 255)
out_img_y = Image.fromarray(np.uint8(out_img_y[0]), mode="L")
out_img_cb = cb.resize(out_img_y.size, Image.BICUBIC)
out_img_cr = cr.resize(out_img_y.size, Image.BICUBIC)
out_img = Image.merge("YCbCr", [out_img_y, out_img_cb, out_img_cr]).convert("RGB")
out_img.save(output_img_name)
print("output image saved to ", output_img_name, img.size, "->", Image.open(output_img_name).size)
