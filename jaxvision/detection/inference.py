"""Detection on a list of images of any sizes, as torchvision's detectors take them.

:func:`detect` is ``GeneralizedRCNN.forward`` in evaluation mode: each image is normalized
and resized as ``GeneralizedRCNNTransform`` does (shorter side to ``min_size``, longer side
at most ``max_size``; :func:`~jaxvision.data.dense_augment.resized_size` and
:func:`~jaxvision.data.dense_augment.resize_bilinear`, exact to torch's ``interpolate``),
the batch is padded at the bottom and right with zeros to its largest size rounded up to a
multiple of 32 (torchvision's ``batch_images``), one jitted forward pass runs (one compile
per canvas size and batch size), and each image's valid detections are mapped back to its
own pixels (:func:`~jaxvision.data.dense_augment.postprocess_boxes`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jaxvision.data.dense_augment import (
    pad_to_canvas,
    postprocess_boxes,
    resize_bilinear,
    resized_size,
)
from jaxvision.detection.roi_heads import postprocess_detections
from jaxvision.detection.rpn import RPNOutput, filter_proposals

__all__ = ["detect", "forward", "preprocess"]


def _check_image(image: Any, i: int) -> np.ndarray:
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 2:  # grayscale: the three channels torchvision's normalization needs
        x = np.repeat(x[..., None], 3, axis=-1)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"detect: images[{i}] must be [H, W, 3] (or grayscale [H, W]) float "
                         f"in [0, 1], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"detect: images[{i}] must be float in [0, 1] (divide uint8 pixels by "
                         f"255), got dtype {x.dtype}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"detect: images[{i}] is empty, shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"detect: images[{i}] has NaN or infinite pixels")
    return x.astype(np.float32)


def preprocess(images: Sequence[Any], min_size: int, max_size: int,
               mean: Sequence[float], std: Sequence[float], size_divisible: int = 32,
               canvas: Sequence[int] | None = None
               ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """torchvision's ``GeneralizedRCNNTransform`` (evaluation) on host arrays.

    Args:
      images: ``N`` arrays ``[H_i, W_i, 3]`` float in [0, 1].
      min_size, max_size: the resize (shorter side, cap on the longer side).
      mean, std: per-channel normalization, applied before resizing as torchvision does.
      size_divisible: the canvas is rounded up to a multiple of this.
      canvas: a fixed (Hc, Wc) instead of the batch's own (fewer compiles; then features
        near the right and bottom borders can differ slightly from torchvision's).

    Returns:
      ``(batch [N, Hc, Wc, 3] float32, image_sizes [N, 2] int32, orig_sizes)``.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    if len(images) == 0:
        raise ValueError("detect: images is empty; give a list of [H, W, 3] arrays")
    m = np.asarray(mean, np.float32)
    s = np.asarray(std, np.float32)
    resized, sizes, origs = [], [], []
    for i, image in enumerate(images):
        x = _check_image(image, i)
        origs.append((x.shape[0], x.shape[1]))
        size = resized_size(x.shape[:2], min_size, max_size)
        resized.append(resize_bilinear((x - m) / s, size))
        sizes.append(size)
    if canvas is None:
        d = int(size_divisible)
        canvas = tuple(int(math.ceil(max(sz[a] for sz in sizes) / d) * d) for a in (0, 1))
    batch = np.stack([pad_to_canvas(x, canvas, 0) for x in resized]).astype(np.float32)
    return batch, np.asarray(sizes, np.int32), origs


@functools.partial(jax.jit, static_argnums=0)
def _rpn_predict(model: nn.Module, variables: Any, images: jax.Array) -> tuple:
    feats, out = model.apply(variables, images, method="rpn_predict")
    return feats, out[:4]  # the anchors per level are static ints, recomputed outside


