"""PySyft 0.5's Duet example pairs, written for ``import duet as sy``, run as owner and scientist
in real Jupyter kernels side by side.

Each example is a folder under ``tests/examples`` holding percent-format Python files (cells
start at ``# %%``, optionally ``# %% tags=["name"]``): ``owner.py`` (or ``owner1.py``,
``owner2.py`` for two owners) and ``scientist.py``. Each file becomes a notebook, executed by its
own kernel with its own duet home and data root (the test writes the data files an owner's
notebook reads there, in their real formats, made from scikit-learn's datasets: no download),
and all kernels of a pair share one loopback file, as notebooks on one machine do.

The notebooks wait for each other as a person running them would: a cell tagged
``after:NAME`` starts only once a cell tagged ``NAME`` has run in any of the notebooks, and
``after:owner-waiting`` (``after:owner2-waiting``) once that owner's ``launch_duet`` prints that
it waits for the scientist. Every wait is bounded. A cell tagged ``raises-exception`` may fail
(the PySyft code a duet refuses on purpose); its notebook stops there. A scientist's cell sets its
tags once the owner has run what it sent (the test waits for that, with code of its own run in
the kernel, not in the notebook), as a person would look at the owner's screen only then.

PySyft's notebooks named their signaling server ``network_url="http://localhost:5000"``: in
notebooks that do, the test starts one on a free port and that URL names it instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import torch
from jupyter_client.manager import AsyncKernelManager

from .processes import start_signaling_server
from .test_notebooks import (
    KERNEL_NAME,
    OWNER_WAITING,
    WatchingClient,
    bounded_wait,
    code_cells,
    finish_all,
    kernel_specs,
    stream_text,
    tagged_result,
    tags,
)

EXAMPLES = Path(__file__).resolve().parent / "examples"
RUN_TIMEOUT_SECS = 150
CELL_MARK = re.compile(r"^# %%(?:\s+tags=(\[.*\]))?\s*$")
AFTER = "after:"
RAISES = "raises-exception"  # nbclient's own tag: the cell may fail
PYSYFT_URL = "http://localhost:5000"  # PySyft's notebooks' signaling server
# run in a scientist's kernel after a cell that sets tags: every live scientist session waits
# until its owner has run what it was sent (a request, say), so that the owner's next cell sees it
SETTLE = (
    "import duet.sessions.base as _b, duet.sessions.scientist as _s\n"
    "_x = None\n"
    "for _x in list(_b.LIVE):\n"
    "    if isinstance(_x, _s.ScientistSession) and _x.connected:\n"
    "        _x.sync(timeout_secs=30)\n"
    "del _b, _s, _x"
)


# ---------------------------------------------------------------- percent files -> notebooks


def percent_notebook(path: Path) -> Any:
    """The notebook a percent-format file describes: one code cell per ``# %%`` marker."""
    cells: list[tuple[list[str], list[str]]] = []
    for line in path.read_text().splitlines():
        mark = CELL_MARK.match(line)
        if mark:
            cells.append((json.loads(mark.group(1) or "[]"), []))
        elif cells:
            cells[-1][1].append(line)
        else:
            assert not line.strip(), f"{path}: code before the first '# %%'"
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell_tags, lines in cells:
        source = "\n".join(lines).strip("\n")
        if source:
            cell = nbformat.v4.new_code_cell(source)
            if cell_tags:
                cell.metadata.tags = cell_tags
            nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def roles(example: str) -> list[str]:
    """The notebooks of an example: owners first (they launch), then the scientist."""
    names = sorted(p.stem for p in (EXAMPLES / example).glob("*.py"))
    return [n for n in names if n.startswith("owner")] + [n for n in names if n == "scientist"]


# ---------------------------------------------------------------- data files, real formats


