"""Checkpoints that survive preemption (orbax ``CheckpointManager``).

Layout (:mod:`jaxvision.train.workdir`): ``<workdir>/checkpoints/<step>/{state,loader}``:
``state`` is the :class:`~jaxvision.train.state.TrainState` pytree (``StandardSave``),
``loader`` the data loader's JSON position (``JsonSave``), so a resumed run sees exactly the
batches an uninterrupted one would. Orbax writes each step into a temporary folder and
renames it when complete (atomic), so a run killed mid-save leaves the previous checkpoint as
the latest; with ``async_save`` the arrays are written in a background thread while training
goes on.

Kept: the ``checkpoint.keep`` latest, plus the ``checkpoint.keep_best`` best by
``checkpoint.best_metric`` among checkpoints saved with evaluation metrics.

Restoring passes each array's *target* sharding (built on the current mesh), so a
checkpoint written on 8 devices restores onto 1 (or any other count).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding

from jaxvision.train.sharding import shard_like
from jaxvision.train.workdir import checkpoint_dir

STATE, LOADER = "state", "loader"
_MINIMIZE = ("eval_loss",)


def make_manager(workdir: str | Path, config: ml_collections.ConfigDict | None = None,
                 read_only: bool = False) -> ocp.CheckpointManager:
    """An orbax manager over ``<workdir>/checkpoints`` with the retention of
    ``config.checkpoint`` (``read_only`` for eval/predict: nothing is written or deleted)."""
    ck = config.checkpoint if config is not None else None
    policies: list[Any] = []
    if ck is not None:
        policies.append(ocp.checkpoint_managers.LatestN(n=ck.keep))
        if ck.keep_best > 0:
            metric = ck.best_metric
            policies.append(ocp.checkpoint_managers.BestN(
                get_metric_fn=lambda m: m[metric], reverse=metric in _MINIMIZE,
                n=ck.keep_best, keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        create=not read_only, read_only=read_only,
        enable_async_checkpointing=bool(ck.async_save) if ck is not None else False,
        preservation_policy=(ocp.checkpoint_managers.AnyPreservationPolicy(policies)
                             if policies else None),
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                                 item_names=(STATE, LOADER))


def save(manager: ocp.CheckpointManager, state: Any, loader_state: dict[str, Any],
         metrics: dict[str, float] | None = None) -> None:
    """Saves ``state`` at step ``state.step`` (async if the manager is); call on every
    process. ``metrics`` (scalars) rank the checkpoint for ``keep_best``."""
    step = int(jax.device_get(state.step))
    if step in manager.all_steps():
        return
    manager.save(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state),
        LOADER: ocp.args.JsonSave(loader_state)}),
        metrics={k: float(v) for k, v in metrics.items()} if metrics else None, force=True)


def restore(manager: ocp.CheckpointManager, template: Any, sharding: NamedSharding,
            step: int | None = None) -> tuple[Any, dict[str, Any]] | None:
    """Restores ``(state, loader_state)`` from ``step`` (default: the latest), placing every
    array with ``sharding`` (any mesh); ``template`` is a state of the right structure
    (arrays or ``ShapeDtypeStruct``). Returns None if there is no checkpoint."""
    step = manager.latest_step() if step is None else step
    if step is None:
        return None
    if step not in manager.all_steps():
        raise FileNotFoundError(f"no checkpoint for step {step} in {manager.directory}; "
                                f"available steps: {list(manager.all_steps())}")
    restored = manager.restore(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardRestore(shard_like(template, sharding)),
        LOADER: ocp.args.JsonRestore()}))
    return restored[STATE], dict(restored[LOADER])


def restore_params(workdir: str | Path, template: Any, sharding: NamedSharding,
                   step: int | None = None) -> tuple[Any, int]:
    """``(state, step)`` from ``workdir`` for evaluation or prediction (read-only).

    Raises FileNotFoundError naming the directory when it holds no checkpoint.
    """
    manager = make_manager(workdir, read_only=True)
    try:
        found = restore(manager, template, sharding, step)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)}; train first "
                                    f"(jaxvision train --workdir {workdir})")
        return found[0], int(jax.device_get(found[0].step))
    finally:
        manager.close()


class PreemptionFlag:
    """Turns SIGTERM (what schedulers send before preempting) into a flag the train loop
    polls between steps, so it can save and exit cleanly instead of dying mid-step.

    In a multi-process job every process must stop at the same step: there the flag is
    the JAX coordination service's preemption sync point (it catches SIGTERM itself).
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> PreemptionFlag:
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        self._event.set()

    def reached(self, step: int) -> bool:
        """True once a SIGTERM arrived (all processes agree on the step)."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            try:
                return bool(multihost_utils.reached_preemption_sync_point(step))
            except RuntimeError:  # preemption service not enabled in this job
                return False
        return self._event.is_set()
