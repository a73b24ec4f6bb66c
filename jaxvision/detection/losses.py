"""Training losses of the R-CNN family, torchvision's values on masked fixed-size inputs.

- :func:`rpn_loss`: ``RegionProposalNetwork.compute_loss``, binary cross-entropy of the
  objectness over the sampled anchors (mean) and smooth L1 (beta 1/9) of the deltas summed
  over the sampled positives, divided by the number of sampled anchors.
- :func:`fastrcnn_loss`: ``roi_heads.fastrcnn_loss``, cross-entropy over the sampled RoIs
  (mean) and class-specific smooth L1 (beta 1/9) summed over the foreground RoIs, divided
  by the number of sampled RoIs. ``fasterrcnn_resnet50_fpn_v2`` trains with the same two
  functions (only its heads differ).
- :func:`fast_rcnn_multitask_loss`: the Fast R-CNN paper's ``L = L_cls + lambda * [u >= 1]
  L_loc`` with smooth L1 at beta 1 (Girshick, ICCV 2015, eq. 1-3).

Where torchvision gathers the sampled entries with index lists, these take the samples as
boolean masks (:mod:`jaxvision.detection.sampling` makes them) over arrays of any leading
shape; like torchvision, the means and the normaliser run over the whole batch, not per
image. Masked-out entries contribute neither value nor gradient, whatever they hold (the
regression targets of background anchors may be ``-inf``). With nothing sampled at all the
losses are 0 where torchvision's means of empty tensors are NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxvision.checks import check_floating, check_last_dim
from jaxvision.ops.losses import smooth_l1

__all__ = ["fast_rcnn_multitask_loss", "fastrcnn_loss", "rpn_loss"]

Array = jax.Array


def _check_lead(x: Array, lead: tuple[int, ...], name: str, op: str, layout: str) -> None:
    if tuple(x.shape[:len(lead)]) != lead or x.ndim != len(lead) + len(layout.split(",")) - 1:
        raise ValueError(f"{op}: {name} must have shape [{', '.join(map(str, lead))}"
                         f"{layout}, got {tuple(x.shape)}")


def _masked_sum(per: Array, mask: Array) -> Array:
    return jnp.sum(jnp.where(mask, per, 0))


def _box_loss(pred: Array, targets: Array, mask: Array, beta: float, count: Array) -> Array:
    """Smooth L1 of ``pred [..., 4]`` against ``targets`` summed over the ``mask`` rows, over
    ``count``; the other rows' targets (``-inf`` for background anchors) never enter."""
    targets = jnp.where(mask[..., None], targets, 0).astype(pred.dtype)
    return _masked_sum(jnp.sum(smooth_l1(pred, targets, beta), axis=-1), mask) / count


def rpn_loss(objectness: Array, pred_bbox_deltas: Array, labels: Array,
             regression_targets: Array, pos_mask: Array, neg_mask: Array, *,
             beta: float = 1.0 / 9) -> tuple[Array, Array]:
    """``RegionProposalNetwork.compute_loss`` given the sampled anchors.

    Args:
      objectness: ``[..., A]`` floating logits (e.g. ``[B, A]``, anchors of all levels).
      pred_bbox_deltas: ``[..., A, 4]`` floating predicted codes.
      labels: ``[..., A]`` anchor labels (1 object, 0 background; others are never sampled).
      regression_targets: ``[..., A, 4]`` codes of the matched boxes (used on positives only).
      pos_mask, neg_mask: ``[..., A]`` bool, the sampled positives and negatives.
      beta: smooth-L1 transition point (torchvision 1/9).

    Returns:
      ``(objectness_loss, box_loss)``: float32 scalars.
    """
    op = "rpn_loss"
    check_floating(objectness, "objectness", op)
    check_floating(pred_bbox_deltas, "pred_bbox_deltas", op)
    lead = tuple(objectness.shape)
    _check_lead(pred_bbox_deltas, lead, "pred_bbox_deltas", op, ", 4]")
    _check_lead(regression_targets, lead, "regression_targets", op, ", 4]")
    for name, x in (("labels", labels), ("pos_mask", pos_mask), ("neg_mask", neg_mask)):
        _check_lead(x, lead, name, op, "]")
    pos = jnp.asarray(pos_mask, bool)
    sampled = pos | jnp.asarray(neg_mask, bool)
    count = jnp.maximum(jnp.sum(sampled), 1).astype(objectness.dtype)

    x = jnp.asarray(objectness)
    y = jnp.where(sampled, jnp.asarray(labels).astype(x.dtype), 0)
    # torch's binary_cross_entropy_with_logits: (1 - y) * x - log(sigmoid(x)).
    bce = (1 - y) * x - jax.nn.log_sigmoid(x)
    objectness_loss = _masked_sum(bce, sampled) / count

    return objectness_loss, _box_loss(pred_bbox_deltas, regression_targets, pos, beta, count)


