"""Training-time targets of the R-CNN family: matching, balanced sampling, regression targets.

torchvision's ``models/detection/_utils.py`` (``Matcher``, ``BalancedPositiveNegativeSampler``)
and the training halves of ``RegionProposalNetwork`` (``assign_targets_to_anchors``) and
``RoIHeads`` (``add_gt_proposals``, ``assign_targets_to_proposals``,
``select_training_samples``), in static shapes: ground truth comes padded to a fixed ``G``
with a validity mask (the data contract's ``boxes`` [G, 4], ``labels`` [G], ``box_valid``
[G]), proposals padded to a fixed ``P`` with a mask, and every result has a fixed size, a
boolean mask standing for torchvision's variable-length index lists. Nothing here indexes
with a boolean array or reads a value back to the host, so each function jit-compiles once
per shape; each works on one image and is batched with ``jax.vmap`` (one PRNG key per image).

Semantics are torchvision's, value for value: the same thresholds (``>= high`` matched,
``[low, high)`` between, ``< low`` below), low-quality matches given to every prediction
tying a ground-truth box's best quality, ``int(batch_size_per_image * positive_fraction)``
positives at most with negatives filling the rest, images without objects all background.
Which positives and negatives the sampler picks is random in both (a uniform subset of the
eligible ones, of the same size); the rest is deterministic.

Indices into the ground truth (``matched_idxs``) count rows of the padded ``[G, ...]`` arrays;
they equal torchvision's indices into its compact list when the valid rows come first (the
loader's layout before cropping).

Degenerate ground truth (``x2 <= x1`` or ``y2 <= y1``) must be left out of ``gt_valid``, as
torchvision's ``GeneralizedRCNN`` refuses it: such a box has IoU 0 with every anchor, so with
low-quality matches on, every anchor tying that 0 becomes a positive (torchvision's
``Matcher`` does the same).

References: Girshick et al., "Fast R-CNN", ICCV 2015 (mini-batch sampling, 25% foreground);
Ren et al., "Faster R-CNN", NeurIPS 2015 (anchor labels, 256 anchors at 1:1).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxvision.checks import check_array, check_boxes, check_floating, check_rank
from jaxvision.ops.boxes import BoxCoder, box_iou

__all__ = [
    "BELOW_LOW_THRESHOLD",
    "BETWEEN_THRESHOLDS",
    "BalancedPositiveNegativeSampler",
    "Matcher",
    "RPNTargets",
    "TrainingSamples",
    "add_gt_proposals",
    "assign_targets_to_anchors",
    "assign_targets_to_proposals",
    "rpn_training_targets",
    "sample_rois",
    "select_training_samples",
]

Array = jax.Array

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2


def _check_mask(mask: Array, length: int, name: str, op: str, layout: str) -> Array:
    check_rank(mask, 1, name, op, layout=layout)
    if mask.shape[0] != length:
        raise ValueError(f"{op}: {name} must have {length} entries {layout}, got shape "
                         f"{tuple(mask.shape)}")
    return jnp.asarray(mask).astype(bool)


@dataclasses.dataclass(frozen=True)
class Matcher:
    """Assigns each prediction (anchor, proposal) the ground-truth box it matches best.

    ``torchvision.models.detection._utils.Matcher`` on a padded quality matrix: the best
    ground truth of each prediction (first one on ties, as ``torch.max``) if its quality is
    ``>= high_threshold``, :data:`BETWEEN_THRESHOLDS` (-2) if in ``[low_threshold,
    high_threshold)``, :data:`BELOW_LOW_THRESHOLD` (-1) below. With
    ``allow_low_quality_matches`` every prediction whose quality equals the best quality of
    some ground-truth box (all ties) keeps its best match whatever the thresholds (Faster
    R-CNN's second anchor-labelling rule). Invalid ground-truth rows and invalid predictions
    take no part; an image without valid ground truth gets -1 everywhere, the background that
    torchvision's ``assign_targets_*`` give such an image (its ``Matcher`` itself raises).

    Args:
      high_threshold: quality from which a prediction is matched (0.7 RPN, 0.5 RoI heads).
      low_threshold: quality below which it is background (0.3 RPN, 0.5 RoI heads).
      allow_low_quality_matches: the low-quality rule (True for the RPN).
    """

    high_threshold: float
    low_threshold: float
    allow_low_quality_matches: bool = False

    def __post_init__(self) -> None:
        if not self.low_threshold <= self.high_threshold:
            raise ValueError(f"Matcher: low_threshold ({self.low_threshold}) must be <= "
                             f"high_threshold ({self.high_threshold})")

    def __call__(self, match_quality: Array, gt_valid: Array | None = None,
                 pred_valid: Array | None = None) -> Array:
        """Matches one image.

        Args:
          match_quality: ``[G, A]`` floating quality (IoU) of each padded ground-truth box
            against each prediction.
          gt_valid: ``[G]`` bool, True on real ground-truth rows (default: all).
          pred_valid: ``[A]`` bool, True on real predictions (default: all); the others come
            out :data:`BELOW_LOW_THRESHOLD` and never tie a ground truth's best quality.

        Returns:
          ``[A]`` int32: the matched row of ``match_quality`` in ``[0, G)``, or -1 / -2.
        """
        op = "Matcher"
        check_rank(match_quality, 2, "match_quality", op, layout="[G, A] (ground truth, "
                   "predictions)")
        check_floating(match_quality, "match_quality", op)
        g, a = match_quality.shape
        q = jnp.asarray(match_quality)
        ninf = jnp.asarray(-jnp.inf, q.dtype)
        if gt_valid is not None:
            q = jnp.where(_check_mask(gt_valid, g, "gt_valid", op, "[G]")[:, None], q, ninf)
        if pred_valid is not None:
            q = jnp.where(_check_mask(pred_valid, a, "pred_valid", op, "[A]")[None, :], q, ninf)
        if g == 0:
            return jnp.full((a,), BELOW_LOW_THRESHOLD, jnp.int32)

        matched_vals = jnp.max(q, axis=0)
        all_matches = jnp.argmax(q, axis=0).astype(jnp.int32)
        # Spelled as torchvision's two masks so NaN qualities keep their match like torch's.
        below = matched_vals < self.low_threshold
        between = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches = jnp.where(below, BELOW_LOW_THRESHOLD,
                            jnp.where(between, BETWEEN_THRESHOLDS, all_matches))
        if self.allow_low_quality_matches:
            highest = jnp.max(q, axis=1)
            # A -inf best is a masked row (or a row with every prediction masked): no ties.
            ties = (q == highest[:, None]) & (highest > ninf)[:, None]
            matches = jnp.where(jnp.any(ties, axis=0), all_matches, matches)
        return matches.astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class BalancedPositiveNegativeSampler:
    """Samples a fixed-size mini-batch with at most a fixed fraction of positives.

    ``torchvision.models.detection._utils.BalancedPositiveNegativeSampler`` as masks: of the
    positives (``labels >= 1``) a uniformly random ``num_pos = min(#positives,
    int(batch_size_per_image * positive_fraction))``, of the negatives (``labels == 0``) a
    uniformly random ``min(#negatives, batch_size_per_image - num_pos)``; others (``-1``,
    ignored) never. The choice is a masked top-k of random keys (24 random bits per entry,
    one draw for both sets; the rare equal keys go to the lower index), not torch's
    ``randperm`` stream: exactly the same counts, the same distribution up to those ties,
    other draws. Float keys because XLA's CPU ``top_k`` is 50x slower on integers.

    Args:
      batch_size_per_image: samples per image (256 RPN, 512 RoI heads).
      positive_fraction: largest share of positives (0.5 RPN, 0.25 RoI heads).
    """

    batch_size_per_image: int
    positive_fraction: float

    def __post_init__(self) -> None:
        if int(self.batch_size_per_image) != self.batch_size_per_image or \
                self.batch_size_per_image < 0:
            raise ValueError(f"BalancedPositiveNegativeSampler: batch_size_per_image must be a "
                             f"non-negative int, got {self.batch_size_per_image!r}")
        if not 0.0 <= self.positive_fraction <= 1.0:
            raise ValueError(f"BalancedPositiveNegativeSampler: positive_fraction must be in "
                             f"[0, 1], got {self.positive_fraction!r}")

    @property
    def max_positives(self) -> int:
        """``int(batch_size_per_image * positive_fraction)``, torchvision's rounding."""
        return int(self.batch_size_per_image * self.positive_fraction)

    def __call__(self, labels: Array, key: Array) -> tuple[Array, Array]:
        """Samples one image.

        Args:
          labels: ``[A]`` int or float: ``>= 1`` positive, ``0`` negative, else ignored
            (torchvision's ``matched_idxs``/labels convention).
          key: a ``jax.random`` key.

        Returns:
          ``(pos_mask, neg_mask)``: ``[A]`` bool each, disjoint, with exactly torchvision's
          counts.
        """
        op = "BalancedPositiveNegativeSampler"
        check_rank(labels, 1, "labels", op, layout="[A]")
        labels = jnp.asarray(labels)
        a = labels.shape[0]
        positive = labels >= 1
        negative = labels == 0
        num_pos = jnp.minimum(jnp.sum(positive, dtype=jnp.int32), self.max_positives)
        num_neg = jnp.minimum(jnp.sum(negative, dtype=jnp.int32),
                              self.batch_size_per_image - num_pos)
        # Integers below 2**24 are exact in float32: keys in [0, 2**24), -1 marks ineligible.
        priority = (jax.random.bits(key, (a,), jnp.uint32) >> 8).astype(jnp.float32)
        return (_take_highest(priority, positive, num_pos, min(self.max_positives, a)),
                _take_highest(priority, negative, num_neg, min(self.batch_size_per_image, a)))


def _take_highest(priority: Array, eligible: Array, count: Array, k: int) -> Array:
    """Mask of the ``count`` eligible entries of highest priority; ``count <= min(k, #eligible)``.

    Scattering top-k indices (not thresholding the k-th key) keeps the count exact on ties.
    """
    if k == 0:
        return jnp.zeros(priority.shape, bool)
    _, idx = jax.lax.top_k(jnp.where(eligible, priority, -1.0), k)
    return jnp.zeros(priority.shape, bool).at[idx].set(jnp.arange(k) < count)


def _first_valid(gt_valid: Array) -> Array:
    """Row that torchvision's ``matched_idxs.clamp(min=0)`` points at: its first gt box."""
    return jnp.argmax(gt_valid).astype(jnp.int32)


def assign_targets_to_anchors(anchors: Array, gt_boxes: Array, gt_valid: Array,
                              matcher: Matcher | None = None) -> tuple[Array, Array]:
    """``RegionProposalNetwork.assign_targets_to_anchors`` for one image.

    Args:
      anchors: ``[A, 4]`` floating (x1, y1, x2, y2) anchors.
      gt_boxes: ``[G, 4]`` floating (x1, y1, x2, y2) padded ground-truth boxes.
      gt_valid: ``[G]`` bool, True on real boxes.
      matcher: default ``Matcher(0.7, 0.3, allow_low_quality_matches=True)`` (torchvision's
        ``rpn_fg_iou_thresh``, ``rpn_bg_iou_thresh``).

    Returns:
      ``labels``: ``[A]`` float32, 1 object, 0 background, -1 between the thresholds
      (ignored); ``matched_gt_boxes``: ``[A, 4]`` the matched box of each anchor (the first
      valid box for unmatched anchors, zeros in an image without boxes, as torchvision).
    """
    op = "assign_targets_to_anchors"
    check_boxes(anchors, "anchors", op)
    check_boxes(gt_boxes, "gt_boxes", op)
    gt_valid = _check_mask(gt_valid, gt_boxes.shape[0], "gt_valid", op, "[G]")
    matcher = matcher if matcher is not None else Matcher(0.7, 0.3, True)
    gt_boxes = jnp.asarray(gt_boxes, jnp.float32)
    idx = matcher(box_iou(gt_boxes, jnp.asarray(anchors)), gt_valid)
    if gt_boxes.shape[0] == 0:
        matched = jnp.zeros(anchors.shape, jnp.float32)
    else:
        clamped = jnp.where(idx >= 0, idx, _first_valid(gt_valid))
        matched = jnp.where(jnp.any(gt_valid), gt_boxes[clamped], 0.0)
    labels = jnp.where(idx >= 0, 1.0, jnp.where(idx == BETWEEN_THRESHOLDS, -1.0, 0.0))
    return labels.astype(jnp.float32), matched


class RPNTargets(NamedTuple):
    """What the RPN loss needs for one image (or ``[B, ...]`` under ``vmap``).

    labels: ``[A]`` float32 (1, 0, -1); regression_targets: ``[A, 4]`` float32 box codes of the
    matched boxes against the anchors (meaningful on positives only; torchvision's values
    elsewhere, ``-inf`` included); pos_mask, neg_mask: ``[A]`` bool, the sampled anchors.
    """

    labels: Array
    regression_targets: Array
    pos_mask: Array
    neg_mask: Array


def rpn_training_targets(anchors: Array, gt_boxes: Array, gt_valid: Array, key: Array, *,
                         matcher: Matcher | None = None,
                         sampler: BalancedPositiveNegativeSampler | None = None,
                         box_coder: BoxCoder | None = None) -> RPNTargets:
    """Labels, regression targets and the sampled anchors of one image, as the RPN trains.

    Args:
      anchors: ``[A, 4]`` floating (x1, y1, x2, y2) anchors of all levels, in the order of the
        RPN's flattened outputs.
      gt_boxes: ``[G, 4]`` floating padded ground-truth boxes; gt_valid: ``[G]`` bool.
      key: a ``jax.random`` key for the sampler.
      matcher: default ``Matcher(0.7, 0.3, True)``.
      sampler: default ``BalancedPositiveNegativeSampler(256, 0.5)``.
      box_coder: default ``BoxCoder((1, 1, 1, 1))``.

    Returns:
      :class:`RPNTargets`.
    """
    sampler = sampler if sampler is not None else BalancedPositiveNegativeSampler(256, 0.5)
    box_coder = box_coder if box_coder is not None else BoxCoder((1.0, 1.0, 1.0, 1.0))
    labels, matched = assign_targets_to_anchors(anchors, gt_boxes, gt_valid, matcher)
    targets = box_coder.encode_single(matched, jnp.asarray(anchors).astype(matched.dtype))
    pos, neg = sampler(labels, key)
    return RPNTargets(labels, targets, pos, neg)


def add_gt_proposals(proposals: Array, proposal_valid: Array, gt_boxes: Array,
                     gt_valid: Array) -> tuple[Array, Array]:
    """``RoIHeads.add_gt_proposals``: the ground-truth boxes appended to the proposals.

    Args:
      proposals: ``[P, 4]`` floating (x1, y1, x2, y2); proposal_valid: ``[P]`` bool.
      gt_boxes: ``[G, 4]`` floating; gt_valid: ``[G]`` bool.

    Returns:
      ``([P + G, 4] boxes in the proposals' dtype, [P + G] bool valid)``; the valid rows in
      order are torchvision's ``cat((proposals, gt_boxes))``.
    """
    op = "add_gt_proposals"
    check_boxes(proposals, "proposals", op)
    check_boxes(gt_boxes, "gt_boxes", op)
    proposal_valid = _check_mask(proposal_valid, proposals.shape[0], "proposal_valid", op,
                                 "[P]")
    gt_valid = _check_mask(gt_valid, gt_boxes.shape[0], "gt_valid", op, "[G]")
    proposals = jnp.asarray(proposals)
    boxes = jnp.concatenate([proposals, jnp.asarray(gt_boxes).astype(proposals.dtype)])
    return boxes, jnp.concatenate([proposal_valid, gt_valid])


def assign_targets_to_proposals(proposals: Array, proposal_valid: Array, gt_boxes: Array,
                                gt_labels: Array, gt_valid: Array,
                                matcher: Matcher | None = None, *,
                                min_background_iou: float | None = None) -> tuple[Array, Array]:
    """``RoIHeads.assign_targets_to_proposals`` for one image.

    Args:
      proposals: ``[P, 4]`` floating boxes; proposal_valid: ``[P]`` bool.
      gt_boxes: ``[G, 4]`` floating; gt_labels: ``[G]`` int, classes 1..C; gt_valid: ``[G]``.
      matcher: default ``Matcher(0.5, 0.5, False)`` (``box_fg_iou_thresh``,
        ``box_bg_iou_thresh``).
      min_background_iou: not in torchvision (None, the default, is torchvision): background
        proposals whose best IoU is below it are ignored (-1), the Fast R-CNN paper's
        background interval ``[0.1, 0.5)`` with 0.1 ("hard example mining" heuristic, section
        2.3). An image without boxes stays all background.

    Returns:
      ``matched_idxs``: ``[P]`` int32 gt row, the first valid row where unmatched (0 in an
      image without boxes), torchvision's clamped indices; ``labels``: ``[P]`` int32, the
      matched class, 0 background, -1 ignored (between the thresholds, or invalid proposal).
    """
    op = "assign_targets_to_proposals"
    check_boxes(proposals, "proposals", op)
    check_boxes(gt_boxes, "gt_boxes", op)
    check_rank(gt_labels, 1, "gt_labels", op, layout="[G]")
    g = gt_boxes.shape[0]
    gt_valid = _check_mask(gt_valid, g, "gt_valid", op, "[G]")
    proposal_valid = _check_mask(proposal_valid, proposals.shape[0], "proposal_valid", op,
                                 "[P]")
    if gt_labels.shape[0] != g:
        raise ValueError(f"{op}: gt_labels must have one entry per gt box ([G] = [{g}]), got "
                         f"shape {tuple(gt_labels.shape)}")
    matcher = matcher if matcher is not None else Matcher(0.5, 0.5, False)
    proposals = jnp.asarray(proposals)
    iou = box_iou(jnp.asarray(gt_boxes).astype(proposals.dtype), proposals)
    idx = matcher(iou, gt_valid, proposal_valid)
    if g == 0:
        clamped = jnp.zeros(idx.shape, jnp.int32)
        labels = jnp.zeros(idx.shape, jnp.int32)
    else:
        clamped = jnp.where(idx >= 0, idx, _first_valid(gt_valid))
        labels = jnp.where(jnp.any(gt_valid), jnp.asarray(gt_labels)[clamped], 0)
    labels = jnp.where(idx == BELOW_LOW_THRESHOLD, 0, labels)
    labels = jnp.where(idx == BETWEEN_THRESHOLDS, -1, labels)
    if min_background_iou is not None and g > 0:
        best = jnp.max(jnp.where(gt_valid[:, None], iou, -jnp.inf), axis=0)
        too_far = (labels == 0) & (best < min_background_iou) & jnp.any(gt_valid)
        labels = jnp.where(too_far, -1, labels)
    labels = jnp.where(proposal_valid, labels, -1)
    return clamped, labels.astype(jnp.int32)


class TrainingSamples(NamedTuple):
    """The sampled RoIs of one image, ``S = batch_size_per_image`` rows, in proposal order.

    proposals: ``[S, 4]`` boxes (gt boxes appended before sampling; zeros on padding);
    matched_idxs: ``[S]`` int32 gt rows; labels: ``[S]`` int32 class, 0 background, -1 on
    padding; regression_targets: ``[S, 4]`` codes of the matched gt boxes (0 on padding);
    valid: ``[S]`` bool, True on the ``num_pos + num_neg`` sampled rows, which come first.
    """

    proposals: Array
    matched_idxs: Array
    labels: Array
    regression_targets: Array
    valid: Array


def select_training_samples(proposals: Array, proposal_valid: Array, gt_boxes: Array,
                            gt_labels: Array, gt_valid: Array, key: Array, *,
                            matcher: Matcher | None = None,
                            sampler: BalancedPositiveNegativeSampler | None = None,
                            box_coder: BoxCoder | None = None,
                            min_background_iou: float | None = None) -> TrainingSamples:
    """``RoIHeads.select_training_samples`` for one image, into ``batch_size_per_image`` rows.

    The gt boxes are appended to the proposals, every proposal is matched (IoU) and labelled,
    a balanced subset is sampled and the matched boxes encoded against the sampled proposals.
    torchvision keeps the sampled proposals in their index order; so do the first
    ``valid.sum()`` rows here.

    Args:
      proposals: ``[P, 4]`` floating (x1, y1, x2, y2) RPN proposals (constants: no gradient
        flows back to the RPN, as torchvision's ``detach``); proposal_valid: ``[P]`` bool.
      gt_boxes: ``[G, 4]`` floating padded boxes; gt_labels: ``[G]`` int classes 1..C;
      gt_valid: ``[G]`` bool.
      key: a ``jax.random`` key for the sampler.
      matcher: default ``Matcher(0.5, 0.5, False)``.
      sampler: default ``BalancedPositiveNegativeSampler(512, 0.25)``.
      box_coder: default ``BoxCoder((10, 10, 5, 5))``.
      min_background_iou: see :func:`assign_targets_to_proposals` (None: torchvision; the
        Fast R-CNN paper samples 2 x 64 RoIs at 25% foreground with 0.1 here).

    Returns:
      :class:`TrainingSamples` with ``S = sampler.batch_size_per_image`` rows.
    """
    sampler = sampler if sampler is not None else BalancedPositiveNegativeSampler(512, 0.25)
    box_coder = box_coder if box_coder is not None else BoxCoder((10.0, 10.0, 5.0, 5.0))
    check_array(key, "key", "select_training_samples")
    proposals = jax.lax.stop_gradient(jnp.asarray(proposals))
    boxes, valid = add_gt_proposals(proposals, proposal_valid, gt_boxes, gt_valid)
    matched_idxs, labels = assign_targets_to_proposals(boxes, valid, gt_boxes, gt_labels,
                                                       gt_valid, matcher,
                                                       min_background_iou=min_background_iou)
    pos, neg = sampler(labels, key)
    s = sampler.batch_size_per_image
    sampled = pos | neg
    (rows,) = jnp.nonzero(sampled, size=s, fill_value=0)
    out_valid = jnp.arange(s) < jnp.sum(sampled)
    sel_boxes = jnp.where(out_valid[:, None], boxes[rows], 0)
    sel_idx = jnp.where(out_valid, matched_idxs[rows], 0)
    sel_labels = jnp.where(out_valid, labels[rows], -1)
    gt = jnp.asarray(gt_boxes).astype(boxes.dtype)
    if gt.shape[0] == 0:
        matched_boxes = jnp.zeros_like(sel_boxes)
    else:
        matched_boxes = jnp.where(jnp.any(gt_valid), gt[sel_idx], 0)
    targets = box_coder.encode_single(matched_boxes, sel_boxes)
    targets = jnp.where(out_valid[:, None], targets, 0)
    return TrainingSamples(sel_boxes, sel_idx, sel_labels, targets, out_valid)


def sample_rois(proposals: Array, proposal_valid: Array, gt_boxes: Array, gt_labels: Array,
                gt_valid: Array, key: Array, *, fg_iou_thresh: float, bg_iou_thresh: float,
                batch_size_per_image: int, positive_fraction: float,
                bbox_reg_weights: tuple[float, float, float, float],
                min_background_iou: float | None = None) -> TrainingSamples:
    """:func:`select_training_samples` over a batch, one key per image, with the box head's
    settings (``RoIHeads``'s or the Fast R-CNN paper's): ``[N, P, 4]`` proposals, ``[N, G,
    ...]`` ground truth -> a :class:`TrainingSamples` of ``[N, S, ...]`` arrays."""
    n = proposals.shape[0]
    return jax.vmap(functools.partial(
        select_training_samples,
        matcher=Matcher(fg_iou_thresh, bg_iou_thresh, False),
        sampler=BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction),
        box_coder=BoxCoder(tuple(bbox_reg_weights)),
        min_background_iou=min_background_iou))(
            proposals, proposal_valid, jnp.asarray(gt_boxes).astype(proposals.dtype),
            gt_labels, gt_valid, jax.random.split(key, n))
