"""``duet.opacus``: PySyft's remote Opacus, refused, naming the DP job that replaces it.

PySyft 0.5's Opacus notebook built ``PrivacyEngine(model.real_module, batch_size=,
sample_size=, noise_multiplier=, max_grad_norm=)`` on the owner's machine, attached it to a
remote optimizer, then drove the training loop itself and read ``get_privacy_spent(delta)``.
A loop the scientist drives cannot carry a DP guarantee the owner can stand behind: the
scientist chooses what runs between the engine's steps (another optimizer, an extra
non-private step, a loss shaped to encode a row), and the engine's epsilon counts only what it
saw. So duet refuses the engine and says which call does the same under the owner's control:
``duet.privacy.train(model, data=<tag>, batch_size=, noise_multiplier=, max_grad_norm=,
epochs=)``, a DP-SGD job the owner runs with Opacus and charges to the budget. Nothing is sent.
"""

from __future__ import annotations

from typing import NoReturn

from ..errors import UsageError

WHY = (
    "a training loop the scientist drives cannot carry a DP guarantee the owner can enforce (the "
    "scientist picks what runs between the engine's steps, and the engine counts only what it "
    "sees), so duet never lets one claim an epsilon. The owner runs DP-SGD jobs instead, priced "
    "and charged to your privacy budget"
)
#: PrivacyEngine's settings (Opacus 0.x) and the duet.privacy.train argument each becomes
MAPPED = {
    "batch_size": "batch_size",
    "noise_multiplier": "noise_multiplier",
    "max_grad_norm": "max_grad_norm",
    "target_epsilon": "epsilon",
    "epochs": "epochs",
}
TEMPLATE = (
    "duet.privacy.train(model, data=<the dataset's tag>, lr=<your optimizer's lr>, "
    "batch_size=..., noise_multiplier=..., max_grad_norm=..., epochs=...)"
)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def suggested_train(settings: dict[str, object]) -> str:
    """The ``duet.privacy.train(...)`` call a PrivacyEngine's keyword settings map to."""
    given = {MAPPED[k]: v for k, v in settings.items() if k in MAPPED and _number(v)}
    parts = ["model", "data=<the dataset's tag>", "lr=<your optimizer's lr>"]
    parts.append(f"batch_size={given.get('batch_size', '...')}")
    if "epsilon" in given:
        parts.append(f"epsilon={given['epsilon']}")
    else:
        parts.append(f"noise_multiplier={given.get('noise_multiplier', '...')}")
    parts.append(f"max_grad_norm={given.get('max_grad_norm', '...')}")
    parts.append(f"epochs={given.get('epochs', '...')}")
    return f"duet.privacy.train({', '.join(parts)})"


def engine_refusal(
    settings: dict[str, object], path: str = "opacus.privacy_engine.PrivacyEngine"
) -> str:
    """The refusal of ``PrivacyEngine(**settings)``: why, and the DP job with its settings."""
    shown = ", ".join(f"{k}={v!r}" for k, v in settings.items() if _number(v))
    return (
        f"duet.{path} is refused: {WHY}. "
        f"PrivacyEngine({shown}) -> {suggested_train(settings)}; then "
        "model, epsilon = job.wait(). sample_size is the owner's dataset's own length, and "
        "duet.privacy.quote('train', model, ...) tells the price first"
    )


class RemoteOpacus:
    """``duet.opacus``: ``privacy_engine.PrivacyEngine(...)`` raises UsageError naming the
    ``duet.privacy.train`` call its settings map to; anything else under ``duet.opacus``
    raises UsageError naming that call's shape. Nothing is sent."""

    def __init__(self, path: str = "opacus"):
        self._path = path

    def __getattr__(self, name: str) -> RemoteOpacus:
        if name.startswith("_"):  # IPython's probes (_repr_html_...) and private names
            raise AttributeError(name)
        if self._path == "opacus" and name == "privacy_engine":
            return RemoteOpacus("opacus.privacy_engine")
        if name == "PrivacyEngine":  # the engine of Opacus 0.x, or 1.x's opacus.PrivacyEngine
            return RemoteOpacus(f"{self._path}.PrivacyEngine")
        raise UsageError(f"duet.{self._path}.{name} is refused: {WHY}: {TEMPLATE}")

    def __call__(self, *args: object, **settings: object) -> NoReturn:
        if self._path.endswith(".PrivacyEngine"):
            raise UsageError(engine_refusal(settings, self._path))
        raise UsageError(f"duet.{self._path} is refused: {WHY}: {TEMPLATE}")

    def __repr__(self) -> str:
        return f"<duet.{self._path}: refused, use duet.privacy.train>"


__all__ = ["RemoteOpacus", "engine_refusal", "suggested_train"]
