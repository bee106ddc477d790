"""The owner's policy chain: every action and every get passes through it, in order.

Each policy may refuse what a scientist does at three points: naming one of the owner's
published objects, running a call (with what it will allocate, and whether it touches the
owner's data), and asking for a release. The chain today: quotas, then access rules; later
rules (privacy budgets, secure-aggregation release rules) plug in by adding a ``Policy``,
without touching the executor.

A refusal raises a DuetError whose message names the rule; the executor and the service turn
it into the answer the scientist gets (a refusal about the owner's data, or of an operation on
it, follows the release boundary like any failure).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import NotAllowed, PermissionDenied
from .access import AccessRules

if TYPE_CHECKING:
    from ..protocol.allowlist import Op
    from .quota import PeerQuota
    from .store import StoredObject


class CallCheck:
    """What a policy knows about a call before it runs (made for every call: a plain class
    with slots, cheaper than a frozen dataclass)."""

    __slots__ = ("op", "planned_bytes", "private", "scientist", "target")

    def __init__(self, scientist: str, op: Op, target: object, planned_bytes: int, private: bool):
        self.scientist = scientist
        self.op = op
        self.target = target
        self.planned_bytes = planned_bytes  # the estimate of what it will allocate
        self.private = private  # whether it reads the owner's data


class Policy:
    """A rule on the owner's side. Hooks return None to let the action through, or raise."""

    name = "policy"

    def check_name(self, scientist: str, entry: StoredObject) -> None:
        """``scientist`` names the owner's published ``entry`` (to compute on it)."""

    def check_call(self, call: CallCheck) -> None:
        """A call is about to run."""

    def check_release(self, scientist: str, entry: StoredObject) -> None:
        """``scientist`` asks for ``entry`` to be released (a get with a request)."""


class QuotaPolicy(Policy):
    """What a call will allocate must fit the scientist's quota (its own or its private
    account: see quota.py)."""

    name = "quota"

    def __init__(self, quota_of: Callable[[str], PeerQuota]):
        self._quota_of = quota_of

    def check_call(self, call: CallCheck) -> None:
        self._quota_of(call.scientist).check(call.planned_bytes, call.private, call.op.path)


class AccessPolicy(Policy):
    """The owner's access rules (access.py)."""

    name = "access"

    def __init__(self, rules: AccessRules):
        self.rules = rules

    def check_name(self, scientist: str, entry: StoredObject) -> None:
        rule = self.rules.rule_for(scientist)
        if not rule.allows_data(entry.tags):
            raise NotAllowed(
                f"{rule} does not let you compute on the owner's object {entry.id} "
                f"(tagged {entry.tags}); ask the owner"
            )

    def check_release(self, scientist: str, entry: StoredObject) -> None:
        rule = self.rules.rule_for(scientist)
        if not rule.requests:
            raise PermissionDenied(
                f"{rule} lets you compute but not ask for releases; your request for "
                f"{entry.id} was not sent to the owner"
            )


class PolicyChain(Policy):
    """The policies, in order; the first refusal stops the action."""

    name = "chain"

    def __init__(self, policies: list[Policy]):
        self.policies = list(policies)
        self._call_checks = self._overriding("check_call")

    def _overriding(self, hook: str) -> list[Callable[..., None]]:
        """The policies' own ``hook`` methods (the base class's do nothing: not called)."""
        base = getattr(Policy, hook)
        return [getattr(p, hook) for p in self.policies if getattr(type(p), hook) is not base]

    def add(self, policy: Policy) -> None:
        self.policies.append(policy)
        self._call_checks = self._overriding("check_call")

    def check_name(self, scientist: str, entry: StoredObject) -> None:
        for policy in self.policies:
            policy.check_name(scientist, entry)

    def check_call(self, call: CallCheck) -> None:
        for check in self._call_checks:
            check(call)

    def check_release(self, scientist: str, entry: StoredObject) -> None:
        for policy in self.policies:
            policy.check_release(scientist, entry)

    def allows_name(self, scientist: str, entry: StoredObject) -> bool:
        try:
            self.check_name(scientist, entry)
        except (NotAllowed, PermissionDenied):
            return False
        return True
