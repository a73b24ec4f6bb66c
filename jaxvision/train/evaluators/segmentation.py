"""Semantic segmentation scores from a confusion matrix counted inside the jitted eval step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxvision.segmentation.metrics import confusion_matrix, segmentation_metrics
from jaxvision.train.evaluators.base import Batch, Evaluator


class SegmentationConfusion(Evaluator):
    """``eval_pixel_acc`` (global pixel accuracy), ``eval_class_acc`` (mean per-class
    accuracy), ``eval_miou``, per-class ``eval_iou/<class>`` and ``eval_acc/<class>``
    (:func:`jaxvision.segmentation.segmentation_metrics`; classes absent from both
    prediction and truth are NaN and left out of the means) and ``eval_pixels`` (pixels
    counted).

    Reads ``preds["label"]`` ([B, H, W] int32 class ids) and ``batch["mask"]`` ([B, H, W]
    uint8; ``ignore_index`` pixels and padding rows do not count). Each batch gives one
    ``[C, C]`` count, computed on device (over a mesh, jit's sharding sums it); the counts
    are added on device and fetched once, after the pass.
    """

    fields = ("mask",)

    def __init__(self, num_classes: int, ignore_index: int | None = 255,
                 class_names: Sequence[str] | None = None) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(f"SegmentationConfusion: {len(class_names)} class names for "
                             f"num_classes={num_classes}")
        self.class_names = None if class_names is None else [str(n) for n in class_names]

    def batch_fn(self, preds: dict[str, jax.Array], batch: Batch,
                 valid: jax.Array) -> jax.Array:
        return confusion_matrix(preds["label"], batch["mask"], self.num_classes,
                                self.ignore_index, valid)

    def reset(self) -> None:
        self._total: Any = None

    def update(self, out: jax.Array) -> None:
        total = getattr(self, "_total", None)
        self._total = out if total is None else jnp.add(total, out)

    def result(self) -> dict[str, float]:
        if getattr(self, "_total", None) is None:
            raise ValueError("SegmentationConfusion: no batches were evaluated (empty "
                             "evaluation loader)")
        counts = jax.device_get(self._total)
        out = segmentation_metrics(counts, self.class_names)
        out["eval_pixels"] = float(counts.sum())
        return out
