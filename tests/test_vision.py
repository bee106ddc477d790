"""torchvision on the owner's side: transforms and MNIST read from the owner's data root only."""

from __future__ import annotations

import struct
import sys

import pytest
import torch

import duet as sy
from duet.protocol import allowlist

N_TRAIN, N_TEST = 10, 4


def write_mnist(raw, prefix, images, labels):
    """IDX files as MNIST ships them: big-endian magic and sizes, then the uint8 data."""
    n, rows, cols = images.shape
    header = struct.pack(">IIII", 0x00000803, n, rows, cols)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.numpy().tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x00000801, n) + labels.numpy().tobytes()
    )


@pytest.fixture
def mnist(tmp_path):
    """An owner whose data root holds a tiny MNIST under "mnist/MNIST/raw", and a scientist."""
    pytest.importorskip("torchvision")
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N_TRAIN, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.arange(N_TRAIN, dtype=torch.uint8) % 10
    raw = tmp_path / "data" / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_mnist(raw, "train", images, labels)
    write_mnist(raw, "t10k", images[:N_TEST], labels[:N_TEST])
    (tmp_path / "secret").mkdir()
    owner, scientist = sy.duet_pair(data_root=tmp_path / "data")
    owner.requests.add_handler(name="train_size", kind="int", max_elements=1, action="accept")
    owner.requests.add_handler(name="batch", max_elements=4 * 28 * 28, action="accept")
    yield owner, scientist, images, labels
    scientist.close()
    owner.close()


def remote_transforms(scientist):
    transforms = scientist.torchvision.transforms
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])


def test_scientist_iterates_remote_mnist_batches_built_with_remote_transforms(mnist):
    _owner, scientist, images, labels = mnist
    dataset = scientist.torchvision.datasets.MNIST(
        "mnist", train=True, transform=remote_transforms(scientist)
    )
    assert dataset.kind == "Dataset"
    loader = scientist.torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=False)
    batches = list(enumerate(loader))
    assert [i for i, _ in batches] == [0, 1, 2]

    data_ptr, target_ptr = batches[0][1]
    data = data_ptr.get(request_block=True, name="batch", timeout_secs=10)
    target = target_ptr.get(request_block=True, name="batch", timeout_secs=10)
    expected = (images[:4].float() / 255 - 0.1307) / 0.3081
    assert data.shape == (4, 1, 28, 28)
    assert torch.allclose(data[:, 0], expected, atol=1e-5)
    assert torch.equal(target, labels[:4].long())


def test_resize_and_center_crop_run_on_the_owner_within_a_bound(mnist):
    owner, scientist, images, _ = mnist
    t = scientist.torchvision.transforms
    shaped = t.Compose([t.Resize(32), t.CenterCrop([20, 24]), t.ToTensor()])
    dataset = scientist.torchvision.datasets.MNIST("mnist", train=True, transform=shaped)
    owner.requests.add_handler(name="shaped", max_elements=20 * 24, action="accept")
    image = dataset[0][0].get(request_block=True, name="shaped", timeout_secs=10)
    assert image.shape == (1, 20, 24)
    for size in (0, 100_000, [1, 2, 3], 2.5, True):  # a huge size would hold the owner's memory
        with pytest.raises(sy.NotAllowed, match="size must be a whole number of pixels"):
            t.Resize(size).get(timeout_secs=10)
    assert images.shape[1:] == (28, 28)


def test_a_batch_of_enlarged_images_is_refused_before_it_is_made(tmp_path):
    """Resize makes each sample far larger than the stored image: a batch of them is sized from
    one transformed sample before it is made (512x512 floats x 10), not found too big after."""
    pytest.importorskip("torchvision")
    images = torch.zeros(N_TRAIN, 28, 28, dtype=torch.uint8)
    raw = tmp_path / "data" / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        write_mnist(raw, prefix, images, torch.zeros(N_TRAIN, dtype=torch.uint8))
    owner, scientist = sy.duet_pair(data_root=tmp_path / "data", max_bytes=4 << 20)
    try:
        t = scientist.torchvision.transforms
        big = t.Compose([t.Resize(512), t.ToTensor()])
        dataset = scientist.torchvision.datasets.MNIST("mnist", train=True, transform=big)
        owner.requests.add_handler(kind="error", action="accept")  # releases the failure
        owner.requests.add_handler(name="train_size", kind="int", max_elements=1, action="accept")
        data, _ = next(iter(scientist.torch.utils.data.DataLoader(dataset, batch_size=10)))
        with pytest.raises(sy.QuotaExceeded, match="would need about 10,48"):
            data.get(request_block=True, name="batch", timeout_secs=10)
    finally:
        scientist.close()
        owner.close()