@functools.partial(jax.jit, static_argnums=0)
def _box_outputs(model: nn.Module, variables: Any, features: dict[str, jax.Array],
                 proposals: jax.Array) -> tuple[jax.Array, jax.Array]:
    return model.apply(variables, features, proposals, method="box_outputs")


_filter = jax.jit(filter_proposals, static_argnums=3, static_argnames=(
    "pre_nms_top_n", "post_nms_top_n", "nms_thresh", "score_thresh", "min_size"))
_postprocess = jax.jit(postprocess_detections, static_argnames=(
    "score_thresh", "nms_thresh", "detections_per_img", "bbox_reg_weights", "min_size"))


def forward(model: nn.Module, variables: Any, images: jax.Array,
            image_sizes: jax.Array) -> dict[str, Any]:
    """The evaluation forward pass of ``model.stages`` on a preprocessed batch.

    Four jitted programs (backbone + RPN head, proposal filtering, box head,
    post-processing), so that the two model-independent ones, nms included, compile once
    per canvas and settings for every detector; the arrays stay on the device between them.

    Returns:
      ``{"features", "rpn" (RPNOutput), "class_logits", "box_regression", "detections"}`` as
      :meth:`~jaxvision.detection.faster_rcnn.FasterRCNN.stages`, detections in canvas pixels.
    """
    feats, (objectness, deltas, anchors, boxes) = _rpn_predict(model, variables, images)
    rpn = model.rpn
    per_level = tuple(int(f.shape[1] * f.shape[2] * a) for f, a in zip(
        feats.values(), rpn.anchor_generator.num_anchors_per_location(), strict=True))
    props, scores, valid = _filter(boxes, objectness, image_sizes, per_level,
                                   **rpn.filter_settings(False))
    logits, regression = _box_outputs(model, variables, feats, props)
    heads = model.roi_heads
    dets = _postprocess(logits, regression, props, valid, image_sizes,
                        score_thresh=heads.score_thresh, nms_thresh=heads.nms_thresh,
                        detections_per_img=heads.detections_per_img,
                        bbox_reg_weights=tuple(heads.bbox_reg_weights))
    return {"features": feats,
            "rpn": RPNOutput(props, scores, valid, objectness, deltas, anchors),
            "class_logits": logits, "box_regression": regression, "detections": dets}


def detect(model: nn.Module, variables: Any, images: Sequence[Any], *,
           canvas: Sequence[int] | None = None) -> list[dict[str, np.ndarray]]:
    """Detections of ``model`` (a :class:`~jaxvision.detection.faster_rcnn.FasterRCNN`).

    Args:
      model: the detector (its ``min_size``, ``max_size``, ``image_mean``, ``image_std`` and
        ``size_divisible`` set the preprocessing).
      variables: its variables (e.g. from :func:`jaxvision.weights.convert_torchvision`).
      images: a list of ``[H, W, 3]`` float32 arrays in [0, 1], any sizes (grayscale ``[H, W]``
        is repeated to three channels).
      canvas: optional fixed (Hc, Wc) canvas, multiples of 32 (see :func:`preprocess`).

    Returns:
      Per image ``{"boxes": [K, 4] float32 (x1, y1, x2, y2) in that image's pixels,
      "scores": [K] float32, "labels": [K] int64}``, ``K`` its number of detections, in
      decreasing score order (torchvision's output).
    """
    batch, sizes, origs = preprocess(images, model.min_size, model.max_size, model.image_mean,
                                     model.image_std, model.size_divisible, canvas)
    out = jax.device_get(forward(model, variables, batch, sizes)["detections"])
    results = []
    for i, orig in enumerate(origs):
        k = int(out["count"][i])
        boxes = postprocess_boxes(np.asarray(out["boxes"][i, :k]), tuple(sizes[i]), orig)
        results.append({"boxes": boxes,
                        "scores": np.asarray(out["scores"][i, :k], np.float32),
                        "labels": np.asarray(out["labels"][i, :k], np.int64)})
    return results
