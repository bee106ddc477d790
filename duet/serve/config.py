"""A node's configuration file (TOML): what it publishes, its handlers, access rules, privacy
budgets and limits.

Read with ``tomllib`` and checked by pydantic models (strict: an unknown key is an error, not a
silent no-op). Every error names the file and the line at fault: TOML syntax errors carry theirs;
for a value that does not validate, the line is found from the path pydantic reports
(``publish[1].tags`` -> the ``tags =`` line of the second ``[[publish]]`` table).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..errors import ConfigError, UsageError
from ..owner.quota import DEFAULT_MAX_BYTES, DEFAULT_MAX_OBJECTS, DEFAULT_MAX_PENDING
from ..pairing.signaling import websocket_url

#: how long a node's request waits for the owner by default: 10 minutes
REQUEST_TIMEOUT_SECS = 600.0
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30}  # fmt: skip


def _size(value: object) -> object:  # then validated as an int
    """``512`` or ``"512 MiB"`` / ``"2GB"``: a number of bytes."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if match is None or match.group(2).lower() not in _UNITS:
            raise ValueError(f"a size is a number of bytes or like '512 MiB', not {value!r}")
        return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    return value


Size = Annotated[int, BeforeValidator(_size), Field(gt=0)]


def _websocket_url(value: str) -> str:
    """``ws://``/``wss://`` as given, ``http://``/``https://`` read as those (PySyft's form)."""
    try:
        return websocket_url(value)
    except UsageError as exc:
        raise ValueError(str(exc)) from None