def test_test_split_and_scalar_normalize(mnist):
    _owner, scientist, images, labels = mnist
    transforms = scientist.torchvision.transforms
    dataset = scientist.torchvision.datasets.MNIST(
        root="mnist",
        train=False,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.5, 0.5)]),
    )
    assert len(dataset) == N_TEST
    image, label = dataset[1]
    got = image.get(request_block=True, name="batch", timeout_secs=10)
    assert torch.allclose(got[0], images[1].float() / 255 * 2 - 1, atol=1e-5)
    assert label.get(request_block=True, name="batch", timeout_secs=10) == labels[1]


@pytest.mark.parametrize(
    "root", ["..", "../secret", "mnist/../../secret", "/etc", "/home/alice/.syft/data"]
)
def test_a_root_outside_the_data_root_means_the_data_root_itself(mnist, root):
    """A path on the scientist's machine (or one that climbs) means nothing on the owner's side:
    it names the data root itself, never a folder outside it."""
    owner, scientist, _, _ = mnist
    data_root = owner.settings.data_root
    (data_root / "MNIST").symlink_to(data_root / "mnist" / "MNIST")  # files at the root too
    secret_raw = data_root.parent / "secret" / "MNIST" / "raw"
    secret_raw.mkdir(parents=True)  # decoy files outside the root, never to be read
    fake = torch.zeros(3, 28, 28, dtype=torch.uint8)
    write_mnist(secret_raw, "train", fake, torch.zeros(3, dtype=torch.uint8))
    dataset = scientist.torchvision.datasets.MNIST(root, train=True)
    assert len(dataset) == N_TRAIN  # the owner's files, not the decoys (3)
    assert (scientist.torch.ones(2) * 3).get().tolist() == [3.0, 3.0]  # the session goes on


def test_download_reads_what_the_owner_placed_and_downloads_nothing(mnist):
    _owner, scientist, _, _ = mnist
    dataset = scientist.torchvision.datasets.MNIST("mnist", train=True, download=True)
    assert len(dataset) == N_TRAIN


def test_missing_files_name_the_owners_data_root_and_where_they_go(mnist):
    owner, scientist, _, _ = mnist
    dataset = scientist.torchvision.datasets.FashionMNIST(".", train=True)
    with pytest.raises(sy.UsageError, match=r"FashionMNIST/raw") as refused:
        len(dataset)
    assert str(owner.settings.data_root) in str(refused.value)


def test_only_torchvision_transforms_may_be_composed_or_passed_to_a_dataset(mnist):
    _owner, scientist, _, _ = mnist
    tensor = torch.ones(2).send(scientist)
    with pytest.raises(sy.NotAllowed, match="Compose"):
        scientist.torchvision.transforms.Compose([tensor]).get()
    dataset = scientist.torchvision.datasets.MNIST("mnist", transform=tensor)
    with pytest.raises(sy.NotAllowed, match="transform"):
        len(dataset)


def test_an_owner_that_set_no_data_root_has_one_in_its_duet_home(pair, duet_home):
    pytest.importorskip("torchvision")
    owner, scientist = pair
    assert owner.settings.data_root == (duet_home / "data").resolve()
    dataset = scientist.torchvision.datasets.MNIST("mnist")
    with pytest.raises(sy.UsageError, match=str(duet_home / "data")):
        len(dataset)


def test_torchvision_names_are_on_the_allowlist_with_or_without_torchvision():
    for path in (
        "torchvision.transforms.Compose",
        "torchvision.transforms.ToTensor",
        "torchvision.transforms.Normalize",
        "torchvision.transforms.Resize",
        "torchvision.transforms.CenterCrop",
        "torchvision.datasets.MNIST",
    ):
        assert path in allowlist.FUNCTIONS
    assert "torchvision.datasets" in allowlist.NAMESPACES


def test_an_owner_without_torchvision_says_how_to_install_it(pair, monkeypatch):
    _owner, scientist = pair
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision now fails
    transform = scientist.torchvision.transforms.ToTensor()
    with pytest.raises(sy.UsageError, match=r"pip install 'duet\[vision\]'"):
        transform.get()


def test_unlisted_torchvision_names_are_refused_before_sending(pair):
    _owner, scientist = pair
    with pytest.raises(sy.NotAllowed):
        scientist.torchvision.datasets.ImageFolder("anything")
    with pytest.raises(sy.NotAllowed):
        scientist.torchvision.transforms.Lambda(print)


def test_mnist_read_from_the_owners_files_is_the_owners_private_data(mnist):
    owner, scientist, _, _ = mnist
    dataset = scientist.torchvision.datasets.MNIST("mnist", transform=remote_transforms(scientist))
    image, _label = dataset[0]
    with pytest.raises(sy.PermissionDenied):
        image.get()
    loader = scientist.torch.utils.data.DataLoader(dataset, batch_size=4)
    data_ptr, _target_ptr = next(iter(loader))
    with pytest.raises(sy.PermissionDenied):
        data_ptr.get()
    assert "train_size" in [r.name for r in owner.requests.history]  # len(loader) was asked
