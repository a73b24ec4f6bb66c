"""``train_and_evaluate(config, workdir)``: the training loop, as in Flax's examples/imagenet.

The loop is task-generic: ``config.task.name`` picks a :class:`~jaxvision.train.tasks.Task`
(its batch fields, loss, predictions and evaluators); everything here serves every task.
A run writes into ``workdir`` (layout: :mod:`jaxvision.train.workdir`): the resolved config,
class names, the input shape, metrics (JSON lines, TensorBoard) and orbax checkpoints.
Starting again with the same ``workdir`` resumes from the
latest checkpoint, model, optimizer and data position included, and ends bit-for-bit where
an uninterrupted run would.

Preemption: SIGTERM makes the loop save a checkpoint after the current step and return
``{"preempted": True, ...}``. A non-finite loss raises :class:`NonFiniteLossError` naming
the step; losses are checked before every save, so the last checkpoint is always good.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxvision.data import VALID
from jaxvision.train import checkpoint, input_pipeline, pretrained, sharding
from jaxvision.train import workdir as wd
from jaxvision.train.config import ensure_valid
from jaxvision.train.evaluators.base import Evaluator, run_evaluators
from jaxvision.train.optim import make_optimizer
from jaxvision.train.state import TrainState, build_model, create_train_state, input_shape
from jaxvision.train.steps import jit_eval_step, jit_sample_step, jit_train_step
from jaxvision.train.tasks import Task, get_task
from jaxvision.train.writers import MetricWriter


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step."""


def _image_shape(source: Any) -> tuple[int, int, int]:
    shape = getattr(source, "image_shape", None)
    return tuple(shape) if shape is not None else tuple(np.shape(source[0]["image"]))


def batch_fields(task: Task, config: ml_collections.ConfigDict,
                 evaluators: list[Evaluator]) -> tuple[str, ...]:
    """The fields a batch carries to the device: the task's and its evaluators'."""
    names = [*task.fields(config), *(f for ev in evaluators for f in ev.fields)]
    return tuple(dict.fromkeys(names))


def check_fields(source: Any, fields: tuple[str, ...], task: str, what: str,
                 added: tuple[str, ...] = ()) -> None:
    """Raises ValueError naming the fields ``task`` needs that ``source``'s examples lack
    (``added``: the fields the loader's transform adds)."""
    if len(source) == 0:
        raise ValueError(f"the {what} source is empty")
    have = set(source[0]) | set(added)
    missing = [f for f in fields if f not in have]
    if missing:
        raise ValueError(f"task {task!r} needs the batch field(s) {missing}; the {what} "
                         f"source gives {sorted(have)}")


def global_batches(loader: Any, fields: tuple[str, ...],
                   data_sharding: jax.sharding.NamedSharding) -> Iterator[dict[str, jax.Array]]:
    """The loader's local batches, cut to ``fields`` and the padding flag, as global arrays."""
    for local in loader:
        yield sharding.global_batch({k: local[k] for k in (*fields, VALID)}, data_sharding)


def evaluate(eval_fn: Any, state: TrainState, loader: Any,
             data_sharding: jax.sharding.NamedSharding, evaluators: list[Evaluator],
             fields: tuple[str, ...], first: list | None = None) -> dict[str, float]:
    """One pass over ``loader`` (padded final batch, masked): the evaluators' metrics
    (classification: ``eval_loss``, ``eval_top1``, ``eval_top5``, ``eval_count``).
    ``first``: a list the first global batch is appended to (for :func:`eval_images`)."""
    batches = global_batches(loader, fields, data_sharding)
    if first is not None:
        batches = _keep_first(batches, first)
    return run_evaluators(eval_fn, state, batches, evaluators)


def _keep_first(batches: Iterator[dict], into: list) -> Iterator[dict]:
    for i, batch in enumerate(batches):
        if i == 0:
            into.append(batch)
        yield batch


def has_images(task: Task) -> bool:
    """True if ``task`` draws pictures of its predictions (overrides ``Task.images``)."""
    return type(task).images is not Task.images


def eval_images(task: Task, config: ml_collections.ConfigDict, sample_fn: Any,
                state: TrainState, batch: dict[str, jax.Array]) -> dict[str, np.ndarray]:
    """The task's pictures (:meth:`Task.images`) of its predictions on the first rows of the
    global ``batch`` (``sample_fn``: :func:`~jaxvision.train.steps.jit_sample_step`)."""
    rows, preds = jax.device_get(sample_fn(state, batch))
    return task.images(config, rows, preds) or {}


def num_train_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """``config.num_train_steps`` if set, else ``ceil(num_epochs * steps_per_epoch)``."""
    if config.num_train_steps is not None:
        return int(config.num_train_steps)
    return max(1, math.ceil(config.num_epochs * steps_per_epoch))


