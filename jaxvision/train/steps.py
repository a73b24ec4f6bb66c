"""The jitted steps, task-generic: ``train_step``, ``eval_step``, ``predict_step``.

Steps are pure functions of ``(state, batch)``; the task (:mod:`jaxvision.train.tasks`)
supplies the loss, the predictions and the evaluators, the steps supply the rest.
:func:`jit_train_step` and friends wrap them in ``jax.jit`` with explicit shardings (batch
split over the ``'data'`` axis, state replicated) and donate the state's buffers. Randomness
is derived from the state: step ``s`` uses ``fold_in(state.rng, s)`` for augmentation and
dropout, so a run resumed from a checkpoint repeats an uninterrupted run bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from jaxvision.data import VALID
from jaxvision.train.evaluators.base import Evaluator
from jaxvision.train.preprocess import preprocess_eval, preprocess_train
from jaxvision.train.sharding import batch_sharding, replicated
from jaxvision.train.state import TrainState
from jaxvision.train.tasks import Task

Batch = dict[str, jax.Array]

__all__ = ["eval_step", "jit_eval_step", "jit_predict_step", "jit_sample_step",
           "jit_train_step", "predict_step", "preprocess_eval", "preprocess_train",
           "train_step"]


def _variables(state: TrainState, params: Any) -> dict[str, Any]:
    variables = {"params": params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def train_step(task: Task, model: nn.Module, tx: optax.GradientTransformation,
               schedule: Callable, config: ml_collections.ConfigDict, size: tuple[int, int],
               state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on ``batch`` (the task's fields, ``[B, ...]``, and ``_valid``
    [B] bool; padding rows do not count). Returns the new state and scalar metrics:
    ``loss``, the task's own (classification: ``top1``) and ``lr`` (of this step, before the
    update)."""
    step_key = jax.random.fold_in(state.rng, state.step)
    aug_key, dropout_key = jax.random.split(step_key)

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[dict, Any]]:
        return task.loss(model, config, size, _variables(state, params), batch, aug_key,
                         dropout_key)

    (loss, (metrics, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, param_updates),
        batch_stats=updates.get("batch_stats", state.batch_stats), opt_state=opt_state)
    return new_state, {"loss": loss, **metrics, "lr": schedule(state.step)}


def eval_step(task: Task, evaluators: Sequence[Evaluator], model: nn.Module,
              config: ml_collections.ConfigDict, size: tuple[int, int], state: TrainState,
              batch: Batch) -> list[Any]:
    """The task's predictions on ``batch`` scored by each evaluator: one output per
    evaluator (classification: sums of ``loss``, ``top1``, ``top5``, ``count`` over the
    ``_valid`` rows)."""
    preds = task.predict(model, config, size, _variables(state, state.params), batch)
    valid = batch[VALID].astype(jnp.float32)
    return [ev.batch_fn(preds, batch, valid) for ev in evaluators]


def predict_step(task: Task, model: nn.Module, config: ml_collections.ConfigDict,
                 size: tuple[int, int], state: TrainState,
                 batch: Batch) -> dict[str, jax.Array]:
    """The task's predictions for ``batch`` (``image`` [B, H, W, C] uint8, ...)
    (classification: ``log_probs`` [B, K] float32, 10-crop averaged with
    ``augment.eval_ten_crop``)."""
    return task.predict(model, config, size, _variables(state, state.params), batch)


def jit_train_step(mesh: Mesh, task: Task, model: nn.Module,
                   tx: optax.GradientTransformation, schedule: Callable,
                   config: ml_collections.ConfigDict,
                   size: tuple[int, int]) -> Callable[[TrainState, Batch],
                                                      tuple[TrainState, dict]]:
    """``train_step`` jitted over ``mesh``: batch sharded on ``'data'``, state replicated
    and donated (its buffers are reused for the new state)."""
    rep, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(functools.partial(train_step, task, model, tx, schedule, config, size),
                   in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0)


def jit_eval_step(mesh: Mesh, task: Task, evaluators: Sequence[Evaluator], model: nn.Module,
                  config: ml_collections.ConfigDict,
                  size: tuple[int, int]) -> Callable[[TrainState, Batch], list]:
    """``eval_step`` jitted over ``mesh`` (batch sharded, outputs replicated)."""
    rep, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(functools.partial(eval_step, task, tuple(evaluators), model, config, size),
                   in_shardings=(rep, data), out_shardings=rep)


def jit_predict_step(task: Task, model: nn.Module, config: ml_collections.ConfigDict,
                     size: tuple[int, int]) -> Callable[[TrainState, Batch], dict]:
    """``predict_step`` jitted (one device: prediction of a few files)."""
    return jax.jit(functools.partial(predict_step, task, model, config, size))


def jit_sample_step(mesh: Mesh, task: Task, model: nn.Module,
                    config: ml_collections.ConfigDict, size: tuple[int, int],
                    n: int) -> Callable[[TrainState, Batch], tuple[Batch, dict]]:
    """``(rows, predict_step(rows))`` of the first ``n`` rows of a global batch, jitted over
    ``mesh`` with replicated outputs, so that process 0 can read them (a task's
    :meth:`~jaxvision.train.tasks.Task.images`)."""
    rep, data = replicated(mesh), batch_sharding(mesh)

    def sample(state: TrainState, batch: Batch) -> tuple[Batch, dict[str, jax.Array]]:
        rows = {k: v[:n] for k, v in batch.items()}
        return rows, predict_step(task, model, config, size, state, rows)

    return jax.jit(sample, in_shardings=(rep, data), out_shardings=rep)
