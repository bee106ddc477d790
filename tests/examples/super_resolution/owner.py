# %%
import tarfile
import urllib.request
from os import listdir, makedirs, remove
from os.path import basename, exists, join

import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, Resize, ToTensor

import duet as sy
from duet.util import get_root_data_path

duet = sy.launch_duet(loopback=True)
sy.logger.add(sink="./syft_do.log")

# %%
# a handler with no tags accepts everything
duet.requests.add_handler(action="accept")
config = {"upscale_factor": 2, "threads": 4, "batchSize": 1, "testBatchSize": 10}


# %%
def is_image_file(filename):
    return any(filename.lower().endswith(extension) for extension in [".png", ".jpg", ".jpeg"])


def load_img(filepath):
    img = Image.open(filepath).convert("YCbCr")
    y, _, _ = img.split()
    return y  # the luminance channel only


class Prepare_DataSet:
    def __init__(self, image_dir, input_transform=None, target_transform=None):
        self.image_filenames = sorted(
            join(image_dir, x) for x in listdir(image_dir) if is_image_file(x)
        )
        self.input_transform = input_transform
        self.target_transform = target_transform

    def __getitem__(self):
        inputs = []
        targets = []
        for path in self.image_filenames:
            input = load_img(path)
            target = input.copy()
            if self.input_transform:
                input = self.input_transform(input)
            if self.target_transform:
                target = self.target_transform(target)
            inputs.append(input)
            targets.append(target)
        return inputs, targets

    def __len__(self):
        return len(self.image_filenames)


def download_bsd300(dest=None):
    dest = dest or get_root_data_path()
    output_image_dir = join(dest, "BSDS300/images")
    if not exists(output_image_dir):  # only the first time: this machine has them already
        makedirs(dest, exist_ok=True)
        url = "http://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/BSDS300-images.tgz"
        print("downloading url ", url)
        data = urllib.request.urlopen(url)
        file_path = join(dest, basename(url))
        with open(file_path, "wb") as f:
            f.write(data.read())
        with tarfile.open(file_path) as tar:
            tar.extractall(dest)
        remove(file_path)
    return output_image_dir


def calculate_valid_crop_size(crop_size, upscale_factor):
    return crop_size - (crop_size % upscale_factor)


def input_transform(crop_size, upscale_factor):
    return Compose([CenterCrop(crop_size), Resize(crop_size // upscale_factor), ToTensor()])


def target_transform(crop_size):
    return Compose([CenterCrop(crop_size), ToTensor()])


def get_training_set(upscale_factor):
    root_dir = download_bsd300()
    train_dir = join(root_dir, "train")
    crop_size = calculate_valid_crop_size(64, upscale_factor)  # our photos are small
    return Prepare_DataSet(
        train_dir,
        input_transform=input_transform(crop_size, upscale_factor),
        target_transform=target_transform(crop_size),
    )


# %%
train_set = get_training_set(config["upscale_factor"])
X_train, y_train = train_set.__getitem__()
X_train = torch.cat(X_train)
y_train = torch.cat(y_train)
print(X_train.shape, y_train.shape)

# %% tags=["setup-done"]
X_train.tag("X_train")
X_train.send(duet, pointable=True)
y_train.tag("y_train")
y_train.send(duet, pointable=True)
train_num = sy.lib.python.Int(X_train.shape[0])
train_num.tag("train_num")
train_num.send(duet, pointable=True)
print(duet.store.pandas)