def _check_finite(pending: list[tuple[int, dict]], manager: Any) -> list[dict[str, float]]:
    """Fetches the metrics of steps not yet checked; raises on a non-finite loss."""
    fetched = jax.device_get([m for _, m in pending])
    out = []
    for (step, _), m in zip(pending, fetched, strict=True):
        if not np.isfinite(m["loss"]):
            manager.wait_until_finished()
            last = manager.latest_step()
            kept = (f"the last good checkpoint is step {last} in {manager.directory}"
                    if last is not None else "no checkpoint was saved before it")
            raise NonFiniteLossError(
                f"training loss is {float(m['loss'])} at step {step}; stopped ({kept}). "
                "Lower optimizer.learning_rate or set optimizer.grad_clip_norm.")
        out.append({k: float(v) for k, v in m.items()})
    pending.clear()
    return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, *,
                       train_source: Any = None, eval_source: Any = None) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint) and evaluates.

    ``train_source``/``eval_source``: random-access sources to use instead of the ones
    ``config.data`` describes (in-memory data, e.g. ``ArraySource(images, labels,
    boxes=...)``). Returns ``{"step", "train_seconds", "preempted", "skipped_files"}`` plus
    the task's final evaluation metrics (classification: ``eval_loss``, ``eval_top1``,
    ``eval_top5``, ``eval_count``); ``skipped_files``: paths of the undecodable images
    skipped with ``data.on_error='skip'``. The final metrics are also printed.
    """
    config = ensure_valid(config)
    task = get_task(config)
    task.check_config(config)
    evaluators = task.evaluators(config)
    fields = batch_fields(task, config, evaluators)
    workdir = Path(workdir).absolute()
    is_main = jax.process_index() == 0
    mesh = sharding.make_mesh()
    rep, data_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    local_batch = sharding.check_batch_size(config.batch_size, mesh)
    local_eval_batch = sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")

    data_name = config.data.source if train_source is None else type(train_source).__name__
    if train_source is None:
        train_source = input_pipeline.make_source(config, config.data.train_split)
    if eval_source is None:
        eval_source = input_pipeline.make_source(config, config.data.eval_split)
    added = input_pipeline.transform_fields(config)
    check_fields(train_source, fields, task.name, "training", added)
    check_fields(eval_source, fields, task.name, "evaluation", added)
    train_loader = input_pipeline.train_loader(config, train_source, local_batch)
    eval_loader = input_pipeline.eval_loader(config, eval_source, local_eval_batch)
    steps_per_epoch = len(train_loader)
    total_steps = num_train_steps(config, steps_per_epoch)

    model = build_model(config)
    shape = input_shape(config, model, _image_shape(train_source))
    tx, schedule = make_optimizer(config, total_steps)
    init = jax.jit(functools.partial(create_train_state, model, tx, shape=shape),
                   out_shardings=rep)
    state = init(jax.random.PRNGKey(config.seed))

    if is_main:
        wd.write_config(workdir, config)
        wd.write_input_shape(workdir, shape)
        names = input_pipeline.class_names(train_source)
        if names is not None:
            wd.write_classes(workdir, names)
    manager = checkpoint.make_manager(workdir, config)
    restored = checkpoint.restore(manager, state, rep)
    init_note = ""
    if restored is not None:
        state, loader_state = restored
        train_loader.set_state(loader_state)
    elif config.model.init_from:
        state, init_note = _init_from(config, state, tx, rep)
    start = int(jax.device_get(state.step))

    train_fn = jit_train_step(mesh, task, model, tx, schedule, config, shape[:2])
    eval_fn = jit_eval_step(mesh, task, evaluators, model, config, shape[:2])
    sample_fn = jit_sample_step(mesh, task, model, config, shape[:2], task.num_images) \
        if has_images(task) else None
    eval_every = config.eval_every_steps or steps_per_epoch
    save_every = config.checkpoint.every_steps or eval_every
    writer = MetricWriter(workdir, config.tensorboard)
    if is_main:
        print(f"jaxvision train: {task.name}, {config.model.name} on {data_name} "
              f"({len(train_source)} train / {len(eval_source)} eval examples), "
              f"{total_steps} steps of batch {config.batch_size} on {mesh.devices.size} "
              f"device(s), {jax.process_count()} process(es); workdir {workdir}"
              + (f"; resumed at step {start}" if start else ""), flush=True)
        if init_note:
            print(init_note, flush=True)

    pending: list[tuple[int, dict]] = []
    eval_metrics: dict[str, float] | None = None
    preempted = False
    t0, t_log, step_log = time.perf_counter(), time.perf_counter(), start
    bar = tqdm(total=total_steps, initial=start, disable=not (is_main and config.progress_bar),
               dynamic_ncols=True, desc="train")
    try:
        with checkpoint.PreemptionFlag() as flag:
            batches = global_batches(train_loader, fields, data_sharding)
            for done in range(start + 1, total_steps + 1):
                state, metrics = train_fn(state, next(batches))
                pending.append((done, metrics))
                bar.update(1)
                last = done == total_steps
                is_eval = done % eval_every == 0 or last
                is_save = done % save_every == 0 or is_eval
                stop = flag.reached(done)
                if done % config.log_every_steps == 0 or is_save or stop:
                    checked = _check_finite(pending, manager)
                    now = time.perf_counter()
                    rate = (done - step_log) / max(now - t_log, 1e-9)
                    t_log, step_log = now, done
                    summary = {k: float(np.mean([m[k] for m in checked])) for k in checked[0]}
                    writer.write(done, "train", {**summary, "steps_per_sec": rate})
                    bar.set_postfix(loss=f"{summary['loss']:.4f}", lr=f"{summary['lr']:.3g}")
                first: list = []
                eval_metrics = evaluate(eval_fn, state, eval_loader, data_sharding, evaluators,
                                        fields, first) if is_eval else None
                if eval_metrics is not None:
                    writer.write(done, "eval", eval_metrics)
                    if sample_fn is not None:
                        writer.write_images(done, "eval", eval_images(task, config, sample_fn,
                                                                      state, first[0]))
                    bar.write(f"step {done}: {task.progress(eval_metrics)}") if is_main \
                        else None
                if is_save or stop:
                    checkpoint.save(manager, state, train_loader.get_state(), eval_metrics)
                if stop:
                    preempted = True
                    if is_main:
                        bar.write(f"SIGTERM: saved a checkpoint at step {done}; exiting")
                    break
        manager.wait_until_finished()
    finally:
        bar.close()
        writer.close()
        manager.close()

    step = int(jax.device_get(state.step))
    skipped = input_pipeline.skipped_files(train_source, eval_source)
    result: dict[str, Any] = {"step": step, "preempted": preempted,
                              "train_seconds": time.perf_counter() - t0,
                              "skipped_files": skipped}
    if skipped and is_main:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        print(f"skipped {len(skipped)} undecodable file(s) (data.on_error='skip'): {shown}",
              flush=True)
    if not preempted:
        final = eval_metrics if eval_metrics is not None and step == total_steps else \
            evaluate(eval_fn, state, eval_loader, data_sharding, evaluators, fields)
        result.update(final)
        writer = MetricWriter(workdir, tensorboard=False)
        writer.write(step, "final", {**final, "train_seconds": result["train_seconds"]})
        if is_main:
            print(f"final: step {step}, {task.describe(final, config.data.eval_split)}",
                  flush=True)
    return result


def abstract_state(config: ml_collections.ConfigDict,
                   image_shape: tuple[int, int, int] | None = None) -> tuple[Any, Any, tuple]:
    """``(model, state_shapes, input_shape)`` for ``config`` without allocating parameters:
    the template a checkpoint restore fills in."""
    model = build_model(config)
    shape = input_shape(config, model, image_shape)
    tx, _ = make_optimizer(config, num_train_steps(config, 1))
    shapes = jax.eval_shape(functools.partial(create_train_state, model, tx, shape=shape),
                            jax.random.PRNGKey(0))
    return model, shapes, shape


def load_workdir_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The config a run saved in ``workdir`` (:func:`jaxvision.train.workdir.read_config`)."""
    return wd.read_config(workdir)


