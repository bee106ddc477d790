"""``model.fix_precision().share(alice, bob, crypto_provider=carol)``: a model's weights in
fixed point, then secret-shared, for inference on shared inputs (PySyft 0.2's encrypted
classification).

Each parameter leaves the module's parameters and becomes an attribute of the same name holding
a ``FixedPrecisionTensor``, then a ``SharedTensor``: the module's own ``forward`` runs as
written, since ``F.linear`` and the operators reach the shared tensors through torch's
``__torch_function__``. Layers built from linear maps (``nn.Linear``), ReLU (``F.relu``,
``nn.ReLU``: compare.py's protocol) and polynomial activations (``x * x``) work. Like PySyft's,
both calls change the model in place and return it. Shared with ``requires_grad=True``, the
weights record their operations for ``backward()`` and the model lists one
``SharedParameter`` per weight, for ``optim.SGD(params=model.parameters(), lr=0.1)
.fix_precision()`` (optimizer.py): PySyft's Part 12.
"""

from __future__ import annotations

from torch import nn

from ..errors import UsageError
from . import ring
from .fixed import FixedPrecisionTensor
from .optimizer import SharedParameter
from .shared import SharedTensor


def fix_module(
    self: nn.Module,
    *args: object,
    precision_fractional: int = ring.DEFAULT_FRACTIONAL_BITS,
    **_ignored: object,
) -> nn.Module:
    """Every parameter of ``self`` in fixed point (in place); returns ``self``."""
    if args:
        raise UsageError("pass precision_fractional= by name")
    bits = ring.check_fractional_bits(precision_fractional)
    for name, module in self.named_modules():
        if any(buffer is not None for buffer in module._buffers.values()):
            raise UsageError(
                f"{name or type(module).__name__} has buffers (running statistics): only layers "
                "whose state is parameters can be fixed and shared (nn.Linear)"
            )
    for module in self.modules():
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            del module._parameters[name]
            module.__dict__[name] = FixedPrecisionTensor.encode(
                param.detach(), precision_fractional=bits
            )
    return self


def share_module(
    self: nn.Module, *workers: object, crypto_provider: object = None, **options: object
) -> nn.Module:
    """Every fixed-precision weight of ``self`` shared among ``workers`` (in place); with
    ``requires_grad=True``, trainable (see the module's docstring)."""
    found = [
        (module, name, value)
        for module in self.modules()
        for name, value in module.__dict__.items()
        if isinstance(value, FixedPrecisionTensor)
    ]
    if shared_weights(self):
        raise UsageError("this model is shared already: its weights live on their holders")
    if any(p is not None for p in self.parameters()) or not found:
        raise UsageError("fix the model first: model.fix_precision().share(...)")
    for module, name, value in found:
        shared = value.share(*workers, crypto_provider=crypto_provider, **options)
        module.__dict__[name] = shared
        if shared.requires_grad:
            # the forward finds the shared weight in __dict__; parameters() lists its stand-in
            module._parameters[name] = SharedParameter(shared)
    return self


def shared_weights(model: nn.Module) -> dict[str, SharedTensor]:
    """The shared weights of a model, by qualified name."""
    return {
        f"{prefix}.{name}" if prefix else name: value
        for prefix, module in model.named_modules()
        for name, value in module.__dict__.items()
        if isinstance(value, SharedTensor)
    }


__all__ = ["fix_module", "share_module", "shared_weights"]
