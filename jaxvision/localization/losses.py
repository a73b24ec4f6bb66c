"""Regression losses for localization (and the box heads of detectors)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxvision.ops.losses import smooth_l1


def l2_loss(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean over examples of the squared error summed over coordinates.

    Args:
      pred, target: ``[N, D]``; mask: optional ``[N]`` weights (0 drops an example).
    Returns:
      ``[] float32``.
    """
    per = jnp.sum(jnp.square(pred - target), axis=-1)
    return _mean(per, mask)


def smooth_l1_loss(pred: jax.Array, target: jax.Array, beta: float = 1.0,
                   mask: jax.Array | None = None) -> jax.Array:
    """``torch.nn.functional.smooth_l1_loss`` summed over coordinates, mean over examples.

    ``0.5 * d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 * beta``; ``beta = 0`` is L1
    (torchvision's detection heads use beta 1/9 for the RPN and the box head; the Fast R-CNN
    paper beta 1).
    """
    return _mean(jnp.sum(smooth_l1(pred, target, beta), axis=-1), mask)


def _mean(per: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.mean(per)
    mask = mask.astype(per.dtype)
    return jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def class_boxes(boxes: jax.Array, labels: jax.Array) -> jax.Array:
    """Picks each example's box for ``labels`` from per-class boxes.

    Args:
      boxes: ``[N, K, D]``; labels: ``[N] int``.
    Returns:
      ``[N, D]``.
    """
    return jnp.take_along_axis(boxes, labels[:, None, None].astype(jnp.int32), axis=1)[:, 0]
