"""``duet demo``: the Duet tutorial on one machine, end to end, with nothing set up.

A signaling server process, an owner process that publishes the handwritten digits
scikit-learn ships, and this process as the scientist: it trains the tutorial's CNN on the
owner's digits over WebRTC, with the owner's request decisions shown as they happen, downloads
the trained model with the owner's approval and reports its accuracy on held-out digits.
"""

from __future__ import annotations

from .runner import main

__all__ = ["main"]
