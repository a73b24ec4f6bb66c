"""The ILSVRC localization metric and PCK, for single-object localization."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxvision.localization.metrics import localization_correct, paired_iou, pck_correct
from jaxvision.train.evaluators.base import Batch, SumEvaluator


def first_box(boxes: jax.Array) -> jax.Array:
    """``[B, 4]`` or ``[B, K, 4]`` (the dense contract's padded boxes) -> ``[B, 4]``: the
    object of a single-object scene is its first box."""
    return boxes[:, 0] if boxes.ndim == 3 else boxes


class BoxLocalization(SumEvaluator):
    """``eval_localization`` (ILSVRC top-1: class right and IoU >= ``iou_threshold``) and
    ``eval_mean_iou``.

    Reads ``preds["label"]`` ([B] int, top-1 class), ``preds["boxes"]`` ([B, 4] float32,
    (x1, y1, x2, y2) pixels), ``batch["label"]`` and ``batch["boxes"]`` ([B, 4] or
    [B, K, 4], first box).
    """

    fields = ("label", "boxes")

    def __init__(self, iou_threshold: float = 0.5) -> None:
        self.iou_threshold = iou_threshold

    def batch_fn(self, preds: dict[str, jax.Array], batch: Batch,
                 valid: jax.Array) -> dict[str, jax.Array]:
        gt = first_box(batch["boxes"]).astype(jnp.float32)
        ok = localization_correct(preds["label"], preds["boxes"], batch["label"], gt,
                                  self.iou_threshold)
        return {"correct": jnp.sum(ok * valid), "iou": jnp.sum(paired_iou(preds["boxes"], gt)
                                                               * valid),
                "count": jnp.sum(valid)}

    def finalize(self, t: dict[str, float]) -> dict[str, float]:
        n = t["count"]
        return {"eval_localization": t["correct"] / n, "eval_mean_iou": t["iou"] / n}


class KeypointPCK(SumEvaluator):
    """``eval_pck``: the fraction of keypoints within ``alpha`` x the object's frame width.

    Reads ``preds["keypoints"]`` and ``batch["keypoints"]`` ([B, K, 2] pixels, (x, y)) and
    ``batch["boxes"]`` (the frame: x2 - x1 of the first box).
    """

    fields = ("keypoints", "boxes")

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha

    def batch_fn(self, preds: dict[str, jax.Array], batch: Batch,
                 valid: jax.Array) -> dict[str, jax.Array]:
        frame = first_box(batch["boxes"]).astype(jnp.float32)
        scale = frame[:, 2] - frame[:, 0]
        ok = pck_correct(preds["keypoints"], batch["keypoints"].astype(jnp.float32), scale,
                         self.alpha)
        return {"correct": jnp.sum(ok * valid[:, None]),
                "count": jnp.sum(valid) * ok.shape[1]}

    def finalize(self, t: dict[str, float]) -> dict[str, float]:
        return {"eval_pck": t["correct"] / t["count"]}