def fastrcnn_loss(class_logits: Array, box_regression: Array, labels: Array,
                  regression_targets: Array, valid: Array | None = None, *,
                  beta: float = 1.0 / 9) -> tuple[Array, Array]:
    """``torchvision.models.detection.roi_heads.fastrcnn_loss`` over the valid sampled RoIs.

    Args:
      class_logits: ``[..., R, C]`` floating class scores (C includes background 0).
      box_regression: ``[..., R, 4 * C]`` floating class-specific codes.
      labels: ``[..., R]`` int, 0 background, 1..C-1 objects (-1 rows are left out).
      regression_targets: ``[..., R, 4]`` codes of the matched boxes (used on foreground).
      valid: ``[..., R]`` bool, the sampled rows (``TrainingSamples.valid``); default all.
      beta: smooth-L1 transition point (torchvision 1/9; the Fast R-CNN paper 1).

    Returns:
      ``(classification_loss, box_loss)``: float32 scalars; the box loss is divided by the
      number of sampled RoIs, background included, as torchvision's ``labels.numel()``.
    """
    op = "fastrcnn_loss"
    check_floating(class_logits, "class_logits", op)
    check_floating(box_regression, "box_regression", op)
    lead = tuple(class_logits.shape[:-1])
    c = class_logits.shape[-1]
    _check_lead(box_regression, lead, "box_regression", op, f", {4 * c}]")
    check_last_dim(box_regression, 4 * c, "box_regression", op,
                   meaning=f"(4 codes for each of the C = {c} classes)")
    _check_lead(regression_targets, lead, "regression_targets", op, ", 4]")
    _check_lead(labels, lead, "labels", op, "]")
    labels = jnp.asarray(labels).astype(jnp.int32)
    valid = labels >= 0 if valid is None else jnp.asarray(valid, bool) & (labels >= 0)
    count = jnp.maximum(jnp.sum(valid), 1).astype(class_logits.dtype)
    index = jnp.clip(labels, 0, c - 1)[..., None]

    logits = jnp.asarray(class_logits)
    nll = (jax.nn.logsumexp(logits, axis=-1)
           - jnp.take_along_axis(logits, index, axis=-1)[..., 0])
    classification_loss = _masked_sum(nll, valid) / count

    fg = valid & (labels > 0)
    boxes = jnp.reshape(box_regression, (*lead, c, 4))
    boxes = jnp.take_along_axis(boxes, index[..., None], axis=-2)[..., 0, :]
    return classification_loss, _box_loss(boxes, regression_targets, fg, beta, count)


def fast_rcnn_multitask_loss(class_logits: Array, box_regression: Array, labels: Array,
                             regression_targets: Array, valid: Array | None = None, *,
                             box_weight: float = 1.0) -> Array:
    """The Fast R-CNN multi-task loss ``L_cls + lambda [u >= 1] L_loc`` (Girshick, 2015).

    :func:`fastrcnn_loss` with smooth L1 at beta 1 (the paper's eq. 3), averaged over the
    sampled RoIs, the two terms summed with ``lambda = box_weight`` (1 in the paper; the
    targets are normalised by the box coder's weights, as the paper normalises them to unit
    variance).

    Args: as :func:`fastrcnn_loss`.

    Returns:
      ``[]`` float32 total loss.
    """
    cls, box = fastrcnn_loss(class_logits, box_regression, labels, regression_targets, valid,
                             beta=1.0)
    return cls + box_weight * box
