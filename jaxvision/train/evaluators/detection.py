"""Detection scores: Pascal VOC AP (both metrics) and COCO AP, from padded detections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.train.evaluators.base import Batch, Evaluator


def to_original_pixels(boxes: jax.Array, image_size: jax.Array,
                       orig_size: jax.Array) -> jax.Array:
    """Boxes ``[B, K, 4]`` of resized images (``image_size`` ``[B, 2]`` (h, w)) in original
    pixels (``orig_size`` ``[B, 2]``), as ``GeneralizedRCNNTransform.postprocess``: each axis
    scaled by original over resized size."""
    ratio = orig_size.astype(jnp.float32) / jnp.maximum(image_size.astype(jnp.float32), 1)
    scale = jnp.stack([ratio[:, 1], ratio[:, 0], ratio[:, 1], ratio[:, 0]], axis=-1)
    return boxes.astype(jnp.float32) * scale[:, None, :]


class DetectionAP(Evaluator):
    """``eval_map50`` (all-point VOC AP at IoU 0.5, mean over classes with ground truth),
    ``eval_map50_voc07`` (11-point), ``eval_ap50/<class>``, ``eval_images`` and, with
    ``coco=True``, ``eval_coco_map`` (pycocotools' AP@[.5:.95]), ``eval_coco_map50`` ... .

    Reads ``preds`` ``{"boxes" [B, D, 4] (original pixels), "scores" [B, D], "labels" [B, D],
    "valid" [B, D]}`` and the batch's ground truth ``boxes`` [B, G, 4] (resized pixels, mapped
    back with ``image_size`` and ``orig_size``), ``labels``, ``box_valid`` and ``difficult``.
    Matching needs every image's boxes, so each batch's arrays are fetched to the host (D and
    G are small) and fed to :class:`~jaxvision.detection.VOCEvaluator` (and
    :class:`~jaxvision.detection.COCOEvaluator`, ground truth built from the same arrays).
    """

    fields = ("boxes", "labels", "box_valid", "difficult", "image_size", "orig_size")

    def __init__(self, class_names: Sequence[str], coco: bool = False) -> None:
        from jaxvision.detection.evaluation import VOCEvaluator

        self.class_names = [str(n) for n in class_names]
        self.voc = VOCEvaluator(self.class_names)
        self.coco = None
        if coco:
            from jaxvision.detection.evaluation import COCOEvaluator

            self.coco = COCOEvaluator(class_names=self.class_names)
        self.last = None

    def batch_fn(self, preds: dict[str, jax.Array], batch: Batch, valid: jax.Array) -> Any:
        gt = to_original_pixels(batch["boxes"], batch["image_size"], batch["orig_size"])
        return {"pred_boxes": preds["boxes"], "pred_scores": preds["scores"],
                "pred_labels": preds["labels"], "pred_valid": preds["valid"],
                "gt_boxes": gt, "gt_labels": batch["labels"], "gt_valid": batch["box_valid"],
                "gt_difficult": batch["difficult"], "example_valid": valid > 0,
                "orig_size": batch["orig_size"]}

    def reset(self) -> None:
        self.voc.reset()
        if self.coco is not None:
            self.coco.reset()
        self._images = 0

    def update(self, out: Any) -> None:
        o = {k: np.asarray(v) for k, v in jax.device_get(out).items()}
        self.voc.add_batch(o["pred_boxes"], o["pred_scores"], o["pred_labels"], o["gt_boxes"],
                           o["gt_labels"], o["gt_difficult"], pred_valid=o["pred_valid"],
                           gt_valid=o["gt_valid"], example_valid=o["example_valid"])
        for i in np.flatnonzero(o["example_valid"]):
            if self.coco is not None:
                self.coco.add(self._images, o["pred_boxes"][i], o["pred_scores"][i],
                              o["pred_labels"][i], pred_valid=o["pred_valid"][i],
                              gt_boxes=o["gt_boxes"][i], gt_labels=o["gt_labels"][i],
                              gt_valid=o["gt_valid"][i],
                              image_size=tuple(int(v) for v in o["orig_size"][i]))
            self._images += 1

    def result(self) -> dict[str, float]:
        if self._images == 0:
            raise ValueError("DetectionAP: no images were evaluated (empty evaluation loader)")
        res = self.voc.compute()
        self.last = res
        out = res.metrics()
        out["eval_images"] = float(self._images)
        if self.coco is not None:
            out.update(self.coco.compute().metrics())
        return out