def _init_from(config: ml_collections.ConfigDict, state: TrainState,
               tx: Any, rep: jax.sharding.NamedSharding) -> tuple[TrainState, str]:
    """``state`` with its variables from ``config.model.init_from`` and a fresh optimizer
    state; and the log line that says what was loaded."""
    fresh = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    variables, report = pretrained.init_from(config, fresh)
    params = variables["params"]
    state = state.replace(params=params, batch_stats=variables.get("batch_stats", {}),
                          opt_state=tx.init(params))
    return jax.device_put(state, rep), pretrained.summary(config.model.init_from, report)


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str | Path,
                        step: int | None = None, *, eval_source: Any = None
                        ) -> dict[str, float]:
    """Restores ``workdir``'s checkpoint (latest, or ``step``) and evaluates it on
    ``config.data.eval_split`` (or ``eval_source``); returns the task's metrics plus
    ``step``."""
    config = ensure_valid(config)
    task = get_task(config)
    task.check_config(config)
    evaluators = task.evaluators(config)
    fields = batch_fields(task, config, evaluators)
    mesh = sharding.make_mesh()
    rep, data_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    local_eval_batch = sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
    source = eval_source if eval_source is not None else \
        input_pipeline.make_source(config, config.data.eval_split)
    check_fields(source, fields, task.name, "evaluation", input_pipeline.transform_fields(config))
    model, shapes, shape = abstract_state(config, _image_shape(source))
    state, restored_step = checkpoint.restore_params(workdir, shapes, rep, step)
    loader = input_pipeline.eval_loader(config, source, local_eval_batch)
    metrics = evaluate(jit_eval_step(mesh, task, evaluators, model, config, shape[:2]), state,
                       loader, data_sharding, evaluators, fields)
    return {"step": restored_step, **metrics}


def describe(config: ml_collections.ConfigDict, metrics: dict[str, float]) -> str:
    """The task's one-line account of evaluation ``metrics`` (what ``jaxvision eval``
    prints)."""
    return get_task(config).describe(metrics, config.data.eval_split)


__all__ = ["NonFiniteLossError", "Task", "abstract_state", "describe", "evaluate",
           "evaluate_checkpoint", "load_workdir_config", "num_train_steps",
           "train_and_evaluate"]
