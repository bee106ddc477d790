"""Plans: a training step recorded once and replayed by the owner per batch.

``step = duet.plan(train_step)`` wraps a function of pointers. Its first call records the
function's remote calls with symbolic inputs (nothing runs) and sends them to the owner once;
every call after that, the first included, is one small message naming the plan, its inputs and
the ids of its outputs. The owner checks each recorded call against the allowlist when it runs,
like any other action.

A plan cannot wait for values inside (no ``get``, no ``len``) and cannot capture local tensors:
send them first. Pointers the function closes over (a model, an optimizer) are used as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ..errors import UsageError
from ..protocol.messages import Call, DefinePlan, RunPlan
from .pointer import Pointer

if TYPE_CHECKING:
    from .client import PointerClient


class Plan:
    def __init__(self, client: PointerClient, fn: Callable[..., object]):
        self._client = client
        self.fn = fn
        self.id: str | None = None
        self._arity = 0
        self._shape: str | int | None = (
            None  # how outputs are returned: None, "one", or a tuple length
        )
        self._outputs: list[tuple[str | None, dict[str, object]]] = []

    # Any: None, a pointer or a tuple of them, as the function returned: left dynamic, so that a
    # caller's ``loss = step(x, y); loss.get()`` needs no narrowing
    def __call__(self, *args: Pointer) -> Any:
        if not all(isinstance(a, Pointer) for a in args):
            raise UsageError("a plan takes pointers only; send local values first")
        if self.id is None:
            self._record(args)
        elif len(args) != self._arity:
            raise UsageError(f"this plan takes {self._arity} inputs, not {len(args)}")
        client = self._client
        out_ids = [client.new_id() for _ in self._outputs]
        plan_id = self.id
        assert plan_id is not None
        client.enqueue(
            lambda enc: RunPlan.model_construct(
                plan=plan_id, inputs=[a.id for a in args], outputs=out_ids
            )
        )
        pointers = [
            client.pointer(object_id, kind, meta, owned=True)
            for object_id, (kind, meta) in zip(out_ids, self._outputs, strict=True)
        ]
        if self._shape is None:
            return None
        if self._shape == "one":
            return pointers[0]
        return tuple(pointers)

    def _record(self, args: tuple[Pointer, ...]) -> None:
        client = self._client
        placeholders = [
            client.pointer(client.new_id(), a.kind, dict(a.meta), owned=False) for a in args
        ]
        with client.recording() as recorded:
            result = self.fn(*placeholders)
        # what a plan's function records is its pointers' calls (DefinePlan validates it)
        calls = cast("list[Call]", recorded)
        if result is None:
            outputs: list[Pointer] = []
            self._shape = None
        elif isinstance(result, Pointer):
            outputs = [result]
            self._shape = "one"
        elif isinstance(result, tuple | list) and all(isinstance(r, Pointer) for r in result):
            outputs = list(result)
            self._shape = len(outputs)
        else:
            raise UsageError("a plan returns None, a pointer, or a tuple of pointers")
        if not calls:
            raise UsageError("the plan's function made no remote calls")
        made = {c.result for c in calls}
        for output in outputs:
            if output.id not in made:
                raise UsageError("a plan's outputs must be results computed inside the plan")
        self._arity = len(args)
        self._outputs = [(o.kind, dict(o.meta)) for o in outputs]
        self.id = plan_id = client.new_id()
        client.enqueue(
            lambda enc: DefinePlan(
                id=plan_id,
                inputs=[p.id for p in placeholders],
                outputs=[o.id for o in outputs],
                calls=calls,
            )
        )

    def __repr__(self) -> str:
        state = f"defined as {self.id}" if self.id else "not recorded yet"
        return f"<Plan {getattr(self.fn, '__name__', 'plan')}, {state}>"