SignalingUrl = Annotated[str, AfterValidator(_websocket_url)]
Tags = list[Annotated[str, Field(min_length=1, max_length=200)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class OwnerConfig(_Strict):
    # an owner's key, not the one a scientist on this machine uses ("default")
    identity: str = Field(default="owner", pattern=r"^[A-Za-z0-9_-]+$")
    signaling_url: SignalingUrl | None = None  # none: a signaling server in this process
    signaling_host: str = "127.0.0.1"  # where that server listens
    signaling_port: int = Field(default=0, ge=0, le=65535)  # 0: any free port (printed)
    max_scientists: int = Field(default=8, ge=1, le=10_000)
    unknown: Literal["refuse", "accept"] = "refuse"
    data_root: str | None = None
    audit: str | None = None  # default: audit.sqlite3 in the duet home
    privacy_ledger: str | None = None  # default: privacy.sqlite3 in the duet home
    redact_errors: bool = False
    loopback: bool = False
    ice_servers: list[str] = []
    ice_hosts: list[str] | None = None


class LimitsConfig(_Strict):
    max_bytes: Size = DEFAULT_MAX_BYTES
    max_objects: int = Field(default=DEFAULT_MAX_OBJECTS, ge=1)
    max_pending_requests: int = Field(default=DEFAULT_MAX_PENDING, ge=1)
    # the longest a request waits for a decision on the review page (a scientist's shorter
    # timeout_secs holds; a node has no one at a prompt, so one that gives none still ends)
    request_timeout_secs: float = Field(default=REQUEST_TIMEOUT_SECS, gt=0)


class ReviewConfig(_Strict):
    enabled: bool = True  # the review page (its address, with its token, is printed)


class PublishConfig(_Strict):
    path: str = Field(min_length=1)
    tags: Tags = []
    description: str = ""
    pointable: bool = True
    listed: bool = False  # registered on the signaling server's registry (duet.search finds it)
    format: Literal["pt", "npy", "csv", "imagefolder"] | None = None  # none: from the path
    target: str | None = None  # csv: the column of labels (a dataset of (features, label))
    image_size: list[Annotated[int, Field(ge=1, le=8192)]] | None = None  # imagefolder: H, W
    grayscale: bool = False


class HandlerConfig(_Strict):
    action: Literal["accept", "deny"]
    tags: Tags | None = None
    kind: str | None = None
    name: str | None = None
    max_elements: int | None = Field(default=None, ge=0)
    scientist: str | None = None
    timeout_secs: float = -1
    # op tags match the op at the end of any computation from the data (a loss), not only the
    # op applied to a published object as a whole
    derived_inputs: bool = False


class AccessConfig(_Strict):
    scientist: str = Field(min_length=1)  # an ID, or "default"
    name: str = Field(default="", max_length=200)  # the owner's name for it, shown everywhere
    connect: bool = True
    tags: Tags | None = None  # none: all published data
    requests: bool = True


class BudgetConfig(_Strict):
    """A privacy budget (issue 19): what ``scientist`` may spend on the dataset tagged
    ``data``, set with ``owner.privacy.set_budget`` as the node starts."""

    scientist: str = Field(min_length=1)  # an ID, or "*": each scientist without one of their own
    data: str = Field(min_length=1, max_length=200)  # a tag a [[publish]] table gives
    epsilon: float = Field(gt=0, allow_inf_nan=False)
    delta: float = Field(gt=0, lt=1, allow_inf_nan=False)
    review: bool = False  # each DP release waits for the owner (the review page) with its price


class NodeConfig(_Strict):
    owner: OwnerConfig = Field(default_factory=OwnerConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    publish: list[PublishConfig] = []
    handler: list[HandlerConfig] = []
    access: list[AccessConfig] = []
    budget: list[BudgetConfig] = []


def load_config(path: str | Path) -> tuple[NodeConfig, Locator]:
    """Read and check a node's config file. Raises ConfigError naming the line at fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config {path}: {exc}") from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<config>") -> tuple[NodeConfig, Locator]:
    locator = Locator(text, source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        config = NodeConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = locator.line(error["loc"])
        field = ".".join(str(part) for part in error["loc"])
        raise ConfigError(f"{where}: {field}: {error['msg']}") from None
    _check_budgets(config, locator)
    return config, locator


def _check_budgets(config: NodeConfig, locator: Locator) -> None:
    """A budget names a dataset this node publishes (by a tag), once per scientist: a typo in
    ``data`` would otherwise be a budget on nothing, and the dataset meant would have none."""
    published = sorted({tag for entry in config.publish for tag in entry.tags})
    seen: dict[tuple[str, str], int] = {}
    for index, budget in enumerate(config.budget):
        if budget.data not in published:
            where = locator.line(("budget", index, "data"))
            tags = ", ".join(repr(tag) for tag in published) or "none"
            raise ConfigError(
                f"{where}: budget.{index}.data: no [[publish]] table has the tag {budget.data!r};"
                f" a budget is on a published dataset's tag (published tags: {tags})"
            )
        first = seen.setdefault((budget.scientist, budget.data), index)
        if first != index:
            where = locator.line(("budget", index))
            raise ConfigError(
                f"{where}: budget.{index}: a second budget for scientist {budget.scientist!r}"
                f" on {budget.data!r} (the first is budget.{first}); give each one budget"
            )


class Locator:
    """Finds the line of a key in the TOML text, for error messages: ``file:line``."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")

    def __init__(self, text: str, source: str):
        self.source = source
        # a key's path as pydantic gives it: names, and an array of tables' index
        self._keys: dict[tuple[str | int, ...], int] = {}
        table: tuple[str | int, ...] = ()
        counts: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header is not None:
                name = header.group(2)
                if header.group(1) == "[[":
                    counts[name] = counts.get(name, -1) + 1
                    table = (name, counts[name])
                else:
                    table = (name,)
                self._keys.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key is not None:
                self._keys.setdefault((*table, key.group(1)), number)

    def line(self, loc: tuple[str | int, ...]) -> str:
        """``file:line`` of the deepest part of ``loc`` found (a missing key: its table)."""
        for end in range(len(loc), 0, -1):
            number = self._keys.get(tuple(loc[:end]))
            if number is not None:
                return f"{self.source}:{number}"
        return self.source
