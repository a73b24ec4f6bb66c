"""Box arithmetic with ``torchvision.ops.boxes`` semantics, plus the R-CNN box coder.

Boxes are ``(x1, y1, x2, y2)`` unless a ``fmt`` says otherwise; area is ``(x2 - x1) * (y2 -
y1)`` with no ``+1`` (the "pixel" convention of the original Caffe code is not used by
torchvision). Every function has the same formula, operation order and gradients as its
torchvision counterpart (``torch.clamp`` passes the gradient only strictly inside its bounds,
``torch.max`` splits it between ties, like ``jnp.maximum``), so values agree to float32
rounding. As in torchvision, ``box_area`` and the IoU family also take integer boxes (areas
stay integer, IoUs are floating) and compute half-precision boxes in float32.

Static shapes: ``remove_small_boxes`` returns a keep mask instead of torchvision's variable
length index list.

References: generalized IoU -- Rezatofighi et al., "Generalized Intersection over Union",
CVPR 2019; distance and complete IoU -- Zheng et al., "Distance-IoU Loss", AAAI 2020; box
coding -- Girshick et al., "Rich feature hierarchies ...", CVPR 2014 (appendix C) and Ren et
al., "Faster R-CNN", NeurIPS 2015.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxvision.checks import check_boxes, check_floating, check_rank
from jaxvision.ops._numerics import clamp, divide, upcast

__all__ = [
    "BoxCoder",
    "box_area",
    "box_convert",
    "box_iou",
    "clip_boxes_to_image",
    "complete_box_iou",
    "distance_box_iou",
    "generalized_box_iou",
    "remove_small_boxes",
]

Array = jax.Array
_FORMATS = ("xyxy", "xywh", "cxcywh")
_FMT_LAYOUT = {"xyxy": "(x1, y1, x2, y2)", "xywh": "(x1, y1, w, h)", "cxcywh": "(cx, cy, w, h)"}


def _check_fmt(fmt: str, name: str, op: str) -> None:
    if fmt not in _FORMATS:
        raise ValueError(f"{op}: {name}={fmt!r} is not a supported box format; expected one of "
                         f"{_FORMATS}")


def _xyxy_to_cxcywh(b: Array) -> Array:
    x1, y1, x2, y2 = (b[..., i] for i in range(4))
    return jnp.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), axis=-1)


def _cxcywh_to_xyxy(b: Array) -> Array:
    cx, cy, w, h = (b[..., i] for i in range(4))
    return jnp.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), axis=-1)


def _xywh_to_xyxy(b: Array) -> Array:
    x, y, w, h = (b[..., i] for i in range(4))
    return jnp.stack((x, y, x + w, y + h), axis=-1)


def _xyxy_to_xywh(b: Array) -> Array:
    x1, y1, x2, y2 = (b[..., i] for i in range(4))
    return jnp.stack((x1, y1, x2 - x1, y2 - y1), axis=-1)


def box_convert(boxes: Array, in_fmt: str, out_fmt: str) -> Array:
    """Converts boxes between ``'xyxy'``, ``'xywh'`` and ``'cxcywh'``.

    Args:
      boxes: ``[..., 4]`` floating boxes in ``in_fmt``: ``xyxy`` = (x1, y1, x2, y2) corners,
        ``xywh`` = (x1, y1, w, h), ``cxcywh`` = (cx, cy, w, h).
      in_fmt, out_fmt: one of ``'xyxy'``, ``'xywh'``, ``'cxcywh'``.

    Returns:
      ``[..., 4]`` boxes in ``out_fmt``, same dtype. Conversions not involving ``xyxy`` go
      through it, as in torchvision.
    """
    op = "box_convert"
    _check_fmt(in_fmt, "in_fmt", op)
    _check_fmt(out_fmt, "out_fmt", op)
    check_boxes(boxes, "boxes", op, rank=None, fmt=_FMT_LAYOUT[in_fmt])
    boxes = jnp.asarray(boxes)
    if in_fmt == out_fmt:
        return boxes
    if in_fmt == "xywh":
        boxes = _xywh_to_xyxy(boxes)
    elif in_fmt == "cxcywh":
        boxes = _cxcywh_to_xyxy(boxes)
    if out_fmt == "xywh":
        boxes = _xyxy_to_xywh(boxes)
    elif out_fmt == "cxcywh":
        boxes = _xyxy_to_cxcywh(boxes)
    return boxes


def box_area(boxes: Array, fmt: str = "xyxy") -> Array:
    """Area of each box: ``(x2 - x1) * (y2 - y1)``, or ``w * h`` for ``xywh``/``cxcywh``.

    Args:
      boxes: ``[..., 4]`` floating or integer boxes in ``fmt``.

    Returns:
      ``[...]`` areas (float32 for half-precision input, int32 for int8/int16 input, as
      torchvision upcasts). Inverted
      boxes (x2 < x1) give negative areas, exactly like torchvision.
    """
    op = "box_area"
    _check_fmt(fmt, "fmt", op)
    check_boxes(boxes, "boxes", op, rank=None, fmt=_FMT_LAYOUT[fmt], integer_ok=True)
    boxes = upcast(jnp.asarray(boxes))
    if fmt == "xyxy":
        return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return boxes[..., 2] * boxes[..., 3]


def _check_pair(boxes1: Array, boxes2: Array, op: str, fmt: str = "xyxy") -> None:
    layout = _FMT_LAYOUT[fmt]
    check_boxes(boxes1, "boxes1", op, rank=None, fmt=layout, integer_ok=True)
    check_boxes(boxes2, "boxes2", op, rank=None, fmt=layout, integer_ok=True)
    check_rank(boxes1, tuple(range(2, 8)), "boxes1", op, layout=f"[..., N, 4] {layout}")
    check_rank(boxes2, tuple(range(2, 8)), "boxes2", op, layout=f"[..., M, 4] {layout}")
    if boxes1.shape[:-2] != boxes2.shape[:-2]:
        raise ValueError(f"{op}: boxes1 [..., N, 4] and boxes2 [..., M, 4] must have the same "
                         f"leading (batch) axes, got shapes {tuple(boxes1.shape)} and "
                         f"{tuple(boxes2.shape)}")


def _box_inter_union(boxes1: Array, boxes2: Array, fmt: str = "xyxy") -> tuple[Array, Array]:
    area1 = box_area(boxes1, fmt=fmt)
    area2 = box_area(boxes2, fmt=fmt)
    a = boxes1[..., :, None, :]
    b = boxes2[..., None, :, :]
    if fmt == "xyxy":
        lt = jnp.maximum(a[..., :2], b[..., :2])
        rb = jnp.minimum(a[..., 2:], b[..., 2:])
    elif fmt == "xywh":
        lt = jnp.maximum(a[..., :2], b[..., :2])
        rb = jnp.minimum(a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:])
    else:  # cxcywh
        lt = jnp.maximum(a[..., :2] - a[..., 2:] / 2, b[..., :2] - b[..., 2:] / 2)
        rb = jnp.minimum(a[..., :2] + a[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2)
    wh = clamp(upcast(rb - lt), 0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[..., :, None] + area2[..., None, :] - inter
    return inter, union


def box_iou(boxes1: Array, boxes2: Array, fmt: str = "xyxy") -> Array:
    """Pairwise intersection over union (Jaccard index), ``inter / union``.

    Args:
      boxes1: ``[..., N, 4]`` floating or integer boxes in ``fmt``.
      boxes2: ``[..., M, 4]`` floating or integer boxes, same leading axes.
      fmt: ``'xyxy'`` (default), ``'xywh'`` or ``'cxcywh'``.

    Returns:
      ``[..., N, M]`` IoU. Pairs with zero union (two empty boxes) give NaN, as in torchvision.
    """
    op = "box_iou"
    _check_fmt(fmt, "fmt", op)
    _check_pair(boxes1, boxes2, op, fmt)
    inter, union = _box_inter_union(jnp.asarray(boxes1), jnp.asarray(boxes2), fmt)
    return inter / union


def _enclosing_area(boxes1: Array, boxes2: Array) -> tuple[Array, Array]:
    lti = jnp.minimum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    rbi = jnp.maximum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    whi = clamp(upcast(rbi - lti), 0)
    return whi[..., 0], whi[..., 1]


def generalized_box_iou(boxes1: Array, boxes2: Array) -> Array:
    """Pairwise generalized IoU: ``iou - (area_C - union) / area_C``, C the enclosing box.

    Rezatofighi et al., CVPR 2019.

    Args:
      boxes1: ``[..., N, 4]`` floating or integer (x1, y1, x2, y2) boxes.
      boxes2: ``[..., M, 4]`` floating or integer (x1, y1, x2, y2) boxes.

    Returns:
      ``[..., N, M]`` GIoU in ``[-1, 1]`` for well-formed boxes.
    """
    op = "generalized_box_iou"
    _check_pair(boxes1, boxes2, op)
    boxes1, boxes2 = jnp.asarray(boxes1), jnp.asarray(boxes2)
    inter, union = _box_inter_union(boxes1, boxes2)
    iou = inter / union
    w, h = _enclosing_area(boxes1, boxes2)
    areai = w * h
    return iou - (areai - union) / areai


def _box_diou_iou(boxes1: Array, boxes2: Array, eps: float) -> tuple[Array, Array]:
    inter, union = _box_inter_union(boxes1, boxes2)
    iou = inter / union
    w, h = _enclosing_area(boxes1, boxes2)
    diag2 = (w**2) + (h**2) + eps
    x_p = (boxes1[..., 0] + boxes1[..., 2]) / 2
    y_p = (boxes1[..., 1] + boxes1[..., 3]) / 2
    x_g = (boxes2[..., 0] + boxes2[..., 2]) / 2
    y_g = (boxes2[..., 1] + boxes2[..., 3]) / 2
    centers2 = (upcast(x_p[..., :, None] - x_g[..., None, :]) ** 2) + (
        upcast(y_p[..., :, None] - y_g[..., None, :]) ** 2)
    return iou - (centers2 / diag2), iou


def distance_box_iou(boxes1: Array, boxes2: Array, eps: float = 1e-7) -> Array:
    """Pairwise distance IoU: ``iou - d_centers^2 / (diag_C^2 + eps)``.

    Zheng et al., "Distance-IoU Loss", AAAI 2020.

    Args:
      boxes1: ``[..., N, 4]`` floating or integer (x1, y1, x2, y2) boxes.
      boxes2: ``[..., M, 4]`` floating or integer (x1, y1, x2, y2) boxes.
      eps: added to the squared diagonal of the enclosing box.

    Returns:
      ``[..., N, M]`` DIoU.
    """
    op = "distance_box_iou"
    _check_pair(boxes1, boxes2, op)
    boxes1, boxes2 = upcast(jnp.asarray(boxes1)), upcast(jnp.asarray(boxes2))
    return _box_diou_iou(boxes1, boxes2, eps)[0]


def complete_box_iou(boxes1: Array, boxes2: Array, eps: float = 1e-7) -> Array:
    """Pairwise complete IoU: ``diou - alpha * v`` with the aspect-ratio term ``v``.

    Zheng et al., AAAI 2020. ``alpha`` is treated as a constant for gradients, as torchvision
    computes it under ``torch.no_grad()``.

    Args:
      boxes1: ``[..., N, 4]`` floating or integer (x1, y1, x2, y2) boxes.
      boxes2: ``[..., M, 4]`` floating or integer (x1, y1, x2, y2) boxes.
      eps: numerical guard of the DIoU and alpha denominators.

    Returns:
      ``[..., N, M]`` CIoU.
    """
    op = "complete_box_iou"
    _check_pair(boxes1, boxes2, op)
    boxes1, boxes2 = upcast(jnp.asarray(boxes1)), upcast(jnp.asarray(boxes2))
    diou, iou = _box_diou_iou(boxes1, boxes2, eps)
    w_pred = boxes1[..., :, None, 2] - boxes1[..., :, None, 0]
    h_pred = boxes1[..., :, None, 3] - boxes1[..., :, None, 1]
    w_gt = boxes2[..., None, :, 2] - boxes2[..., None, :, 0]
    h_gt = boxes2[..., None, :, 3] - boxes2[..., None, :, 1]
    v = (4 / (math.pi**2)) * (jnp.arctan(w_pred / h_pred) - jnp.arctan(w_gt / h_gt)) ** 2
    alpha = jax.lax.stop_gradient(v / (1 - iou + v + eps))
    return diou - alpha * v


def clip_boxes_to_image(boxes: Array, size: tuple[int, int]) -> Array:
    """Clips x coordinates to ``[0, width]`` and y coordinates to ``[0, height]``.

    Args:
      boxes: ``[..., 4]`` floating (x1, y1, x2, y2) boxes.
      size: ``(height, width)`` of the image (static ints or scalars).

    Returns:
      ``[..., 4]`` clipped boxes, same dtype.
    """
    op = "clip_boxes_to_image"
    check_boxes(boxes, "boxes", op, rank=None)
    if len(size) != 2:
        raise ValueError(f"{op}: size must be (height, width), got {size!r}")
    boxes = jnp.asarray(boxes)
    height, width = size
    hi = jnp.asarray([width, height, width, height], boxes.dtype)
    return clamp(boxes, 0.0, hi)


def remove_small_boxes(boxes: Array, min_size: float) -> Array:
    """Keep mask of the boxes whose width and height are both ``>= min_size``.

    torchvision returns the indices ``where(mask)``; a mask keeps shapes static (compose
    with :func:`jnp.nonzero` with a ``size=`` outside ``jit`` if indices are needed).

    Args:
      boxes: ``[..., 4]`` floating (x1, y1, x2, y2) boxes.
      min_size: minimum side length.

    Returns:
      ``[...]`` bool mask, True for boxes to keep.
    """
    check_boxes(boxes, "boxes", "remove_small_boxes", rank=None)
    boxes = jnp.asarray(boxes)
    ws = boxes[..., 2] - boxes[..., 0]
    hs = boxes[..., 3] - boxes[..., 1]
    return (ws >= min_size) & (hs >= min_size)


class BoxCoder:
    """Encodes boxes as R-CNN regression targets ``(dx, dy, dw, dh)`` and decodes them back.

    Same arithmetic as ``torchvision.models.detection._utils.BoxCoder``: widths are ``x2 -
    x1`` (no ``+1``), centres ``x1 + 0.5 * w``; targets are ``wx * (gx - px) / pw`` and ``ww *
    log(gw / pw)``; decoding divides the codes by the weights and clamps ``dw``/``dh`` from
    above at ``bbox_xform_clip`` (default ``log(1000 / 16)``) before ``exp``. Girshick et al.,
    CVPR 2014, appendix C; Ren et al., NeurIPS 2015.

    Args:
      weights: ``(wx, wy, ww, wh)``; torchvision uses (10, 10, 5, 5) for the Fast R-CNN head
        and (1, 1, 1, 1) for the RPN.
      bbox_xform_clip: upper clamp of ``dw``, ``dh`` after dividing by the weights.
    """

    def __init__(self, weights: Sequence[float],
                 bbox_xform_clip: float = math.log(1000.0 / 16)) -> None:
        weights = tuple(float(w) for w in weights)
        if len(weights) != 4:
            raise ValueError(f"BoxCoder: weights must be 4 numbers (wx, wy, ww, wh), got "
                             f"{weights!r}")
        self.weights = weights
        self.bbox_xform_clip = float(bbox_xform_clip)

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, bbox_xform_clip={self.bbox_xform_clip})"

    def encode_single(self, reference_boxes: Array, proposals: Array) -> Array:
        """Regression targets of ``reference_boxes`` (ground truth) relative to ``proposals``.

        Args:
          reference_boxes: ``[K, 4]`` floating (x1, y1, x2, y2) target boxes.
          proposals: ``[K, 4]`` floating (x1, y1, x2, y2) boxes they are encoded against.

        Returns:
          ``[K, 4]`` targets ``(dx, dy, dw, dh)`` in the dtype of ``reference_boxes``.
        """
        op = "BoxCoder.encode_single"
        check_boxes(reference_boxes, "reference_boxes", op)
        check_boxes(proposals, "proposals", op)
        if reference_boxes.shape[0] != proposals.shape[0]:
            raise ValueError(f"{op}: reference_boxes and proposals must have the same number of "
                             f"rows, got {tuple(reference_boxes.shape)} and "
                             f"{tuple(proposals.shape)}")
        ref = jnp.asarray(reference_boxes)
        dtype = ref.dtype
        prop = jnp.asarray(proposals)
        wx, wy, ww, wh = (jnp.asarray(w, dtype) for w in self.weights)

        ex_w = prop[:, 2] - prop[:, 0]
        ex_h = prop[:, 3] - prop[:, 1]
        ex_cx = prop[:, 0] + 0.5 * ex_w
        ex_cy = prop[:, 1] + 0.5 * ex_h
        gt_w = ref[:, 2] - ref[:, 0]
        gt_h = ref[:, 3] - ref[:, 1]
        gt_cx = ref[:, 0] + 0.5 * gt_w
        gt_cy = ref[:, 1] + 0.5 * gt_h

        dx = wx * (gt_cx - ex_cx) / ex_w
        dy = wy * (gt_cy - ex_cy) / ex_h
        dw = ww * jnp.log(gt_w / ex_w)
        dh = wh * jnp.log(gt_h / ex_h)
        return jnp.stack((dx, dy, dw, dh), axis=1).astype(dtype)

    def decode_single(self, rel_codes: Array, boxes: Array) -> Array:
        """Applies regression codes to boxes.

        Args:
          rel_codes: ``[K, 4 * C]`` floating codes ``(dx, dy, dw, dh)`` per class.
          boxes: ``[K, 4]`` floating (x1, y1, x2, y2) reference boxes (anchors or proposals).

        Returns:
          ``[K, 4 * C]`` decoded (x1, y1, x2, y2) boxes in the dtype of ``rel_codes``.
        """
        op = "BoxCoder.decode_single"
        check_rank(rel_codes, 2, "rel_codes", op, layout="[K, 4 * C]")
        check_floating(rel_codes, "rel_codes", op)
        check_boxes(boxes, "boxes", op)
        if rel_codes.shape[1] % 4 != 0 or rel_codes.shape[0] != boxes.shape[0]:
            raise ValueError(f"{op}: rel_codes must be [K, 4 * C] with K = len(boxes) = "
                             f"{boxes.shape[0]}, got shape {tuple(rel_codes.shape)}")
        rel_codes = jnp.asarray(rel_codes)
        boxes = jnp.asarray(boxes).astype(rel_codes.dtype)

        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        # True divisions (torch divides; XLA would multiply by a rounded reciprocal).
        dx = divide(rel_codes[:, 0::4], wx)
        dy = divide(rel_codes[:, 1::4], wy)
        dw = divide(rel_codes[:, 2::4], ww)
        dh = divide(rel_codes[:, 3::4], wh)
        # Prevents exp overflow for wild predictions. torch.clamp(max=clip): the gradient
        # passes strictly below the clip value (cast to the codes' dtype), 0 at it.
        dw = clamp(dw, hi=self.bbox_xform_clip)
        dh = clamp(dh, hi=self.bbox_xform_clip)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = jnp.exp(dw) * widths[:, None]
        pred_h = jnp.exp(dh) * heights[:, None]
        half_w = 0.5 * pred_w
        half_h = 0.5 * pred_h
        out = jnp.stack((pred_ctr_x - half_w, pred_ctr_y - half_h,
                         pred_ctr_x + half_w, pred_ctr_y + half_h), axis=2)
        return out.reshape(out.shape[0], -1)

    def encode(self, reference_boxes: Array, proposals: Array) -> Array:
        """Batched :meth:`encode_single`: ``[..., K, 4]`` and ``[..., K, 4]`` -> ``[..., K, 4]``.

        torchvision's ``encode`` takes lists of per-image tensors; with static shapes a batch
        is a leading axis instead.
        """
        op = "BoxCoder.encode"
        check_boxes(reference_boxes, "reference_boxes", op, rank=None)
        check_boxes(proposals, "proposals", op, rank=None)
        if reference_boxes.shape != proposals.shape:
            raise ValueError(f"{op}: reference_boxes and proposals must have the same shape "
                             f"[..., K, 4], got {tuple(reference_boxes.shape)} and "
                             f"{tuple(proposals.shape)}")
        lead = reference_boxes.shape[:-1]
        out = self.encode_single(jnp.reshape(reference_boxes, (-1, 4)),
                                 jnp.reshape(proposals, (-1, 4)))
        return out.reshape(*lead, 4)

    def decode(self, rel_codes: Array, boxes: Array) -> Array:
        """Batched :meth:`decode_single` returning torchvision's ``decode`` layout.

        Args:
          rel_codes: ``[..., K, 4 * C]`` floating codes.
          boxes: ``[..., K, 4]`` floating (x1, y1, x2, y2) reference boxes.

        Returns:
          ``[..., K, C, 4]`` decoded boxes.
        """
        op = "BoxCoder.decode"
        check_boxes(boxes, "boxes", op, rank=None)
        check_floating(rel_codes, "rel_codes", op)
        if rel_codes.shape[:-1] != boxes.shape[:-1]:
            raise ValueError(f"{op}: rel_codes [..., K, 4 * C] and boxes [..., K, 4] must have the "
                             f"same leading axes, got {tuple(rel_codes.shape)} and "
                             f"{tuple(boxes.shape)}")
        lead = boxes.shape[:-1]
        out = self.decode_single(jnp.reshape(rel_codes, (-1, rel_codes.shape[-1])),
                                 jnp.reshape(boxes, (-1, 4)))
        return out.reshape(*lead, -1, 4)

