"""Federated learning over real duets: one model trained across several owners, in parallel.

The scientist joins each owner (``sy.join_duet``, or ``join_owners`` for all at once) and hands
the sessions to a ``Federation``; each round every owner trains the global model on its own
machine, releases the result through its request queue, and a ``Strategy`` (``FedAvg``,
``FedProx``, ``FedAdam``) aggregates what was released. Owners allow the rounds with
``allow_federated_training`` (constrained handlers) or decide each request by hand.

    owners = sy.federated.join_owners([sy.federated.OwnerAddress("a", sid_a, url, owner_id_a), ...])
    fed = sy.federated.Federation(model, owners, data="digits", strategy=sy.federated.FedAvg(),
                                  evaluate=accuracy, min_owners=2, round_timeout_secs=60)
    history = fed.fit(rounds=10)
    history.plot("accuracy.png")

With differential privacy, each owner's round is a DP-SGD job it runs under the scientist's
privacy budget on its data, and the history says what each spent:

    fed = sy.federated.Federation(model, owners, data="digits", dp=sy.federated.DpRound(
        noise_multiplier=1.1, max_grad_norm=1.0, batch_size=32, epochs=1, lr=0.5))
    fed.fit(rounds=2).epsilon()          # {"alice": [0.52, 0.52], "bob": [0.52, None]}
    # each owner: allow_federated_training(duet, "digits", dp=PrivacyBudget(epsilon=5, delta=1e-5))

The modules here are private; use these names:
- strategies.py: Strategy, FedAvg, FedProx, FedAdam, Update, weighted_average, proximal_term;
- joining.py: OwnerAddress, join_all (joining every owner at once);
- AsyncSession (awaitable syncs and requests on one session) is duet/sessions/aio.py;
- member.py: LocalTraining (what each owner runs), one owner's part of a round;
- dp.py: DpRound (a DP-SGD job each owner runs a round), PrivacyBudget (the owner's side);
- federation.py: Federation (rounds, deadlines, min_owners, fit / fit_async);
- history.py: History, RoundReport, OwnerResult, Outcome, LeftOut (and the plot);
- the live per-owner display (OwnerProgress) is duet/display/progress.py;
- owner.py: allow_federated_training, the owner's handlers (SecureHistoryCorrupt: its secure
  aggregation's history file, duet/owner/secure_history.py, cannot be read);
- names.py: the requests' names.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..display.progress import OwnerProgress
from ..identity import Identity
from ..owner.secure_history import SecureHistoryCorrupt
from ..runtime import run
from ..sessions.aio import AsyncSession, Released
from ..sessions.scientist import ScientistSession
from .dp import DpRound, PrivacyBudget
from .federation import Federation
from .history import History, Outcome, OwnerResult, RoundReport
from .joining import OwnerAddress, join_all
from .member import LocalTraining
from .names import RequestNames
from .owner import allow_federated_training
from .secure import SecureAggregation
from .strategies import FedAdam, FedAvg, FedProx, Strategy, Update, proximal_term, weighted_average


def join_owners(
    addresses: Sequence[OwnerAddress],
    *,
    identity: Identity | str | None = None,
    timeout_secs: float = 120.0,
) -> dict[str, ScientistSession]:
    """Join every owner at once (blocking); returns name -> session.

    Raises the first owner's error if any join failed (the sessions that did connect are
    closed); to go on without the owners that could not be reached, ``await join_all(...)``
    gives each name's session or error.
    """
    joined = run(
        join_all(addresses, identity=identity, timeout_secs=timeout_secs),
        timeout_secs=timeout_secs + 10,
        what="joining the owners",
    )
    failed = {name: r for name, r in joined.items() if isinstance(r, BaseException)}
    if failed:
        for result in joined.values():
            if isinstance(result, ScientistSession):
                result.close()
        name, error = next(iter(failed.items()))
        error.add_note(f"(while joining owner {name!r})")
        raise error
    return {name: r for name, r in joined.items() if isinstance(r, ScientistSession)}


__all__ = [
    "AsyncSession",
    "DpRound",
    "FedAdam",
    "FedAvg",
    "FedProx",
    "Federation",
    "History",
    "LocalTraining",
    "Outcome",
    "OwnerAddress",
    "OwnerProgress",
    "OwnerResult",
    "PrivacyBudget",
    "Released",
    "RequestNames",
    "RoundReport",
    "SecureAggregation",
    "SecureHistoryCorrupt",
    "Strategy",
    "Update",
    "allow_federated_training",
    "join_all",
    "join_owners",
    "proximal_term",
    "weighted_average",
]
