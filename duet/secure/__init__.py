"""Secure aggregation (issue 20, the protocol core): owners add their model updates so that the
scientist who relays every message learns their sum and no single one.

Bonawitz et al. 2017's double masking, over the ring Z(2^64): each owner clips, scales and
stochastically rounds its update (``Quantiser``), adds a mask agreed with every other owner (the
masks cancel in the sum) and one of its own, and releases only the masked update. Round keys are
X25519, signed by each owner's Ed25519 identity over the round (id, roster, model, parameters);
mask streams are ChaCha20 keyed by HKDF; seeds and mask keys are Shamir-shared among the owners,
sealed owner to owner with ChaCha20-Poly1305, so owners may drop after the keys are agreed, down to
a threshold of more than half the roster (``threshold_against``: more, if the scientist may work
with some of the owners).

A library layer: no session, no wire. ``OwnerRound`` is an owner's state machine, ``Aggregator``
the scientist's, ``Relay`` an in-memory driver that carries their messages (and that tests turn
hostile). Wiring it into ``sy.federated``'s rounds over real duets is the next step.

    spec = RoundSpec("round-1", roster, model_digest(model), Quantiser(clip=10.0), threshold=2)
    owners = [OwnerRound(identity, spec, expected_owners=roster, model_digest=model_digest(model))
              for identity in identities]
    total = Relay(spec, Layout.of(update)).run(owners, updates)   # the sum, within
    spec.quantiser.error_bound(len(owners))                        # of the clipped updates' sum
"""

from .aggregator import Aggregator
from .messages import (
    EncryptedShare,
    KeyAdvertisement,
    MaskedInput,
    Message,
    UnmaskRequest,
    UnmaskResponse,
)
from .participant import History, OwnerRound, RoundHistory, Stage
from .quantise import Layout, Quantiser, Update
from .relay import Relay
from .round import (
    MIN_OWNERS,
    RoundSpec,
    SecureAggregationAborted,
    model_digest,
    threshold_against,
)

__all__ = [
    "MIN_OWNERS",
    "Aggregator",
    "EncryptedShare",
    "History",
    "KeyAdvertisement",
    "Layout",
    "MaskedInput",
    "Message",
    "OwnerRound",
    "Quantiser",
    "Relay",
    "RoundHistory",
    "RoundSpec",
    "SecureAggregationAborted",
    "Stage",
    "UnmaskRequest",
    "UnmaskResponse",
    "Update",
    "model_digest",
    "threshold_against",
]
