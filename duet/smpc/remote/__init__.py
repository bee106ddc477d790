"""Secret-shared tensors over real duets (issue 20): two owners hold the shares, a third deals
Beaver triples, the scientist relays sealed values it cannot read.

- party.py: one party's protocol core (keys signed over the computation, sealing, shares,
  Beaver multiplication, truncation, reveals); no I/O, the owner's node runs it
  (duet/owner/smpc_desk.py);
- comparison.py: comparisons and ReLU between the holders (``duet.smpc.compare``'s protocol), one
  holder's side as a state machine, and the provider's dealing for them;
- computation.py: the scientist's side, ``SecureComputation`` and ``RemoteShared``.
"""

from __future__ import annotations

from .computation import RemoteShared, SecureComputation

__all__ = ["RemoteShared", "SecureComputation"]
