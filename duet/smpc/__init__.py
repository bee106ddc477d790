"""Secret-shared tensors over workers, PySyft 0.2's API: ``x.fix_precision()``,
``.share(bob, alice, crypto_provider=carol)``, arithmetic on shares, ``.get()``,
``.float_precision()``.

Users reach these through torch tensors (``install_smpc`` adds the methods when duet is
imported); the modules here are private, one concern each:
- ring.py: Z(2^64), fixed-point encoding, randomness (os.urandom, ChaCha20);
- fixed.py: FixedPrecisionTensor, fixed point in the scientist's process;
- parties.py: checking the holders and the crypto provider; delivering and opening values;
- provider.py: what the crypto provider deals (Beaver triples, truncation masks) as seeds and
  corrections;
- truncation.py: division by a public number (SecureML for two holders, a provider's mask for more);
- compare.py: comparisons, ReLU, abs and max (a provider's bit-shared mask, a bitwise comparison);
- autograd.py, gradients.py: ``backward()`` on shared tensors, and each operation's rule;
- shared.py: SharedTensor, the shares and the operations on them;
- torch_functions.py: torch's functions (F.linear, torch.max, ...) called with shared tensors;
- optimizer.py: ``optim.SGD(...).fix_precision()``, SGD on shared weights;
- models.py: a model's weights fixed and shared, for inference or training on shared inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from . import torch_functions as _torch_functions  # noqa: F401 (fills shared.TORCH_FUNCTIONS)
from .fixed import FixedPrecisionTensor, fix_precision
from .models import fix_module, share_module
from .optimizer import fix_optimizer
from .shared import SharedTensor, share


def install_smpc() -> None:
    """Add ``fix_precision`` / ``fix_prec`` and ``share`` to torch.Tensor and nn.Module, and
    ``fix_precision`` to torch's optimizers."""
    torch.Tensor.fix_precision = fix_precision  # type: ignore[attr-defined]
    torch.Tensor.fix_prec = fix_precision  # type: ignore[attr-defined]
    torch.Tensor.share = share  # type: ignore[attr-defined]
    nn.Module.fix_precision = fix_module  # type: ignore[attr-defined]
    nn.Module.fix_prec = fix_module  # type: ignore[attr-defined]
    nn.Module.share = share_module  # type: ignore[attr-defined]
    torch.optim.Optimizer.fix_precision = fix_optimizer  # type: ignore[attr-defined]
    torch.optim.Optimizer.fix_prec = fix_optimizer  # type: ignore[attr-defined]


__all__ = ["FixedPrecisionTensor", "SharedTensor", "install_smpc"]