def _digits_28x28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits scaled to 20x20 and centred in 28x28, 0-255, as MNIST is."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    scaled = torch.nn.functional.interpolate(small, size=(20, 20), mode="bilinear")
    padded = torch.nn.functional.pad(scaled, (4, 4, 4, 4))
    images = (padded.squeeze(1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return images, digits.target.astype(np.uint8)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (MNIST's format): magic (0, 0, type ubyte, ndim), big-endian sizes, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(root: Path, train: int = 640, test: int = 320) -> None:
    """torchvision's MNIST layout (``MNIST/raw``, uncompressed IDX files)."""
    images, labels = _digits_28x28()
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    _write_idx(raw / "train-images-idx3-ubyte", images[:train])
    _write_idx(raw / "train-labels-idx1-ubyte", labels[:train])
    _write_idx(raw / "t10k-images-idx3-ubyte", images[train : train + test])
    _write_idx(raw / "t10k-labels-idx1-ubyte", labels[train : train + test])


def write_bsds(root: Path, per_split: int = 6) -> None:
    """A small BSDS300-like folder (``BSDS300/images/{train,test}/*.jpg``): crops of the two
    photos scikit-learn ships."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two 427x640 RGB photos
    for split, offset in (("train", 0), ("test", 200)):
        folder = root / "BSDS300" / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_split):
            photo = photos[i % 2]
            top, left = offset + 20 * (i // 2), 60 * i
            crop = photo[top : top + 64, left : left + 64]
            Image.fromarray(crop).save(folder / f"{split}{i}.jpg")


def write_iris_test(root: Path, every: int = 5) -> None:
    """A scientist's own held-out flowers: every fifth iris of scikit-learn's, as CSV."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    frame = iris.data.copy()
    frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame["species"] = iris.target
    frame.iloc[::every].to_csv(root / "iris-test.csv", index=False)


def write_carrots(root: Path) -> None:
    """PyDP's carrots demo's shape (``animal,carrots_eaten``, no header), made up here: 200
    animals eating 1 to 100 carrots, 70 of them more than 70; sum 10001, mean 50.005."""
    above = list(range(71, 101)) * 2 + list(range(71, 81))
    below = list(range(1, 63)) * 2 + [10, 20, 30, 40, 50, 60]
    lines = [f"animal{i},{n}" for i, n in enumerate(above + below)]
    (root / "animals_and_carrots.csv").write_text("\n".join(lines) + "\n")


DATA = {"mnist": write_mnist, "dcgan": write_mnist, "vae": write_mnist, "dp_opacus": write_mnist}
OWNER_ONLY_DATA = {"super_resolution": write_bsds, "dp_pydp": write_carrots}


def write_photo(root: Path) -> None:
    """A scientist's own small photo (a crop of one scikit-learn ships) to enlarge."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    Image.fromarray(load_sample_images().images[1][100:148, 200:264]).save(root / "test.jpg")


SCIENTIST_ONLY_DATA = {"iris": write_iris_test, "super_resolution": write_photo}


def prepare(example: str, role: str, folder: Path) -> dict[str, str]:
    """The role's own duet home, data root (with the example's files) and working folder."""
    home, data, cwd = folder / "home", folder / "data", folder / "cwd"
    for path in (home, data, cwd):
        path.mkdir(parents=True)
    if example in DATA:
        DATA[example](data)
    if example in OWNER_ONLY_DATA and role.startswith("owner"):
        OWNER_ONLY_DATA[example](data)
    if example in SCIENTIST_ONLY_DATA and role == "scientist":
        SCIENTIST_ONLY_DATA[example](data)
    return {"DUET_HOME": str(home), "DUET_DATA_ROOT": str(data), "cwd": str(cwd)}


# ---------------------------------------------------------------- running a pair


class Run:
    """The notebooks of one example, executed in their kernels; ``said[role]`` is what each
    printed, ``errors[role]`` the error a ``raises-exception`` cell ended it with."""

    def __init__(self, example: str, tmp_path: Path) -> None:
        self.example = example
        self.tmp_path = tmp_path
        self.loopback = tmp_path / "duet-loopback.json"
        self.nbs = {
            role: percent_notebook(EXAMPLES / example / f"{role}.py") for role in roles(example)
        }
        self.events: dict[str, asyncio.Event] = {}
        self.said: dict[str, str] = {}
        self.errors: dict[str, str] = {}

    def event(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    async def execute(self, role: str, client: WatchingClient) -> None:
        for index, cell in code_cells(client.nb):
            for tag in tags(cell):
                if tag.startswith(AFTER):
                    name = tag[len(AFTER) :]
                    await bounded_wait(self.event(name), f"{role}: '{name}' did not happen")
            await client.async_execute_cell(cell, index)
            errors = [o for o in cell.outputs if o.output_type == "error"]
            if errors:  # only a raises-exception cell gets here with an error
                self.errors[role] = f"{errors[0].ename}: {errors[0].evalue}"
                return
            sets = [t for t in tags(cell) if not t.startswith(AFTER) and t != RAISES]
            if sets and role == "scientist":
                settle = nbformat.v4.new_code_cell(SETTLE)
                await client.async_execute_cell(settle, index, store_history=False)
                client.nb.cells[index] = cell  # nbclient put the cell it ran in the notebook
            for tag in sets:
                self.event(tag).set()

    def uses_pysyft_url(self) -> bool:
        return any(PYSYFT_URL in cell.source for nb in self.nbs.values() for cell in nb.cells)

    async def run(self) -> None:
        server = None
        if self.uses_pysyft_url():
            server, url = start_signaling_server()
            for nb in self.nbs.values():
                for cell in nb.cells:
                    cell.source = cell.source.replace(PYSYFT_URL, url.replace("ws://", "http://"))
        try:
            await self._run()
        finally:
            if server is not None:
                server.stop()

    async def _run(self) -> None:
        specs = kernel_specs(self.tmp_path / "kernels")
        base = {
            **os.environ,
            "DUET_ICE_HOSTS": "127.0.0.1",
            "DUET_LOOPBACK_FILE": str(self.loopback),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # no debugger notice on the kernels' stderr
        }
        clients: dict[str, WatchingClient] = {}
        starts: dict[str, dict[str, Any]] = {}
        for role, nb in self.nbs.items():
            own = prepare(self.example, role, self.tmp_path / role)
            cwd = own.pop("cwd")
            clients[role] = WatchingClient(
                nb,
                km=AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs),
                timeout=60,
                startup_timeout=60,
                shutdown_kernel="immediate",
            )
            starts[role] = dict(env={**base, **own}, cwd=cwd, cleanup_kc=True)
            if role.startswith("owner"):
                clients[role].watches.append((OWNER_WAITING, self.event(f"{role}-waiting")))
        try:
            await self._run_all(clients, starts)
        finally:
            self.said = {role: stream_text(client.nb) for role, client in clients.items()}

    async def _run_all(self, clients: dict[str, WatchingClient], starts: dict[str, Any]) -> None:
        # every kernel stays up until all notebooks are done: an owner's duet outlives its
        # notebook's last cell, as it does in a person's Jupyter
        async with _all_kernels(clients, starts):
            tasks = [asyncio.create_task(self.execute(r, c)) for r, c in clients.items()]
            await finish_all(tasks, RUN_TIMEOUT_SECS)


class _all_kernels:
    def __init__(self, clients: dict[str, WatchingClient], starts: dict[str, Any]) -> None:
        self.contexts = [c.async_setup_kernel(**starts[r]) for r, c in clients.items()]

    async def __aenter__(self) -> None:
        await asyncio.gather(*(ctx.__aenter__() for ctx in self.contexts))

    async def __aexit__(self, *exc: Any) -> None:  # the error, if any, goes on by itself
        await asyncio.gather(*(ctx.__aexit__(None, None, None) for ctx in self.contexts))


def run_example(example: str, tmp_path: Path) -> Run:
    run = Run(example, tmp_path)
    asyncio.run(run.run())
    return run


def floats(pattern: str, text: str) -> list[float]:
    return [float(x) for x in re.findall(pattern, text, re.M)]


def stderr_text(nb: Any) -> str:
    return "".join(
        out.get("text", "")
        for _, cell in code_cells(nb)
        for out in cell.outputs
        if out.output_type == "stream" and out.name == "stderr"
    )


# ---------------------------------------------------------------- the pairs


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_basics_tags_store_requests_and_gets(tmp_path):
    run = run_example("basics", tmp_path)
    owner, scientist = run.said["owner"], run.said["scientist"]
    assert "Ages of the six members of a running club." in owner  # the store's listing
    assert "the scientist says: Please approve!" in owner
    assert "requests waiting: 0" in owner  # the denied request left the queue
    # before any request, and after the denial, the mean is refused; then it comes through
    assert scientist.count("depends on the owner's private data") == 2, scientist
    assert re.search(r"Please approve!\s+\S+\s+denied", scientist), scientist  # its own table
    assert "mean age: 42.33" in scientist
    assert "oldest: 62.0 youngest: 27.0" in scientist
    assert "tensor([31, 45, 27, 62, 50, 39])" in scientist


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_exercise_weight_status_from_pointers_to_elements(tmp_path):
    run = run_example("exercise", tmp_path)
    scientist = run.said["scientist"]
    assert scientist.count("Pointer to Weight of person") == 6, scientist
    statuses = re.findall(r"^Weight of Person (\d) is (.+)$", scientist, re.M)
    assert [s for _, s in statuses] == [
        "Normal",
        "Overweight",
        "Obese",
        "Overweight",
        "Normal",
        "Normal",
    ], scientist


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_iris_classifier_trains_remotely_and_scores_locally(tmp_path):
    run = run_example("iris", tmp_path)
    scientist = run.said["scientist"]
    assert "150 iris flowers, 4 features" in scientist  # read from the store's listing
    losses = re.search(r"^first loss ([\d.]+) last loss ([\d.]+)$", scientist, re.M)
    assert losses and 0 < float(losses[2]) < float(losses[1]) / 2, scientist  # went down
    assert floats(r"^Overall test accuracy ([\d.]+)$", scientist)[0] > 70, scientist  # 1/3


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_fl_one_scientist_trains_with_two_owners_and_averages(tmp_path):
    run = run_example("fl", tmp_path)
    scientist = run.said["scientist"]
    assert "DO1 data" in scientist and "DO2 data" in scientist  # each owner's own store
    for owner in ("1", "2"):
        losses = re.search(rf"^owner {owner}: first loss (\S+) last loss (\S+)$", scientist, re.M)
        assert losses and float(losses[2]) < float(losses[1]) / 4, scientist
    mse = re.search(r"^test MSE of the averaged model (\S+) untrained (\S+)$", scientist, re.M)
    assert mse and float(mse[1]) < float(mse[2]) / 4, scientist
    for owner in ("owner1", "owner2"):  # each owner's handler released the losses and model
        decided = re.findall(r"^(\w+)\s+(handler \d|owner)\s+(\d+)$", run.said[owner], re.M)
        assert decided == [("accepted", "handler 1", "62")], run.said[owner]  # 60 losses, 2 gets


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_mnist_trains_on_the_owners_files_and_downloads_the_model(tmp_path):
    run = run_example("mnist", tmp_path)
    owner, scientist = run.said["owner"], run.said["scientist"]
    assert "Data Owner device is cpu" in scientist
    assert "Training Dataset size is: 640" in scientist, scientist  # the owner's IDX files
    assert re.findall(r"^Train Epoch: \d (\d+) \?$", scientist, re.M) == ["0", "4", "8"] * 2
    accuracy = re.search(r"Accuracy: \d+/320 \((\d+)%\)", scientist)
    assert accuracy and int(accuracy[1]) > 40, scientist  # chance: 10%
    counts = dict(re.findall(r"^(\w+)\s+(\w+)\s+\d+$", owner, re.M))
    assert counts == {
        "cuda_is_available": "accepted",
        "loss": "denied",
        "model_download": "accepted",
        "train_size": "accepted",
    }, owner


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_dcgan_trains_both_networks_remotely_and_generates_locally(tmp_path):
    run = run_example("dcgan", tmp_path)
    scientist = run.said["scientist"]
    assert "Data Owner device is cpu" in scientist and "> Running train in 10 batches" in scientist
    losses = re.findall(r"^\[0/1\]\[(\d+)/10\] Loss_D: ([\d.]+) Loss_G: ([\d.]+)$", scientist, re.M)
    assert [b for b, _, _ in losses] == ["0", "3", "6", "9"], scientist
    assert all(0 < float(d) < 10 and 0 < float(g) < 20 for _, d, g in losses), scientist
    assert "generated locally: (242, 242)" in scientist, scientist  # an 8x8 grid of 28x28
    made = sorted(p.name for p in (tmp_path / "scientist" / "cwd" / "result").iterdir())
    assert made == [
        "fake_samples_0_0.png",
        "fake_samples_0_3.png",
        "fake_samples_0_6.png",
        "fake_samples_0_9.png",
        "final_netD_mnist.pt",
        "final_netG_mnist.pt",
    ], made


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_vae_trains_on_the_owners_mnist_and_decodes_our_noise(tmp_path):
    run = run_example("vae", tmp_path)
    scientist = run.said["scientist"]
    assert "Training Dataset size is: 640" in scientist and "batches per epoch: 10" in scientist
    averages = floats(r"^====> Epoch: \d Average loss: ([\d.]+)$", scientist)
    tests = floats(r"^====> Test set loss: ([\d.]+)$", scientist)
    assert len(averages) == 2 and averages[1] < averages[0], scientist  # the loss goes down
    assert len(tests) == 2 and tests[1] < tests[0], scientist
    assert "decoded from our own noise: (64, 784)" in scientist
    assert (tmp_path / "scientist" / "cwd" / "output.png").exists()


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_super_resolution_trains_on_the_owners_photos_and_enlarges_ours(tmp_path):
    run = run_example("super_resolution", tmp_path)
    owner, scientist = run.said["owner"], run.said["scientist"]
    assert "torch.Size([6, 32, 32]) torch.Size([6, 64, 64])" in owner  # the owner's folder
    losses = floats(r"^epoch \d, batch_idx \d, loss (\S+)$", scientist)
    assert len(losses) == 6 and all(0 < x < 1 for x in losses), scientist
    assert "output image saved to  output.jpg (64, 48) -> (128, 96)" in scientist, scientist


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_pydp_statistics_are_released_under_the_owners_budget_and_max_is_refused(tmp_path):
    """PySyft's PyDP pair: BoundedMean, Count and BoundedSum become duet.privacy statistics the
    owner charges to its budget (no request); PyDP's Max has no DP counterpart here."""
    run = run_example("dp_pydp", tmp_path)
    owner, scientist = run.said["owner"], run.said["scientist"]
    assert "Mean:  50.005" in owner and "Above 70:\t70" in owner and "Sum:\t10001" in owner
    (mean,) = floats(r"^Private Mean:  (\S+)$", scientist)
    (count,) = floats(r"^private count above:\t(\S+)$", scientist)
    (total,) = floats(r"^Private Sum:\t(\S+)$", scientist)
    assert 40 < mean < 60 and count > 60 and 9000 < total < 11000, scientist
    (left,) = floats(r"^left on carrots_eaten: (\S+)$", scientist)  # 2.0 - 0.8 - 1
    assert left == pytest.approx(0.2), scientist
    # the owner's ledger: 0.8 + 1 on the carrots, 1 on those above 70; no request was made
    assert re.search(r"carrots_eaten\s+\*\s+2\.0\s+0\.00001\s+1\.8\s+0\.2", owner), owner
    assert re.search(r"carrots_eaten_limit\s+\*\s+1\.0\s+0\.00001\s+1\.0\s+0\.0", owner)
    error = run.errors.get("scientist", "")
    assert error.startswith("UsageError: pydp.algorithms.laplacian.Max is not supported"), error
    assert "pydp.algorithms.laplacian.BoundedMean" in error
    assert "private max" not in scientist


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_opacus_engine_driven_by_the_scientist_is_refused_naming_the_dp_job(tmp_path):
    """PySyft's Opacus pair: everything up to the PrivacyEngine runs; the engine is refused
    (a loop the scientist drives claims no DP guarantee), naming duet.privacy.train with the
    notebook's own settings; nothing after it runs."""
    run = run_example("dp_opacus", tmp_path)
    scientist = run.said["scientist"]
    assert "Data Owner device is cpu" in scientist, scientist  # everything before it ran
    error = run.errors.get("scientist", "")
    assert error.startswith("UsageError: duet.opacus.privacy_engine.PrivacyEngine is refused"), (
        error
    )
    assert (
        "PrivacyEngine(batch_size=64, sample_size=60000, noise_multiplier=1.0, "
        "max_grad_norm=1.0) -> duet.privacy.train(model, data=<the dataset's tag>, "
        "lr=<your optimizer's lr>, batch_size=64, noise_multiplier=1.0, max_grad_norm=1.0, "
        "epochs=...)"
    ) in error, error
    assert "attached" not in scientist


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
@pytest.mark.parametrize("example", ["actor_critic", "reinforce"])
def test_reinforcement_learning_stops_at_gym_with_the_reason(example, tmp_path):
    """duet does not run gym environments on the owner's machine (arbitrary code and state
    there): the scientist's notebook gets that said at remote_gym.make, and nothing hangs."""
    run = run_example(example, tmp_path)
    assert "reward_threshold is 195.0" in run.said["scientist"]  # everything before it ran
    error = run.errors.get("scientist", "")
    assert error.startswith("NotAllowed: ") and "environments are not exposed by duet" in error
    assert "arbitrary code and state on the owner's machine" in error, error
    assert "Episode" not in run.said["scientist"]


def table_rows(text: str) -> list[str]:
    """The rows of a DataFrame's text (its columns may wrap into blocks), each as one line."""
    rows: dict[int, str] = {}
    for line in text.splitlines():
        row = re.match(r"^(\d+)\s+(.*)$", line)
        if row:
            rows[int(row[1])] = (rows.get(int(row[1]), "") + "  " + row[2]).strip()
    return [rows[i] for i in sorted(rows)]


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_pysyfts_request_handler_notebooks_run_as_written(tmp_path):
    """PySyft's request-handler notebooks, their code as written but for ``import duet as sy``:
    handlers decide the requests waiting, expire, and are removed by tag and by id."""
    run = run_example("request_handlers", tmp_path)
    owner, scientist = run.nbs["owner"], run.nbs["scientist"]
    waiting = table_rows(tagged_result(owner, "waiting"))
    assert len(waiting) == 3 and all(" pending " in row for row in waiting), waiting
    accepted = table_rows(tagged_result(owner, "accepted"))
    assert [r for r in accepted if "accepted  handler 1" in r and "[tag1]" in r], accepted
    assert sum(" pending " in r for r in accepted) == 2, accepted
    denied = table_rows(tagged_result(owner, "denied"))
    assert [r for r in denied if "denied  handler 2" in r and "[tag2]" in r], denied
    handlers = {
        tag: [re.findall(r"\[.*?\]", row)[0] for row in table_rows(tagged_result(owner, tag))]
        for tag in ("three-handlers", "two-handlers", "one-handler", "no-handler")
    }
    assert handlers == {
        "three-handlers": ["[tag1]", "[tag2]", "[tag3, tag4]"],
        "two-handlers": ["[tag2]", "[tag3, tag4]"],  # remove_handler("tag1")
        "one-handler": ["[tag3, tag4]"],  # remove_handler(its id's .value string)
        "no-handler": [],
    }, handlers
    assert len(table_rows(tagged_result(owner, "timed-handler"))) == 1
    assert "Empty DataFrame" in tagged_result(owner, "timed-out")  # it expired after 5 s
    listed = next(r for r in table_rows(tagged_result(owner, "list-published")) if "[tag_x]" in r)
    assert re.search(r"\[tag_x\]\s+list\s", listed), listed  # a list, as the owner sent it
    requested = table_rows(tagged_result(scientist, "requested"))
    assert len(requested) == 3 and all("some reason" in r for r in requested), requested
    # iterating the owner's list: its length released by the (tag_x, __len__) handler
    assert stream_text(scientist).count("<Pointer to object ") == 3, stream_text(scientist)


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_pysyfts_inherit_tags_notebooks_run_as_written(tmp_path):
    """PySyft's inherit-tags notebooks as written (``import duet as sy``): a result's pointer
    carries its inputs' tags and the op's name (the scientist's cells assert that), and the
    owner's request table says which tagged data, and which op, each value came from."""
    run = run_example("tags", tmp_path)
    rows = table_rows(tagged_result(run.nbs["owner"], "requests"))
    expected = [
        ("obj.property", "[a]", "requires_grad"),
        ("obj.method(args)", "[b, e]", "pow"),
        ("obj.method(kwargs)", "[c, e]", "pow"),
        ("class.method(args)", "[d, e]", "pow"),
        ("args with no .tags", "[d]", "pow"),
    ]
    assert len(rows) == len(expected), rows
    for row, (reason, data_tags, op) in zip(rows, expected, strict=True):
        shape = rf"  {re.escape(reason)}  .*  {re.escape(data_tags)}\s+{op}\s+\d+\s+pending "
        assert re.search(shape, row), (reason, row)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_example_notebooks_are_valid_and_wait_only_for_what_happens(example):
    """Each example converts to valid notebooks, and each cell waits only for a tag some cell
    of the pair sets (or an owner's launch)."""
    names = roles(example)
    assert names[-1] == "scientist" and names[0].startswith("owner"), names
    nbs = [percent_notebook(EXAMPLES / example / f"{role}.py") for role in names]
    cell_tags = [tag for nb in nbs for _, cell in code_cells(nb) for tag in tags(cell)]
    happen = {t for t in cell_tags if not t.startswith(AFTER)} | {f"{r}-waiting" for r in names}
    awaited = {t[len(AFTER) :] for t in cell_tags if t.startswith(AFTER)}
    assert awaited <= happen, awaited - happen
