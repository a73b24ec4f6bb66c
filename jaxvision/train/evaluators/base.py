"""The evaluator interface and the loop over evaluation batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

Batch = dict[str, jax.Array]


class Evaluator:
    """One metric family over an evaluation pass.

    ``batch_fn`` runs inside the jitted eval step; the rest runs on the host:
    ``reset`` before a pass, ``update`` with each batch's ``batch_fn`` output (still on
    device), ``result`` after the pass.
    """

    #: The batch fields ``batch_fn`` reads (besides the loader's padding flag).
    fields: tuple[str, ...] = ()

    def batch_fn(self, preds: dict[str, jax.Array], batch: Batch,
                 valid: jax.Array) -> Any:
        """Per batch, under jit: ``preds`` (the task's predictions), ``batch`` (the global
        batch), ``valid`` ([B] float32, 0 on padding rows). Returns a pytree."""
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, out: Any) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, float]:
        """Named scalars, ``eval_``-prefixed (``eval_top1``)."""
        raise NotImplementedError


class SumEvaluator(Evaluator):
    """An evaluator whose per-batch output is a dict of sums: they are added on device (no
    host sync per batch) and turned into metrics by :meth:`finalize`."""

    def reset(self) -> None:
        self._totals: dict[str, jax.Array] | None = None

    def update(self, out: dict[str, jax.Array]) -> None:
        totals = getattr(self, "_totals", None)
        self._totals = out if totals is None else jax.tree_util.tree_map(jnp.add, totals, out)

    def result(self) -> dict[str, float]:
        if getattr(self, "_totals", None) is None:
            raise ValueError(f"{type(self).__name__}: no batches were evaluated (empty "
                             "evaluation loader)")
        return self.finalize({k: float(v) for k, v in jax.device_get(self._totals).items()})

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError


def run_evaluators(eval_fn: Callable[[Any, Batch], Sequence[Any]], state: Any,
                   batches: Iterable[Batch], evaluators: Sequence[Evaluator]
                   ) -> dict[str, float]:
    """One pass: ``eval_fn(state, batch)`` gives one output per evaluator; returns every
    evaluator's metrics merged (a name given twice is an error)."""
    for ev in evaluators:
        ev.reset()
    for batch in batches:
        outs = eval_fn(state, batch)
        for ev, out in zip(evaluators, outs, strict=True):
            ev.update(out)
    merged: dict[str, float] = {}
    for ev in evaluators:
        res = ev.result()
        clash = merged.keys() & res.keys()
        if clash:
            raise ValueError(f"evaluators report the same metric twice: {sorted(clash)}")
        merged.update(res)
    return merged
