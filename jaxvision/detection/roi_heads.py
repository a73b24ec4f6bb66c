"""The Fast R-CNN box head on RPN proposals (Girshick, "Fast R-CNN", ICCV 2015), static shapes.

``torchvision.models.detection.roi_heads`` and the heads of ``faster_rcnn.py`` in Flax:

* :class:`TwoMLPHead` (``fc6``, ``fc7``: the v1 model) and :class:`FastRCNNConvFCHead`
  (four 3x3 conv + BatchNorm + ReLU, one fc: the v2 model) on the pooled ``[K, 7, 7, C]``
  RoI features; :class:`FastRCNNPredictor` (``cls_score``, ``bbox_pred``: class logits and
  class-specific box deltas).
* :class:`RoIHeads`: ``MultiScaleRoIAlign`` (levels ``"0"``..``"3"``, 7x7, sampling ratio 2),
  the head and the predictor over padded proposals; :func:`postprocess_detections`:
  softmax, per-class decoding (``BoxCoder((10, 10, 5, 5))``), clipping, background removed,
  score threshold and small boxes as masks, per-class nms
  (:func:`~jaxvision.detection.rpn.batched_nms_keep`), the best ``detections_per_img`` as
  padded arrays with a validity mask.

The training-time parts (proposal matching, sampling, the multi-task loss) are separate:
they call :meth:`RoIHeads.__call__` on sampled proposals and read the raw outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.detection.rpn import batched_nms_keep, map_images, select_top
from jaxvision.models import layers
from jaxvision.ops._numerics import divide
from jaxvision.ops.boxes import BoxCoder, clip_boxes_to_image, remove_small_boxes
from jaxvision.ops.poolers import MultiScaleRoIAlign, map_levels

__all__ = ["FastRCNNConvFCHead", "FastRCNNPredictor", "RoIHeads", "TwoMLPHead",
           "pool_fixed_grid", "postprocess_detections"]

Array = jax.Array
Dtype = Any


def pool_fixed_grid(features: Sequence[Array], boxes: Array, batch_index: Array,
                    scales: Sequence[float], output_size: int, sampling_ratio: int,
                    canonical_scale: int = 224, canonical_level: int = 4) -> Array:
    """``MultiScaleRoIAlign`` (``aligned=False``) for a fixed ``sampling_ratio > 0``.

    The same values as :func:`~jaxvision.ops.poolers.multi_scale_roi_align` (torchvision's
    kernel, sample by sample: positions ``start + p * bin + (i + .5) * bin / grid``, samples
    outside ``[-1, size]`` count 0, clamping at 0 and at ``size - 1``, divisor ``grid**2``),
    computed as one gather of every sample's four taps from all levels flattened together,
    each RoI indexing its own level. With a fixed grid the taps are static in number, so this
    skips the adaptive-grid machinery (size buckets, one branch per window per level): on CPU
    it compiles in seconds instead of a minute and runs several times faster for the R-CNN
    heads' thousand-odd RoIs.

    Args:
      features: per level ``[N, H_l, W_l, C]`` floating, finest first.
      boxes: ``[K, 4]`` float (x1, y1, x2, y2) image coordinates.
      batch_index: ``[K]`` int image of each box.
      scales: per level spatial scale (powers of two).
      output_size: bins per side; sampling_ratio: samples per bin per side.
      canonical_scale, canonical_level: FPN level mapping (:func:`map_levels`).

    Returns:
      ``[K, output_size, output_size, C]`` in the features' dtype.
    """
    if sampling_ratio <= 0:
        raise ValueError(f"pool_fixed_grid: sampling_ratio must be > 0, got {sampling_ratio}")
    c = features[0].shape[-1]
    k = boxes.shape[0]
    dt = jnp.promote_types(features[0].dtype, jnp.float32)
    boxes = jax.lax.stop_gradient(boxes).astype(dt)
    if len(features) == 1:
        lvl = jnp.zeros((k,), jnp.int32)
    else:
        k_min = int(-np.log2(np.float32(scales[0])))
        k_max = int(-np.log2(np.float32(scales[-1])))
        lvl = map_levels(boxes, k_min, k_max, canonical_scale, canonical_level)
    n = features[0].shape[0]
    hs = np.array([f.shape[1] for f in features], np.int32)
    ws = np.array([f.shape[2] for f in features], np.int32)
    offs = np.concatenate([[0], np.cumsum(n * hs * ws)[:-1]]).astype(np.int32)
    flat = jnp.concatenate([f.reshape(-1, c) for f in features], axis=0)
    h = jnp.asarray(hs)[lvl]
    w = jnp.asarray(ws)[lvl]
    scale = jnp.asarray(np.asarray(scales, np.float32)).astype(dt)[lvl]
    base = jnp.asarray(offs)[lvl] + jnp.asarray(batch_index, jnp.int32) * h * w
    g = sampling_ratio
    p = jnp.arange(output_size, dtype=dt)
    i = jnp.arange(g, dtype=dt)

    def axis(lo: Array, hi: Array, size: Array) -> tuple[Array, Array, Array, Array]:
        start = lo * scale
        extent = jnp.maximum(hi * scale - start, 1.0)
        # True divisions, as torch (XLA would multiply by a rounded reciprocal of 7).
        bin_ = divide(extent, output_size)
        pos = (start[:, None, None] + p[None, :, None] * bin_[:, None, None]
               + divide((i[None, None, :] + 0.5) * bin_[:, None, None], g)).reshape(k, -1)
        sz = size[:, None].astype(dt)
        inside = (pos >= -1.0) & (pos <= sz)
        pos = jnp.maximum(pos, 0.0)
        low = jnp.floor(pos).astype(jnp.int32)
        top = low >= size[:, None] - 1
        low = jnp.where(top, size[:, None] - 1, low)
        high = jnp.where(top, low, low + 1)
        pos = jnp.where(top, low.astype(dt), pos)
        frac = pos - low.astype(dt)
        wts = jnp.stack([1.0 - frac, frac], -1) * inside[..., None]  # [K, S, 2]
        return jnp.stack([low, high], -1), wts, inside, sz

    yi, wy, _, _ = axis(boxes[:, 1], boxes[:, 3], h)
    xi, wx, _, _ = axis(boxes[:, 0], boxes[:, 2], w)
    # [K, P, taps]: a bin's g samples x 2 bilinear taps along each axis.
    yi, wy = yi.reshape(k, output_size, 2 * g), wy.reshape(k, output_size, 2 * g)
    xi, wx = xi.reshape(k, output_size, 2 * g), wx.reshape(k, output_size, 2 * g)
    rows = base[:, None, None] + yi * w[:, None, None]
    wy = wy / (g * g)
    # One gathered [K, P, P, C] slab per (row tap, column tap), summed as we go: XLA fuses
    # each gather into the sum, so the [K, P, P, taps, C] tensor never exists in memory.
    out = None
    for a in range(2 * g):
        for b in range(2 * g):
            idx = rows[:, :, a, None] + xi[:, None, :, b]
            wt = wy[:, :, a, None] * wx[:, None, :, b]
            term = wt[..., None] * flat[idx].astype(dt)
            out = term if out is None else out + term
    return out.astype(features[0].dtype)


def _dense(features: int, fan_in: int, name: str, dtype: Dtype, param_dtype: Dtype) -> nn.Dense:
    k_init, b_init = layers.torch_linear_init(fan_in)  # torch.nn.Linear's default
    return nn.Dense(features, dtype=dtype, param_dtype=param_dtype, kernel_init=k_init,
                    bias_init=b_init, name=name)


class TwoMLPHead(nn.Module):
    """torchvision's ``TwoMLPHead``: flatten, ``fc6`` + ReLU, ``fc7`` + ReLU.

    ``__call__(x: [K, h, w, C]) -> [K, representation_size]``. The flatten is (h, w, C)
    order here; :func:`jaxvision.weights.convert_torchvision` permutes ``fc6``'s rows from
    torch's (C, h, w) order (``torch_flatten_shapes``).
    """

    representation_size: int = 1024
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        del train  # no BatchNorm or dropout
        x = x.reshape(x.shape[0], -1)
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = nn.relu(_dense(self.representation_size, x.shape[1], "fc6", **kw)(x))
        return nn.relu(_dense(self.representation_size, self.representation_size, "fc7",
                              **kw)(x))


class FastRCNNConvFCHead(nn.Module):
    """torchvision's ``FastRCNNConvFCHead``: ``Sequential`` of conv blocks then fc layers.

    Attributes:
      conv_layers: channels of each 3x3 conv (+ norm + ReLU) block, named ``"{i}.0"`` (conv,
        no bias with a norm) and ``"{i}.1"`` (BatchNorm).
      fc_layers: sizes of the dense layers (+ ReLU), named by their ``Sequential`` index
        (``"5"`` after four convs and the flatten).
      batch_norm: torchvision's ``norm_layer=BatchNorm2d`` (v2); False means conv biases.

    ``__call__(x: [K, h, w, C], train=False) -> [K, fc_layers[-1]]``.
    """

    conv_layers: Sequence[int] = (256, 256, 256, 256)
    fc_layers: Sequence[int] = (1024,)
    batch_norm: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @property
    def flatten_index(self) -> int:
        """``Sequential`` index of the first dense layer (fed by the NCHW flatten)."""
        return len(self.conv_layers) + 1

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        for i, c in enumerate(self.conv_layers):
            # torchvision re-initializes these convs: kaiming_normal_(fan_out, relu).
            x = layers.conv2d(c, 3, 1, 1, use_bias=not self.batch_norm, name=f"{i}.0",
                              kernel_init=nn.initializers.variance_scaling(
                                  2.0, "fan_out", "normal"), **kw)(x)
            if self.batch_norm:
                x = layers.BatchNorm(use_running_average=not train, name=f"{i}.1", **kw)(x)
            x = nn.relu(x)
        x = x.reshape(x.shape[0], -1)
        for j, f in enumerate(self.fc_layers):
            x = nn.relu(_dense(f, x.shape[1], str(self.flatten_index + 2 * j), **kw)(x))
        return x


class FastRCNNPredictor(nn.Module):
    """torchvision's ``FastRCNNPredictor``: ``cls_score`` and ``bbox_pred`` dense layers.

    ``__call__(x: [K, D]) -> (class_logits [K, num_classes], box_regression [K, 4 *
    num_classes])``, deltas of class ``c`` at columns ``4c..4c+3``.
    """

    num_classes: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        x = x.reshape(x.shape[0], -1)
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        return (_dense(self.num_classes, x.shape[1], "cls_score", **kw)(x),
                _dense(4 * self.num_classes, x.shape[1], "bbox_pred", **kw)(x))


def postprocess_detections(class_logits: Array, box_regression: Array, proposals: Array,
                           proposal_valid: Array, image_sizes: Array, *,
                           score_thresh: float = 0.05, nms_thresh: float = 0.5,
                           detections_per_img: int = 100,
                           bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
                           min_size: float = 1e-2) -> dict[str, Array]:
    """torchvision's ``RoIHeads.postprocess_detections`` with static shapes.

    Args:
      class_logits: ``[N, P, C]`` float (class 0 is the background).
      box_regression: ``[N, P, 4 * C]`` float deltas.
      proposals: ``[N, P, 4]`` float (x1, y1, x2, y2) canvas pixels.
      proposal_valid: ``[N, P]`` bool (padding proposals give no detection).
      image_sizes: ``[N, 2]`` int (h, w) of each resized image (boxes are clipped to it).
      score_thresh: detections need a class probability ``> score_thresh``.
      nms_thresh: per-class nms IoU threshold.
      detections_per_img: static output size ``D``.
      bbox_reg_weights: the box coder's weights.
      min_size: detections need both sides ``>= min_size`` (torchvision's 1e-2).

    Returns:
      ``{"boxes": [N, D, 4] float, "scores": [N, D] float, "labels": [N, D] int32, "valid":
      [N, D] bool, "count": [N] int32}``: valid entries first, in decreasing score order;
      padding entries are zeros.
    """
    n, p, c = class_logits.shape
    coder = BoxCoder(bbox_reg_weights)
    labels = np.tile(np.arange(1, c, dtype=np.int32), p)  # proposal-major, as torchvision
    # Category c's boxes in the flat (proposal, class) order, for the per-class nms.
    groups = (np.arange(p)[None, :] * (c - 1) + np.arange(c - 1)[:, None]).astype(np.int64)

    def one_image(logits: Array, deltas: Array, props: Array, pvalid: Array, size: Array
                  ) -> tuple[Array, ...]:
        boxes = coder.decode_single(deltas, props).reshape(p, c, 4)
        scores = jax.nn.softmax(logits, axis=-1)
        boxes = clip_boxes_to_image(boxes, (size[0], size[1]))
        boxes = boxes[:, 1:].reshape(-1, 4)
        scores = scores[:, 1:].reshape(-1)
        valid = (jnp.repeat(pvalid, c - 1) & (scores > score_thresh)
                 & remove_small_boxes(boxes, min_size))
        keep = batched_nms_keep(boxes, scores, jnp.asarray(labels), valid, groups, nms_thresh,
                                detections_per_img)
        sel, ok = select_top(scores, keep, detections_per_img)
        return (jnp.where(ok[:, None], boxes[sel], 0), jnp.where(ok, scores[sel], 0),
                jnp.where(ok, jnp.asarray(labels)[sel], 0), ok)

    boxes, scores, labels_out, valid = map_images(one_image,
        class_logits, box_regression, proposals, proposal_valid, jnp.asarray(image_sizes))
    return {"boxes": boxes, "scores": scores, "labels": labels_out, "valid": valid,
            "count": jnp.sum(valid, axis=1, dtype=jnp.int32)}


class RoIHeads(nn.Module):
    """torchvision's ``RoIHeads`` (boxes only): pooling, box head, predictor, postprocess.

    Attributes:
      box_head: :class:`TwoMLPHead` or :class:`FastRCNNConvFCHead` (``box_head/``).
      box_predictor: :class:`FastRCNNPredictor` (``box_predictor/``).
      featmap_names, output_size, sampling_ratio: the ``MultiScaleRoIAlign``.
      score_thresh, nms_thresh, detections_per_img: post-processing (0.05, 0.5, 100).
      bbox_reg_weights: the box coder's (10, 10, 5, 5).
      fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction: the training
        matcher's and sampler's settings (read by the training code, unused here).

    ``__call__(features, proposals, canvas, train=False) -> (class_logits [N, P, C],
    box_regression [N, P, 4 * C])`` for ``proposals [N, P, 4]`` (canvas pixels, padding as
    zero boxes) and the static ``canvas`` (H, W); :meth:`postprocess` turns them into
    detections (:func:`postprocess_detections`).
    """

    box_head: nn.Module
    box_predictor: nn.Module
    featmap_names: tuple[str, ...] = ("0", "1", "2", "3")
    output_size: int = 7
    sampling_ratio: int = 2
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.5
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25

    @property
    def box_roi_pool(self) -> MultiScaleRoIAlign:
        return MultiScaleRoIAlign(self.featmap_names, self.output_size, self.sampling_ratio)

    def __call__(self, features: Mapping[str, Array], proposals: Array,
                 canvas: tuple[int, int], train: bool = False) -> tuple[Array, Array]:
        n, p = proposals.shape[:2]
        # torchvision infers the level scales from the largest image height; with a canvas
        # padded to a multiple of 32 both give the same powers of two.
        pool = self.box_roi_pool
        feats = [v for name, v in features.items() if name in self.featmap_names]
        scales = pool.scales(feats, [tuple(canvas)])
        if self.sampling_ratio > 0:
            batch = jnp.repeat(jnp.arange(n, dtype=jnp.int32), p)
            pooled = pool_fixed_grid(feats, proposals.reshape(n * p, 4), batch, scales,
                                     self.output_size, self.sampling_ratio)
        else:
            pooled = pool(features, proposals, [tuple(canvas)])
        x = self.box_head(pooled, train=train)
        logits, deltas = self.box_predictor(x)
        return logits.reshape(n, p, -1), deltas.reshape(n, p, -1)

    def postprocess(self, class_logits: Array, box_regression: Array, proposals: Array,
                    proposal_valid: Array, image_sizes: Array) -> dict[str, Array]:
        """:func:`postprocess_detections` with this head's settings."""
        return postprocess_detections(
            class_logits, box_regression, proposals, proposal_valid, image_sizes,
            score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
            detections_per_img=self.detections_per_img, bbox_reg_weights=self.bbox_reg_weights)
