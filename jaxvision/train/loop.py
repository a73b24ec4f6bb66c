"""``train_and_evaluate(config, workdir)``: the training loop, as in Flax's examples/imagenet.

A run writes into ``workdir``: ``config.json`` (the resolved config), ``classes.json``
(class names, when the data knows them), ``metrics.jsonl`` and ``tensorboard/`` (metrics),
and ``checkpoints/`` (orbax). Starting again with the same ``workdir`` resumes from the
latest checkpoint, model, optimizer and data position included, and ends bit-for-bit where
an uninterrupted run would.

Preemption: SIGTERM makes the loop save a checkpoint after the current step and return
``{"preempted": True, ...}``. A non-finite loss raises :class:`NonFiniteLossError` naming
the step; losses are checked before every save, so the last checkpoint is always good.
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxvision.train import checkpoint, input_pipeline, sharding
from jaxvision.train.config import to_json, validate
from jaxvision.train.optim import make_optimizer
from jaxvision.train.state import TrainState, build_model, create_train_state, input_shape
from jaxvision.train.steps import jit_eval_step, jit_train_step
from jaxvision.train.writers import MetricWriter


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step."""


def _image_shape(source: Any) -> tuple[int, int, int]:
    shape = getattr(source, "image_shape", None)
    return tuple(shape) if shape is not None else tuple(np.shape(source[0]["image"]))


def evaluate(eval_fn: Any, state: TrainState, loader: Any,
             data_sharding: jax.sharding.NamedSharding) -> dict[str, float]:
    """One pass over ``loader`` (padded final batch, masked): mean ``eval_loss``,
    ``eval_top1``, ``eval_top5`` and ``eval_count``, the number of examples seen."""
    totals: dict[str, jax.Array] | None = None
    for local in loader:
        sums = eval_fn(state, sharding.global_batch(local, data_sharding))
        totals = sums if totals is None else jax.tree_util.tree_map(jnp.add, totals, sums)
    assert totals is not None, "empty evaluation loader"
    t = {k: float(v) for k, v in jax.device_get(totals).items()}
    n = t["count"]
    return {"eval_loss": t["loss"] / n, "eval_top1": t["top1"] / n, "eval_top5": t["top5"] / n,
            "eval_count": n}


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint) and evaluates.

    Returns ``{"step", "eval_loss", "eval_top1", "eval_top5", "eval_count",
    "train_seconds", "preempted", "skipped_files"}`` (``skipped_files``: paths of the
    undecodable images skipped with ``data.on_error='skip'``); the final test accuracy is
    also printed.
    """
    config = validate(config)
    workdir = Path(workdir).absolute()
    is_main = jax.process_index() == 0
    mesh = sharding.make_mesh()
    rep, data_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    local_batch = sharding.check_batch_size(config.batch_size, mesh)
    local_eval_batch = sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")

    train_source = input_pipeline.make_source(config, config.data.train_split)
    eval_source = input_pipeline.make_source(config, config.data.eval_split)
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
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(to_json(config))
        names = input_pipeline.class_names(train_source)
        if names is not None:
            (workdir / "classes.json").write_text(json.dumps(names))
    manager = checkpoint.make_manager(workdir, config)
    restored = checkpoint.restore(manager, state, rep)
    if restored is not None:
        state, loader_state = restored
        train_loader.set_state(loader_state)
    start = int(jax.device_get(state.step))

    train_fn = jit_train_step(mesh, model, tx, schedule, config, shape[:2])
    eval_fn = jit_eval_step(mesh, model, config, shape[:2])
    eval_every = config.eval_every_steps or steps_per_epoch
    save_every = config.checkpoint.every_steps or eval_every
    writer = MetricWriter(workdir, config.tensorboard)
    if is_main:
        print(f"jaxvision train: {config.model.name} on {config.data.source} "
              f"({len(train_source)} train / {len(eval_source)} eval examples), "
              f"{total_steps} steps of batch {config.batch_size} on {mesh.devices.size} "
              f"device(s), {jax.process_count()} process(es); workdir {workdir}"
              + (f"; resumed at step {start}" if start else ""), flush=True)

    pending: list[tuple[int, dict]] = []
    eval_metrics: dict[str, float] | None = None
    preempted = False
    t0, t_log, step_log = time.perf_counter(), time.perf_counter(), start
    bar = tqdm(total=total_steps, initial=start, disable=not (is_main and config.progress_bar),
               dynamic_ncols=True, desc="train")
    try:
        with checkpoint.PreemptionFlag() as flag:
            batches = iter(train_loader)
            for done in range(start + 1, total_steps + 1):
                local = next(batches)
                state, metrics = train_fn(state, sharding.global_batch(local, data_sharding))
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
                eval_metrics = evaluate(eval_fn, state, eval_loader, data_sharding) \
                    if is_eval else None
                if eval_metrics is not None:
                    writer.write(done, "eval", eval_metrics)
                    bar.write(f"step {done}: eval loss {eval_metrics['eval_loss']:.4f}, "
                              f"top-1 {eval_metrics['eval_top1']:.4f}") if is_main else None
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
            evaluate(eval_fn, state, eval_loader, data_sharding)
        result.update(final)
        writer = MetricWriter(workdir, tensorboard=False)
        writer.write(step, "final", {**final, "train_seconds": result["train_seconds"]})
        if is_main:
            print(f"final: step {step}, {config.data.eval_split} accuracy "
                  f"{final['eval_top1']:.4f} (error {100 * (1 - final['eval_top1']):.2f}%), "
                  f"top-5 {final['eval_top5']:.4f}, loss {final['eval_loss']:.4f} on "
                  f"{int(final['eval_count'])} examples", flush=True)
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
    """The config a run saved in ``workdir/config.json``."""
    from jaxvision.train.config import from_json

    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {workdir} is not a jaxvision training "
                                "workdir (give --config, or train first)")
    return from_json(path.read_text())


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str | Path,
                        step: int | None = None) -> dict[str, float]:
    """Restores ``workdir``'s checkpoint (latest, or ``step``) and evaluates it on
    ``config.data.eval_split``; returns :func:`evaluate`'s metrics plus ``step``."""
    config = validate(config)
    mesh = sharding.make_mesh()
    rep, data_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    local_eval_batch = sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
    source = input_pipeline.make_source(config, config.data.eval_split)
    model, shapes, shape = abstract_state(config, _image_shape(source))
    state, restored_step = checkpoint.restore_params(workdir, shapes, rep, step)
    loader = input_pipeline.eval_loader(config, source, local_eval_batch)
    metrics = evaluate(jit_eval_step(mesh, model, config, shape[:2]), state, loader,
                       data_sharding)
    return {"step": restored_step, **metrics}
