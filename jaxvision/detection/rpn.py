"""The region proposal network (Ren et al., "Faster R-CNN", NeurIPS 2015), static shapes.

``torchvision.models.detection.rpn`` in Flax, exact to its inference path:

* :class:`RPNHead`: a 3x3 conv (``conv.{i}.0``, ``conv_depth`` of them, ReLU) shared by all
  levels, then 1x1 convs to one objectness logit (``cls_logits``) and 4 box deltas
  (``bbox_pred``) per anchor.
* :func:`flatten_head_outputs`: torchvision's ``concat_box_prediction_layers`` order (level,
  then row, column, anchor), which is the order of
  :class:`~jaxvision.ops.AnchorGenerator`'s anchors.
* :func:`filter_proposals`: per image and level the ``pre_nms_top_n`` best logits
  (``lax.top_k``), sigmoid, clip to the image, drop boxes under ``min_size`` and scores under
  ``score_thresh`` (as masks), :func:`batched_nms_keep` per level, the ``post_nms_top_n``
  best survivors; outputs are padded ``[N, post_nms_top_n]`` arrays with a validity mask.
* :class:`RegionProposalNetwork`: anchors, head, decoding (``BoxCoder((1, 1, 1, 1))`` on the
  deltas without gradient, torchvision's ``detach``), filtering; separate train and test
  counts. The training losses (anchor matching and sampling) live elsewhere; they read
  :class:`RPNOutput`'s ``objectness``, ``pred_bbox_deltas`` and ``anchors``.

Static shapes: every selection is a fixed-size top-k or a mask, never boolean indexing, so a
forward pass compiles once per canvas size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvision.ops.anchors import AnchorGenerator
from jaxvision.ops.boxes import BoxCoder, clip_boxes_to_image, remove_small_boxes
from jaxvision.ops.conv import conv_general_dilated
from jaxvision.ops.nms import nms

__all__ = ["DEFAULT_ANCHOR_SIZES", "DEFAULT_ASPECT_RATIOS", "RPNHead", "RPNOutput",
           "RegionProposalNetwork", "batched_nms_keep", "filter_proposals",
           "flatten_head_outputs", "map_images", "select_top"]

Array = jax.Array

#: torchvision's ``_default_anchorgen``: one size per FPN level, three aspect ratios.
DEFAULT_ANCHOR_SIZES = ((32,), (64,), (128,), (256,), (512,))
DEFAULT_ASPECT_RATIOS = ((0.5, 1.0, 2.0),) * 5

# torchvision's batched_nms switches from the coordinate trick to one nms per category
# above this many boxes on CPU (boxes.numel() > 4000).
_VANILLA_ABOVE = 1000


def _rpn_conv_init() -> tuple[Any, Any]:
    # torchvision's RPNHead: normal(std=0.01) weights, zero biases.
    return nn.initializers.normal(0.01), nn.initializers.zeros


class RPNHead(nn.Module):
    """torchvision's ``RPNHead``: shared convs, objectness logits and box deltas per anchor.

    Attributes:
      num_anchors: anchors per location (3 for the default generator).
      conv_depth: 3x3 conv + ReLU layers before the two 1x1 convs (1; 2 in the v2 model).
      dtype, param_dtype: computation and parameter dtypes.

    Variables ``conv.{i}.0/{kernel,bias}``, ``cls_logits``, ``bbox_pred``: torchvision's keys.
    ``__call__(features: list of [N, h_l, w_l, C])`` returns ``(logits, deltas)``: per level
    ``[N, h_l, w_l, A]`` and ``[N, h_l, w_l, 4 * A]`` (channel ``4 * a + k``).
    """

    num_anchors: int
    conv_depth: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: Sequence[Array]) -> tuple[list[Array], list[Array]]:
        k_init, b_init = _rpn_conv_init()
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype, "kernel_init": k_init,
              "bias_init": b_init}
        c = features[0].shape[-1]
        # One set of modules, shared by every level.
        # ops.conv: XLA:CPU's own kernel gradient of the 3x3 256 -> 256 conv on the finest
        # level is 9x slower than its per-tap products.
        kw["conv_general_dilated"] = conv_general_dilated
        convs = [nn.Conv(c, (3, 3), padding=((1, 1), (1, 1)), name=f"conv.{i}.0", **kw)
                 for i in range(self.conv_depth)]
        cls_logits = nn.Conv(self.num_anchors, (1, 1), name="cls_logits", **kw)
        bbox_pred = nn.Conv(4 * self.num_anchors, (1, 1), name="bbox_pred", **kw)
        logits, deltas = [], []
        for f in features:
            t = jnp.asarray(f, self.dtype)
            for conv in convs:
                t = nn.relu(conv(t))
            logits.append(cls_logits(t))
            deltas.append(bbox_pred(t))
        return logits, deltas


def flatten_head_outputs(logits: Sequence[Array], deltas: Sequence[Array]
                         ) -> tuple[Array, Array]:
    """torchvision's ``concat_box_prediction_layers`` for NHWC head outputs.

    Args:
      logits: per level ``[N, h, w, A]``.
      deltas: per level ``[N, h, w, 4 * A]``.

    Returns:
      ``objectness [N, K]`` and ``pred_bbox_deltas [N, K, 4]`` with ``K = sum h * w * A``, in
      the order (level, row, column, anchor) of the anchors.
    """
    n = logits[0].shape[0]
    obj = jnp.concatenate([x.reshape(n, -1) for x in logits], axis=1)
    dl = jnp.concatenate([x.reshape(n, -1, 4) for x in deltas], axis=1)
    return obj, dl


def _invalid_boxes(boxes: Array, valid: Array) -> Array:
    # Zero-area boxes have NaN IoUs with everything: they neither suppress nor get
    # suppressed, so padding cannot change what nms keeps among the valid boxes.
    return jnp.where(valid[..., None], boxes, jnp.zeros((), boxes.dtype))


def batched_nms_keep(boxes: Array, scores: Array, idxs: Array, valid: Array,
                     groups: np.ndarray, iou_threshold: float, max_keep: int) -> Array:
    """Mask of the boxes ``torchvision.ops.batched_nms`` keeps among the valid ones (CPU).

    torchvision runs one :func:`~jaxvision.ops.nms` per category when there are more than
    1,000 boxes (``_batched_nms_vanilla``) and one nms over category-offset boxes otherwise
    (``_batched_nms_coordinate_trick``, offset ``idx * (max coordinate + 1)``); the two can
    differ by rounding, so both are here and the count of valid boxes picks one, as there.

    Args:
      boxes: ``[K, 4]`` float (x1, y1, x2, y2), in torchvision's order of its filtered boxes.
      scores: ``[K]`` float.
      idxs: ``[K]`` int category of each box.
      valid: ``[K]`` bool, the boxes torchvision would pass (the others are ignored).
      groups: static ``[G, M]`` int array, the flat indices of each category's boxes in
        increasing order, padded with -1 (the per-category layout).
      iou_threshold: nms threshold.
      max_keep: only the ``max_keep`` best kept boxes are needed (torchvision's
        ``keep[:max_keep]``); more may be flagged.

    Returns:
      ``[K]`` bool: kept (and valid). The kept boxes in decreasing score order, ties by index,
      are torchvision's ``keep``: see :func:`select_top`.
    """
    k = boxes.shape[0]
    neg = jnp.asarray(-jnp.inf, scores.dtype)
    g_idx = jnp.asarray(np.maximum(groups, 0))
    g_valid = jnp.asarray(groups >= 0) & valid[g_idx]
    per_group = min(max_keep, groups.shape[1])

    def vanilla(_: None) -> Array:
        gb = _invalid_boxes(boxes[g_idx], g_valid)
        gs = jnp.where(g_valid, scores[g_idx], neg)
        kept, _ = jax.vmap(lambda b, s: nms(b, s, iou_threshold, per_group))(gb, gs)
        ok = kept >= 0
        kept_valid = ok & jnp.take_along_axis(g_valid, jnp.maximum(kept, 0), axis=1)
        flat = jnp.take_along_axis(g_idx, jnp.maximum(kept, 0), axis=1)
        return jnp.zeros((k,), bool).at[jnp.where(kept_valid, flat, k)].set(True, mode="drop")

    def coordinate_trick(_: None) -> Array:
        max_coordinate = jnp.max(jnp.where(valid[:, None], boxes, neg))
        offsets = idxs.astype(boxes.dtype) * (max_coordinate + jnp.ones((), boxes.dtype))
        b = _invalid_boxes(boxes + offsets[:, None], valid)
        kept, _ = nms(b, jnp.where(valid, scores, neg), iou_threshold, min(max_keep, k))
        ok = (kept >= 0) & valid[jnp.maximum(kept, 0)]
        return jnp.zeros((k,), bool).at[jnp.where(ok, kept, k)].set(True, mode="drop")

    return lax.cond(jnp.sum(valid) > _VANILLA_ABOVE, vanilla, coordinate_trick, None)


def select_top(scores: Array, keep: Array, n: int) -> tuple[Array, Array]:
    """The ``n`` best kept entries, in decreasing score order (ties: lower index first).

    Args:
      scores: ``[K]`` float; keep: ``[K]`` bool.
      n: static output size (may exceed ``K``; the rest is padding).

    Returns:
      ``(indices [n] int32, valid [n] bool)``; padded entries have index 0 and valid False.
    """
    k = scores.shape[0]
    masked = jnp.where(keep, scores, -jnp.inf)
    m = min(n, k)
    # lax.top_k returns equal values lower index first, torch's stable sort order.
    _, idx = lax.top_k(masked, m)
    ok = keep[idx]
    if n > m:
        idx = jnp.pad(idx, (0, n - m))
        ok = jnp.pad(ok, (0, n - m))
    return jnp.where(ok, idx, 0).astype(jnp.int32), ok


def filter_proposals(proposals: Array, objectness: Array, image_sizes: Array,
                     num_anchors_per_level: Sequence[int], *, pre_nms_top_n: int,
                     post_nms_top_n: int, nms_thresh: float, score_thresh: float = 0.0,
                     min_size: float = 1e-3) -> tuple[Array, Array, Array]:
    """torchvision's ``RegionProposalNetwork.filter_proposals`` with static shapes.

    Args:
      proposals: ``[N, K, 4]`` float decoded anchors (x1, y1, x2, y2), canvas pixels.
      objectness: ``[N, K]`` float logits.
      image_sizes: ``[N, 2]`` int (h, w) of each resized image on the canvas (boxes are
        clipped to it).
      num_anchors_per_level: static ``K`` per level, summing to ``K``.
      pre_nms_top_n: best logits taken per level (at most the level's anchors).
      post_nms_top_n: proposals kept per image.
      nms_thresh: IoU threshold of the per-level nms.
      score_thresh: proposals need ``sigmoid(logit) >= score_thresh``.
      min_size: proposals need both sides ``>= min_size``.

    Returns:
      ``boxes [N, post_nms_top_n, 4]``, ``scores [N, post_nms_top_n]`` (objectness
      probabilities) and ``valid [N, post_nms_top_n]`` bool; valid entries first, in
      decreasing score order (torchvision's proposals, which have data-dependent counts).
      Invalid entries are zero boxes with score 0.
    """
    sizes = [int(s) for s in num_anchors_per_level]
    if sum(sizes) != objectness.shape[1]:
        raise ValueError(f"filter_proposals: num_anchors_per_level {sizes} sums to "
                         f"{sum(sizes)}, objectness has {objectness.shape[1]} anchors")
    objectness = lax.stop_gradient(objectness)
    proposals = lax.stop_gradient(proposals)
    tops = [min(pre_nms_top_n, s) for s in sizes]
    starts = np.cumsum([0, *sizes[:-1]])
    levels = np.concatenate([np.full(t, i, np.int32) for i, t in enumerate(tops)])
    width = max(tops)
    groups = np.full((len(tops), width), -1, np.int64)
    off = 0
    for i, t in enumerate(tops):
        groups[i, :t] = np.arange(off, off + t)
        off += t

    def one_image(boxes: Array, logits: Array, size: Array) -> tuple[Array, Array, Array]:
        idx = jnp.concatenate([lax.top_k(lax.dynamic_slice_in_dim(logits, int(s), n), t)[1]
                               + int(s) for s, n, t in zip(starts, sizes, tops, strict=True)])
        b = clip_boxes_to_image(boxes[idx], (size[0], size[1]))
        prob = jax.nn.sigmoid(logits[idx])
        valid = remove_small_boxes(b, min_size) & (prob >= score_thresh)
        keep = batched_nms_keep(b, prob, jnp.asarray(levels), valid, groups, nms_thresh,
                                post_nms_top_n)
        sel, ok = select_top(prob, keep, post_nms_top_n)
        return (jnp.where(ok[:, None], b[sel], 0), jnp.where(ok, prob[sel], 0), ok)

    return map_images(one_image, proposals, objectness, jnp.asarray(image_sizes))


#: Batches up to this size are unrolled image by image (compiles ~3x faster on CPU than
#: ``vmap`` of the nms loops, and ``lax.cond`` stays a branch); larger ones are vmapped.
UNROLL_IMAGES = 4


def map_images(fn: Any, *args: Array) -> Any:
    """``jax.vmap(fn)(*args)`` over the leading (image) axis, unrolled for small batches."""
    n = args[0].shape[0]
    if n > UNROLL_IMAGES:
        return jax.vmap(fn)(*args)
    outs = [fn(*(a[i] for a in args)) for i in range(n)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)


class RPNOutput(NamedTuple):
    """What :class:`RegionProposalNetwork` returns (all arrays; ``N`` images, ``K`` anchors).

    Attributes:
      proposals: ``[N, P, 4]`` float (x1, y1, x2, y2) canvas pixels, no gradient; ``P`` =
        post-nms count of the mode (train or test).
      scores: ``[N, P]`` objectness probabilities of the proposals.
      valid: ``[N, P]`` bool.
      objectness: ``[N, K]`` logits (with gradient, for the losses).
      pred_bbox_deltas: ``[N, K, 4]`` deltas (with gradient).
      anchors: ``[K, 4]`` anchors (the same for every image).
    """

    proposals: Array
    scores: Array
    valid: Array
    objectness: Array
    pred_bbox_deltas: Array
    anchors: Array


class RegionProposalNetwork(nn.Module):
    """torchvision's ``RegionProposalNetwork`` (inference; training counts kept for losses).

    Attributes:
      head: an :class:`RPNHead` (variables under ``head/``: torchvision's ``rpn.head.*``).
      anchor_sizes, aspect_ratios: the anchor generator's, one tuple per level.
      pre_nms_top_n_train, pre_nms_top_n_test: best logits per level before nms.
      post_nms_top_n_train, post_nms_top_n_test: proposals per image after nms.
      nms_thresh: IoU threshold of the per-level nms (0.7).
      score_thresh: minimum objectness probability (0.0).
      min_size: minimum proposal side (torchvision's fixed 1e-3).
      fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction: the training
        matcher's and sampler's settings (used by the training losses, not here).

    ``__call__(features, canvas, image_sizes, train=False) -> RPNOutput``: ``features`` the
    FPN maps ``{name: [N, h, w, C]}`` (all levels, finest first), ``canvas`` the static (H, W)
    of the padded images, ``image_sizes [N, 2]`` int (h, w) of each resized image.
    """

    head: nn.Module
    anchor_sizes: tuple = DEFAULT_ANCHOR_SIZES
    aspect_ratios: tuple = DEFAULT_ASPECT_RATIOS
    pre_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 1000
    post_nms_top_n_train: int = 2000
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7
    score_thresh: float = 0.0
    min_size: float = 1e-3
    fg_iou_thresh: float = 0.7
    bg_iou_thresh: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5

    @property
    def anchor_generator(self) -> AnchorGenerator:
        return AnchorGenerator(self.anchor_sizes, self.aspect_ratios)

    @property
    def box_coder(self) -> BoxCoder:
        return BoxCoder((1.0, 1.0, 1.0, 1.0))

    def __call__(self, features: Mapping[str, Array], canvas: tuple[int, int],
                 image_sizes: Array, train: bool = False) -> RPNOutput:
        objectness, pred_bbox_deltas, anchors, boxes, per_level = self.predict(features,
                                                                             canvas)
        props, scores, valid = filter_proposals(
            boxes, objectness, image_sizes, per_level, **self.filter_settings(train))
        return RPNOutput(props, scores, valid, objectness, pred_bbox_deltas, anchors)

    def filter_settings(self, train: bool = False) -> dict[str, Any]:
        """Keyword arguments of :func:`filter_proposals` in this mode."""
        return {"pre_nms_top_n": self.pre_nms_top_n_train if train else self.pre_nms_top_n_test,
                "post_nms_top_n": (self.post_nms_top_n_train if train
                                   else self.post_nms_top_n_test),
                "nms_thresh": self.nms_thresh, "score_thresh": self.score_thresh,
                "min_size": self.min_size}

    def predict(self, features: Mapping[str, Array], canvas: tuple[int, int]
                ) -> tuple[Array, Array, Array, Array, tuple[int, ...]]:
        """The head and the decoding, before :func:`filter_proposals`.

        Returns ``(objectness [N, K], pred_bbox_deltas [N, K, 4], anchors [K, 4], boxes [N, K,
        4] (decoded, no gradient), anchors per level (static ints))``.
        """
        maps = list(features.values())
        logits, deltas = self.head(maps)
        objectness, pred_bbox_deltas = flatten_head_outputs(logits, deltas)
        grids = [tuple(m.shape[1:3]) for m in maps]
        anchors = self.anchor_generator.anchors(tuple(canvas), grids, objectness.dtype)
        n, k = objectness.shape
        # torchvision decodes detached deltas: proposals are constants for the box head.
        boxes = self.box_coder.decode_single(
            lax.stop_gradient(pred_bbox_deltas).reshape(n * k, 4),
            jnp.broadcast_to(anchors, (n, k, 4)).reshape(n * k, 4)).reshape(n, k, 4)
        per_level = tuple(g[0] * g[1] * a for g, a in
                          zip(grids, self.anchor_generator.num_anchors_per_location(),
                              strict=True))
        return objectness, pred_bbox_deltas, anchors, boxes, per_level

