"""The ILSVRC localization metric and a keypoint metric."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxvision.ops.boxes import box_iou


def paired_iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """IoU of matching rows: ``a, b: [N, 4]`` (x1, y1, x2, y2), any real dtype -> ``[N] float32``.

    Integer boxes (pixel coordinates) are accepted: they are cast to float32 first, since
    :func:`jaxvision.ops.box_iou` (rightly) refuses integer division.
    """
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    return jax.vmap(lambda p, q: box_iou(p[None], q[None])[0, 0])(a, b)


def localization_correct(pred_labels: jax.Array, pred_boxes: jax.Array,
                         gt_labels: jax.Array, gt_boxes: jax.Array,
                         iou_threshold: float = 0.5) -> jax.Array:
    """ILSVRC localization: right iff some guess has the right class and IoU >= 0.5.

    Args:
      pred_labels: ``[N, k] int`` (top-k guesses; ``k = 1`` or 5 in ILSVRC).
      pred_boxes: ``[N, k, 4]`` (x1, y1, x2, y2), one box per guess; ``[N]`` / ``[N, 4]``
        for a single guess.
      gt_labels: ``[N] int``; gt_boxes: ``[N, 4]`` in the same units as ``pred_boxes``.
    Returns:
      ``[N] bool``.
    """
    if pred_labels.ndim == 1:
        pred_labels, pred_boxes = pred_labels[:, None], pred_boxes[:, None]
    k = pred_labels.shape[1]
    ious = paired_iou(pred_boxes.reshape(-1, 4), jnp.repeat(gt_boxes, k, axis=0)).reshape(-1, k)
    return jnp.any((pred_labels == gt_labels[:, None]) & (ious >= iou_threshold), axis=1)


def pck_correct(pred: jax.Array, target: jax.Array, scale: jax.Array,
                alpha: float = 0.1) -> jax.Array:
    """Per keypoint: distance <= ``alpha * scale``.

    Args:
      pred, target: ``[N, K, 2]``; scale: ``[N]`` (e.g. the object box size).
    Returns:
      ``[N, K] float32``, 1 where the keypoint is correct.
    """
    dist = jnp.linalg.norm(pred - target, axis=-1)
    return (dist <= alpha * scale[:, None]).astype(jnp.float32)


def pck(pred: jax.Array, target: jax.Array, scale: jax.Array, alpha: float = 0.1) -> jax.Array:
    """Percentage of correct keypoints (:func:`pck_correct` averaged).

    Returns:
      ``[] float32``, the fraction of correct keypoints.
    """
    return jnp.mean(pck_correct(pred, target, scale, alpha))
