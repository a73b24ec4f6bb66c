"""Sliding-window detection with a classifier, the naive way and the convolutional way.

A classifier trained on ``window x window`` crops (with a background class) becomes a
detector by classifying windows at several scales and strides, turning confident windows
into boxes and removing duplicates with NMS. Classifying every crop separately (the
lecture's "very expensive" baseline, :func:`naive_window_scores`) repeats the conv
computation of overlapping windows; the convolutionized classifier
(:func:`jaxvision.models.convolutionize`) computes all windows of a scale in one pass
(:func:`dense_window_scores`). For a conv stack without padding both give identical scores.

Everything is static-shape: a scale's window grid is fixed by the image size, detections
come out as fixed-size padded arrays with a count.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxvision.ops.nms import batched_nms, nms


class Detections(NamedTuple):
    """Fixed-size detections; rows ``>= count`` are padding (boxes 0, scores 0, labels -1).

    boxes: ``[D, 4] float32`` (x1, y1, x2, y2) in input-image pixels; scores: ``[D]``;
    labels: ``[D] int32``; count: ``[] int32``.
    """

    boxes: jax.Array
    scores: jax.Array
    labels: jax.Array
    count: jax.Array


def scaled_size(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """The image size at ``scale`` (rounded to whole pixels)."""
    return (max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale)))


def window_boxes(grid: tuple[int, int], window: int, stride: int,
                 scale: float = 1.0) -> jax.Array:
    """Boxes of a ``grid`` of windows, in original-image pixels.

    Window ``(i, j)`` covers ``[j*stride, j*stride + window) x [i*stride, i*stride + window)`` in
    the image resized by ``scale``; the returned boxes divide by ``scale``.

    Returns:
      ``[gh * gw, 4] float32`` (x1, y1, x2, y2), row-major over the grid.
    """
    gh, gw = grid
    ys, xs = jnp.meshgrid(jnp.arange(gh) * stride, jnp.arange(gw) * stride, indexing="ij")
    x1, y1 = xs.reshape(-1).astype(jnp.float32), ys.reshape(-1).astype(jnp.float32)
    boxes = jnp.stack([x1, y1, x1 + window, y1 + window], axis=-1)
    return boxes / scale


def grid_size(hw: tuple[int, int], window: int, stride: int) -> tuple[int, int]:
    """Number of window positions ``(rows, cols)`` in an image of size ``hw``."""
    if min(hw) < window:
        raise ValueError(f"image {hw[0]}x{hw[1]} is smaller than the {window}x{window} window")
    return ((hw[0] - window) // stride + 1, (hw[1] - window) // stride + 1)


def naive_window_scores(
    classify: Callable[[jax.Array], jax.Array], image: jax.Array, window: int, stride: int,
    batch_size: int = 256,
) -> jax.Array:
    """Classifies every ``window x window`` crop separately: the baseline.

    Args:
      classify: ``[B, window, window, C] -> [B, K]`` logits (e.g. a jitted model apply).
      image: ``[H, W, C] float32``.
    Returns:
      ``[gh, gw, K]`` logits of the window grid.
    """
    gh, gw = grid_size(image.shape[:2], window, stride)
    ys, xs = jnp.meshgrid(jnp.arange(gh) * stride, jnp.arange(gw) * stride, indexing="ij")
    corners = jnp.stack([ys.reshape(-1), xs.reshape(-1)], axis=-1)

    @jax.jit
    def crops(corner_batch: jax.Array) -> jax.Array:
        return jax.vmap(lambda yx: jax.lax.dynamic_slice(
            image, (yx[0], yx[1], 0), (window, window, image.shape[-1])))(corner_batch)

    outs = []
    for i in range(0, corners.shape[0], batch_size):
        batch = corners[i:i + batch_size]
        pad = batch_size - batch.shape[0]  # keep one compiled shape
        batch = jnp.pad(batch, ((0, pad), (0, 0)))
        outs.append(classify(crops(batch))[:batch_size - pad])
    return jnp.concatenate(outs).reshape(gh, gw, -1)


def dense_window_scores(
    fcn_apply: Callable[[jax.Array], jax.Array], image: jax.Array, window: int, stride: int,
    *, network_stride: int | None = None,
) -> jax.Array:
    """Scores of the same window grid from one pass of a convolutionized classifier.

    Args:
      fcn_apply: ``[1, H, W, C] -> [1, h, w, K]`` (a convolutionized model).
      image: ``[H, W, C] float32``.
      window: the classifier's input size.
      stride: pixels between windows: the network stride, or (with ``network_stride`` given)
        any multiple of it, in which case every ``stride // network_stride``-th output is
        kept (the convolution computes the finer grid anyway; coarser is a subsample).
      network_stride: the model's output stride (:func:`jaxvision.models.network_stride`);
        None means ``stride`` is it.
    Returns:
      ``[gh, gw, K]`` logits; equal to :func:`naive_window_scores` with the same window and
      stride when the conv stack has no padding.
    """
    gh, gw = grid_size(image.shape[:2], window, stride)
    net = stride if network_stride is None else network_stride
    if stride % net:
        raise ValueError(f"stride {stride} is not a multiple of the network stride {net}: "
                         "a convolutional pass only scores windows on its own grid")
    out = fcn_apply(image[None])[0][::stride // net, ::stride // net]
    if out.shape[:2] != (gh, gw):
        raise ValueError(f"the convolutional classifier gives a {out.shape[0]}x{out.shape[1]} "
                         f"map but the {window}/{stride} window grid is {gh}x{gw}: is "
                         f"{net} the network stride?")
    return out


def detect(
    fcn_apply: Callable[[jax.Array], jax.Array], image: jax.Array, *, window: int,
    stride: int, scales: Sequence[float] = (1.0,), background: int | None = None,
    score_threshold: float = 0.5, iou_threshold: float = 0.3, max_detections: int = 100,
    network_stride: int | None = None, class_agnostic: bool = False,
) -> Detections:
    """Multi-scale sliding-window detection with a convolutionized classifier.

    At each scale the image is resized (bilinear), every window is scored in one pass, a
    window's label is its most probable non-background class and its score that probability;
    windows above ``score_threshold`` from all scales go through per-class NMS.

    Args:
      fcn_apply: ``[1, H, W, C] -> [1, h, w, K]`` logits, e.g.
        ``jax.jit(lambda x: fcn.apply(fcn_vars, x))``.
      image: ``[H, W, C] float32``, preprocessed as the classifier expects.
      window, stride: the classifier's input size and the window stride (in the resized
        image): the network stride, or a multiple of ``network_stride``.
      scales: image resize factors (a digit of size ``window / s`` is found at scale ``s``).
      background: index of the background class, excluded from labels (None: none).
      score_threshold: windows below this probability are dropped.
      iou_threshold: NMS threshold (strictly greater IoU suppresses).
      max_detections: rows of the output (static).
      network_stride: see :func:`dense_window_scores`.
      class_agnostic: one NMS over all classes (objects that do not overlap, e.g. digits in
        :mod:`jaxvision.data.scenes`, so two labels on one object are one false positive)
        instead of one NMS per class.
    Returns:
      :class:`Detections` with ``max_detections`` rows.
    """
    hw = image.shape[:2]
    all_boxes, all_scores, all_labels = [], [], []
    for s in scales:
        size = scaled_size(hw, s)
        img = jax.image.resize(image, (*size, image.shape[-1]), "bilinear") if s != 1 else image
        scores = dense_window_scores(fcn_apply, img, window, stride,
                                     network_stride=network_stride)
        probs = jax.nn.softmax(scores, axis=-1)
        probs = probs.reshape(-1, probs.shape[-1])
        if background is not None:
            probs = probs.at[:, background].set(-1.0)
        all_labels.append(jnp.argmax(probs, axis=-1).astype(jnp.int32))
        all_scores.append(jnp.max(probs, axis=-1))
        grid = grid_size(size, window, stride)
        # Window positions are integers in the resized image: map back with the exact ratio.
        ratio = (size[0] / hw[0] + size[1] / hw[1]) / 2
        all_boxes.append(window_boxes(grid, window, stride, ratio))
    return select(jnp.concatenate(all_boxes), jnp.concatenate(all_scores),
                  jnp.concatenate(all_labels), score_threshold, iou_threshold, max_detections,
                  class_agnostic=class_agnostic)


@functools.partial(jax.jit, static_argnames=("max_detections", "class_agnostic"))
def select(boxes: jax.Array, scores: jax.Array, labels: jax.Array, score_threshold: float,
           iou_threshold: float, max_detections: int, class_agnostic: bool = False
           ) -> Detections:
    """Thresholds scores and runs NMS (per class, or over all); a static-shape step.

    Args:
      boxes: ``[M, 4] float32`` (x1, y1, x2, y2); scores: ``[M] float32``; labels:
        ``[M] int32``.
    Returns:
      :class:`Detections` with ``max_detections`` rows, in descending score order.
    """
    keep_mask = scores >= score_threshold
    # Below-threshold boxes get a score under every kept one and are cut by the count below.
    masked = jnp.where(keep_mask, scores, -1.0)
    if class_agnostic:
        idx, _ = nms(boxes, masked, iou_threshold, max_detections)
    else:
        idx, _ = batched_nms(boxes, masked, labels, iou_threshold, max_detections)
    valid = (idx >= 0) & (masked[jnp.maximum(idx, 0)] >= score_threshold)
    safe = jnp.maximum(idx, 0)
    count = jnp.sum(valid).astype(jnp.int32)
    return Detections(
        boxes=jnp.where(valid[:, None], boxes[safe], 0.0),
        scores=jnp.where(valid, scores[safe], 0.0),
        labels=jnp.where(valid, labels[safe], -1),
        count=count)


def precision_recall(
    dets: Detections, gt_boxes: Any, gt_labels: Any, gt_count: int, iou: float = 0.5,
) -> tuple[int, int, int]:
    """Greedy matching of one image's detections (by score) to its ground truth.

    A detection is a true positive when it has the right label and IoU >= ``iou`` with a
    still-unmatched ground-truth box. Returns ``(true_positives, num_detections, num_gt)``.
    """
    import numpy as np

    from jaxvision.ops.boxes import box_iou

    n = int(dets.count)
    if n == 0 or gt_count == 0:
        return 0, n, int(gt_count)
    ious = np.asarray(box_iou(dets.boxes[:n], jnp.asarray(gt_boxes)[:gt_count]))
    labels = np.asarray(dets.labels[:n])
    gl = np.asarray(gt_labels)[:gt_count]
    matched = np.zeros(gt_count, bool)
    tp = 0
    for d in range(n):  # detections are in descending score order
        cand = np.where((~matched) & (gl == labels[d]) & (ious[d] >= iou))[0]
        if cand.size:
            matched[cand[np.argmax(ious[d, cand])]] = True
            tp += 1
    return tp, n, int(gt_count)
