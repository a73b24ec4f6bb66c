"""The jitted steps: on-device preprocessing, ``train_step``, ``eval_step``, ``predict_step``.

Steps are pure functions of ``(state, batch)``; :func:`jit_train_step` and friends wrap
them in ``jax.jit`` with explicit shardings (batch split over the ``'data'`` axis, state
replicated) and donate the state's buffers. Randomness is derived from the state:
step ``s`` uses ``fold_in(state.rng, s)`` for augmentation and dropout, so a run resumed
from a checkpoint repeats an uninterrupted run bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from jaxvision.data import VALID, augment
from jaxvision.train import losses
from jaxvision.train.sharding import batch_sharding, replicated
from jaxvision.train.state import TrainState

Batch = dict[str, jax.Array]


def _normalize(config: ml_collections.ConfigDict, images: jax.Array) -> jax.Array:
    mean = jnp.asarray(config.data.mean, jnp.float32)
    std = jnp.asarray(config.data.std, jnp.float32)
    return augment.normalize(images, mean, std)


def preprocess_train(config: ml_collections.ConfigDict, key: jax.Array,
                     images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Training augmentation of ``config.augment`` on device.

    Args:
      key: the step's key; each augmentation draws per-example randomness from it.
      images: [B, H, W, C] uint8.
      size: ``(h, w)`` of the network input.
    Returns:
      [B, h, w, C] float32, normalized with ``data.mean``/``data.std``.
    """
    aug = config.augment
    k_crop, k_flip, k_color = jax.random.split(key, 3)
    x = images
    if aug.random_resized_crop:
        x = augment.random_resized_crop(k_crop, x, size)
    elif aug.crop_padding > 0 or x.shape[1:3] != tuple(size):
        x = augment.random_crop(k_crop, x, size, aug.crop_padding)
    if aug.flip:
        x = augment.random_flip(k_flip, x)
    if aug.pca_noise > 0:
        # Before normalization: the PCA eigenvalues are of raw RGB pixels (AlexNet, and
        # fb.resnet.torch's Lighting before ColorNormalize).
        x = augment.pca_color_noise(k_color, x, aug.pca_noise)
    return _normalize(config, x)


def preprocess_eval(config: ml_collections.ConfigDict, images: jax.Array,
                    size: tuple[int, int]) -> jax.Array:
    """[B, H, W, C] uint8 -> [B, h, w, C] float32: center crop to ``size`` (if smaller),
    normalize."""
    x = images
    if x.shape[1:3] != tuple(size):
        x = augment.center_crop(x, size)
    return _normalize(config, x)


def _variables(state: TrainState, params: Any) -> dict[str, Any]:
    variables = {"params": params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: Callable,
               config: ml_collections.ConfigDict, size: tuple[int, int], state: TrainState,
               batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on ``batch`` (``image`` [B, H, W, C] uint8, ``label`` [B] int32,
    ``_valid`` [B] bool; padding rows do not count). Returns the new state and scalar
    metrics ``loss``, ``top1``, ``lr`` (of this step, before the update)."""
    step_key = jax.random.fold_in(state.rng, state.step)
    aug_key, dropout_key = jax.random.split(step_key)
    images = preprocess_train(config, aug_key, batch["image"], size)
    labels, mask = batch["label"], batch[VALID]

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
        logits, updates = model.apply(_variables(state, params), images, train=True,
                                      mutable=["batch_stats"], rngs={"dropout": dropout_key})
        per_example = losses.cross_entropy(logits, labels, config.label_smoothing)
        return losses.masked_mean(per_example, mask), (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, param_updates),
        batch_stats=updates.get("batch_stats", state.batch_stats), opt_state=opt_state)
    metrics = {"loss": loss,
               "top1": losses.masked_mean(losses.topk_correct(logits, labels, 1), mask),
               "lr": schedule(state.step)}
    return new_state, metrics


def _eval_log_probs(model: nn.Module, config: ml_collections.ConfigDict,
                    size: tuple[int, int], state: TrainState, images: jax.Array) -> jax.Array:
    """[B, K] float32 log-probabilities of ``images`` [B, H, W, C] uint8: one center crop,
    or with ``augment.eval_ten_crop`` the log of the softmax averaged over AlexNet's 10
    crops."""
    variables = _variables(state, state.params)
    if config.augment.eval_ten_crop:
        def probs(crops: jax.Array) -> jax.Array:
            logits = model.apply(variables, _normalize(config, crops), train=False)
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

        return jnp.log(augment.ten_crop_average(probs, images, size))
    logits = model.apply(variables, preprocess_eval(config, images, size), train=False)
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


def eval_step(model: nn.Module, config: ml_collections.ConfigDict, size: tuple[int, int],
              state: TrainState, batch: Batch) -> dict[str, jax.Array]:
    """Sums over the unmasked examples of ``batch``: ``loss``, ``top1``, ``top5``,
    ``count`` (float32 scalars; divide by ``count`` after summing all batches)."""
    log_probs = _eval_log_probs(model, config, size, state, batch["image"])
    mask = batch[VALID].astype(jnp.float32)
    labels = batch["label"]
    # log_softmax is shift-invariant, so cross_entropy of log-probabilities is -log p[label].
    return {"loss": jnp.sum(losses.cross_entropy(log_probs, labels) * mask),
            "top1": jnp.sum(losses.topk_correct(log_probs, labels, 1) * mask),
            "top5": jnp.sum(losses.topk_correct(log_probs, labels, 5) * mask),
            "count": jnp.sum(mask)}


def predict_step(model: nn.Module, config: ml_collections.ConfigDict, size: tuple[int, int],
                 state: TrainState, images: jax.Array) -> jax.Array:
    """Softmax probabilities [B, K] float32 for ``images`` [B, H, W, C] uint8 (10-crop
    averaged with ``augment.eval_ten_crop``)."""
    return jnp.exp(_eval_log_probs(model, config, size, state, images))


def jit_train_step(mesh: Mesh, model: nn.Module, tx: optax.GradientTransformation,
                   schedule: Callable, config: ml_collections.ConfigDict,
                   size: tuple[int, int]) -> Callable[[TrainState, Batch],
                                                      tuple[TrainState, dict]]:
    """``train_step`` jitted over ``mesh``: batch sharded on ``'data'``, state replicated
    and donated (its buffers are reused for the new state)."""
    rep, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(functools.partial(train_step, model, tx, schedule, config, size),
                   in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0)


def jit_eval_step(mesh: Mesh, model: nn.Module, config: ml_collections.ConfigDict,
                  size: tuple[int, int]) -> Callable[[TrainState, Batch], dict]:
    """``eval_step`` jitted over ``mesh`` (batch sharded, sums replicated)."""
    rep, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(functools.partial(eval_step, model, config, size),
                   in_shardings=(rep, data), out_shardings=rep)
