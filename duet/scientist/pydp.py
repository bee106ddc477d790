"""``duet.pydp``: PySyft's remote PyDP calls, answered by ``duet.privacy`` under your budget.

PySyft 0.5's PyDP notebook built PyDP's algorithms on the owner's machine through pointers and
asked the owner to release each result. duet keeps those call shapes and maps them onto its DP
statistics, which the owner prices and charges to your privacy budget on the dataset::

    BoundedMean = duet.pydp.algorithms.laplacian.BoundedMean
    carrots = duet.store["carrots_eaten"]
    BoundedMean(0.8, 1, 100).quick_result(carrots)      # a float, charged epsilon 0.8
    # is duet.privacy.mean(carrots, bounds=(1, 100), epsilon=0.8)

Supported, and only these (anything else under ``duet.pydp`` is a UsageError naming them):

* ``duet.pydp.algorithms.laplacian.BoundedMean(epsilon, lower_bound, upper_bound, dtype=)``
  -> ``duet.privacy.mean(data, bounds=(lower_bound, upper_bound), epsilon=epsilon)``
* ``duet.pydp.algorithms.laplacian.BoundedSum(epsilon, lower_bound, upper_bound, dtype=)``
  -> ``duet.privacy.sum(...)`` (an int when ``dtype="int"``, PyDP's default)
* ``duet.pydp.algorithms.laplacian.Count(epsilon, dtype=)`` -> ``duet.privacy.count(...)``
* on each, ``quick_result(data)`` with ``data`` a pointer to a published dataset as it is (a
  1-D tensor, or a list of numbers sent as ``sy.lib.python.List``).

How the result differs from PyDP's:

* The noise is not PyDP's (Google's DP library): the owner adds OpenDP's Laplace noise after
  clamping to the bounds (``duet.privacy``); the numbers differ run to run as PyDP's do, but
  not in the same way (a mean is a noisy sum over a noisy count, say).
* The owner's budget is the only budget: each ``quick_result`` is charged ``epsilon`` on the
  dataset's budget and released at once, without a request, while the budget lasts; over it,
  QuotaExceeded with the numbers and nothing runs. PyDP's own per-object budget
  (``add_entries``, ``result(privacy_budget)``, ``privacy_budget_left``) does not exist here.
* ``quick_result`` returns the number itself (a float or an int). It also has the ``get()``
  PySyft's pointer had, so ``.get(request_block=True, reason=..., timeout_secs=...)`` returns
  the same number: no request is made and the reason is not sent.
* Bounds are required: PyDP picks missing bounds from the data (spending privacy duet cannot
  price), and duet refuses them. ``l0_sensitivity`` and ``linf_sensitivity`` other than 1 are
  refused: duet's neighbouring relation is one row added or removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn, Self

from ..errors import UsageError
from .pointer import Pointer

if TYPE_CHECKING:
    from .privacy import ScientistPrivacy

#: the algorithms duet maps, by PyDP's name: the ``duet.privacy`` statistic each becomes
ALGORITHMS = {"BoundedMean": "mean", "BoundedSum": "sum", "Count": "count"}
#: the namespaces on the way to them
NAMESPACES = {"pydp": "algorithms", "pydp.algorithms": "laplacian"}
SUPPORTED = ", ".join(f"pydp.algorithms.laplacian.{name}" for name in ALGORITHMS)
DTYPES = ("int", "float")


def _unsupported(path: str) -> NoReturn:
    raise UsageError(
        f"{path} is not supported by duet.pydp: duet maps {SUPPORTED} (each with "
        "quick_result(data)) onto duet.privacy.mean, sum and count, priced against the "
        "owner's privacy budget; for anything else, see duet.privacy (mean, sum, count, "
        "histogram)"
    )


class _Released:
    """A DP result the owner released under your budget; ``get()`` (PySyft's pointer call)
    returns it as it is: it is already yours, no request is made."""

    def get(
        self,
        *,
        request_block: bool = False,
        reason: str = "",
        timeout_secs: float | None = None,
        delete_obj: bool = True,
        name: str = "",
    ) -> Self:
        return self


class ReleasedFloat(_Released, float):
    """A DP number (a mean, a sum) released under your budget."""


class ReleasedInt(_Released, int):
    """An integer DP result (a count) released under your budget."""


class Algorithm:
    """One of PyDP's laplacian algorithms, bound to its settings; ``quick_result(data)`` asks
    the owner for the statistic under your budget."""

    def __init__(
        self,
        privacy: ScientistPrivacy,
        name: str,
        epsilon: float,
        bounds: tuple[float, float] | None,
        dtype: str,
    ):
        self._privacy = privacy
        self._name = name
        self.epsilon = epsilon
        self.bounds = bounds
        self.dtype = dtype

    def quick_result(self, data: object, *, timeout_secs: float | None = None) -> float:
        """The statistic of the published dataset ``data`` points to, epsilon-DP, charged to
        your budget on it. Raises QuotaExceeded over budget, UsageError for data that is not
        a pointer to a published dataset as it is."""
        if not isinstance(data, Pointer):
            raise UsageError(
                f"duet.pydp's {self._name}.quick_result takes a pointer to the owner's published "
                f"dataset (duet.store['carrots_eaten']), not {type(data).__name__}: the data "
                "stays with its owner (for your own values, use PyDP itself)"
            )
        kind = ALGORITHMS[self._name]
        privacy = self._privacy
        if kind == "count":
            return ReleasedInt(privacy.count(data, epsilon=self.epsilon, timeout_secs=timeout_secs))
        assert self.bounds is not None  # checked when the algorithm was built
        run = privacy.mean if kind == "mean" else privacy.sum
        value = run(data, bounds=self.bounds, epsilon=self.epsilon, timeout_secs=timeout_secs)
        if kind == "sum" and self.dtype == "int":
            return ReleasedInt(round(value))
        return ReleasedFloat(value)

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("_"):  # IPython's probes (_repr_html_...) and private names
            raise AttributeError(name)
        raise UsageError(
            f"{self._name}.{name} is not supported by duet.pydp, only quick_result(data): the "
            "owner's privacy budget is the one budget (duet.privacy.budget(tag) shows what is "
            "left), and each result is released under it at once"
        )

    def __repr__(self) -> str:
        bounds = "" if self.bounds is None else f", bounds={self.bounds}"
        return f"<duet.pydp {self._name}: epsilon={self.epsilon}{bounds}, dtype={self.dtype!r}>"


class AlgorithmClass:
    """``duet.pydp.algorithms.laplacian.BoundedMean`` and its kin: called with PyDP's
    arguments, it makes an Algorithm."""

    def __init__(self, privacy: ScientistPrivacy, name: str):
        self._privacy = privacy
        self._name = name

    def __call__(
        self,
        epsilon: float = 1.0,
        *args: object,
        delta: float = 0.0,
        dtype: str = "int",
        **kwargs: object,
    ) -> Algorithm:
        """PyDP's arguments: ``(epsilon, lower_bound, upper_bound, l0_sensitivity=1,
        linf_sensitivity=1, dtype="int")``, ``(epsilon, l0_sensitivity=1, linf_sensitivity=1,
        dtype="int")`` for Count; ``delta`` may be given, as 0 (these are pure epsilon-DP)."""
        bounded = self._name != "Count"
        names: tuple[str, ...] = ("lower_bound", "upper_bound") if bounded else ()
        names += ("l0_sensitivity", "linf_sensitivity")
        if len(args) > len(names):
            raise UsageError(
                f"{self._name} takes epsilon and at most {len(names)} more arguments "
                f"({', '.join(names)}), not {1 + len(args)}"
            )
        settings: dict[str, object] = {"l0_sensitivity": 1, "linf_sensitivity": 1}
        for name, value in zip(names, args, strict=False):
            settings[name] = value
        for name, value in kwargs.items():
            if name not in names:
                raise UsageError(
                    f"{self._name} takes no {name!r} in duet.pydp (it takes epsilon, "
                    f"{', '.join(names)}, dtype)"
                )
            if name in names[: len(args)]:
                raise UsageError(f"{self._name} got {name!r} twice")
            settings[name] = value
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
            raise UsageError(f"{self._name}'s epsilon is a number, not {epsilon!r}")
        if delta != 0:
            raise UsageError(
                f"{self._name} in duet.pydp is pure epsilon-DP (Laplace noise): give delta=0, "
                f"not {delta!r}"
            )
        if dtype not in DTYPES:
            raise UsageError(f"{self._name}'s dtype is 'int' or 'float', not {dtype!r}")
        for name in ("l0_sensitivity", "linf_sensitivity"):
            if settings[name] != 1:
                raise UsageError(
                    f"{self._name}: duet counts one row added or removed, so {name} is 1, not "
                    f"{settings[name]!r}"
                )
        bounds: tuple[float, float] | None = None
        if bounded:
            lo, hi = settings.get("lower_bound"), settings.get("upper_bound")
            if lo is None or hi is None:
                raise UsageError(
                    f"{self._name} needs lower_bound and upper_bound in duet.pydp: PyDP would "
                    "pick them from the data, spending privacy duet does not price; "
                    f"{self._name}(epsilon, lower_bound, upper_bound)"
                )
            if (
                not isinstance(lo, int | float)
                or not isinstance(hi, int | float)
                or isinstance(lo, bool)
                or isinstance(hi, bool)
            ):
                raise UsageError(f"{self._name}'s bounds are numbers, not {lo!r}, {hi!r}")
            bounds = (float(lo), float(hi))
        return Algorithm(self._privacy, self._name, float(epsilon), bounds, dtype)

    def __repr__(self) -> str:
        return f"<duet.pydp pydp.algorithms.laplacian.{self._name}>"


class PyDP:
    """``duet.pydp`` and the namespaces under it: only the paths in NAMESPACES and
    ALGORITHMS exist; anything else is a UsageError naming what is supported."""

    def __init__(self, privacy: ScientistPrivacy, path: str = "pydp"):
        self._privacy = privacy
        self._path = path

    def __getattr__(self, name: str) -> PyDP | AlgorithmClass:
        if name.startswith("_"):  # IPython's probes (_repr_html_...) and private names
            raise AttributeError(name)
        if NAMESPACES.get(self._path) == name:
            return PyDP(self._privacy, f"{self._path}.{name}")
        if self._path == "pydp.algorithms.laplacian" and name in ALGORITHMS:
            return AlgorithmClass(self._privacy, name)
        _unsupported(f"{self._path}.{name}")

    def __dir__(self) -> list[str]:
        if self._path == "pydp.algorithms.laplacian":
            return sorted(ALGORITHMS)
        return [NAMESPACES[self._path]] if self._path in NAMESPACES else []

    def __repr__(self) -> str:
        return f"<duet.{self._path}: {SUPPORTED}, under the owner's privacy budget>"


__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmClass", "PyDP", "ReleasedFloat", "ReleasedInt"]
