"""R-CNN's building blocks: warped regions, fine-tuning samples, SVMs, box regression.

Girshick, Donahue, Darrell and Malik, "Rich feature hierarchies for accurate object detection
and semantic segmentation", CVPR 2014 (R-CNN), in static shapes:

1. Region proposals (:mod:`~jaxvision.detection.proposals`, selective search, ~2,000/image).
2. :func:`warp_regions`: each proposal dilated so that ``context_padding`` pixels of context
   surround it at the warped size, cropped and warped anisotropically to the CNN's input
   (appendix A), the area outside the image filled with the mean (0 after mean subtraction).
3. :func:`finetune_samples`: the classifier is fine-tuned on N + 1 classes, proposals with
   IoU >= 0.5 to a ground-truth box positive for its class, the rest background, mini-batches
   of 128 with 32 positives (section 2.3).
4. Features of every region cached on disk (:class:`FeatureCache`, :func:`region_features`).
5. :func:`train_svms`: one linear SVM per class (hinge loss, L2 regularised), positives the
   ground-truth boxes, negatives the proposals below 0.3 IoU with every box of the class,
   with hard-negative mining; all classes at once (liblinear's dual coordinate descent, as
   R-CNN, every class's variables updated together).
6. :func:`fit_box_regressors` / :func:`apply_box_regression`: class-specific ridge regression
   of the box offsets from the features (appendix C, lambda = 1000, IoU > 0.6).
7. :func:`rcnn_detections`: score threshold and per-class NMS (0.3 in R-CNN) into a fixed
   number of detections.

Every array function works on one image with fixed shapes (padded rows and a validity mask),
so it jit-compiles once per shape; the SVM and regression fits work on the cached features of
a whole data set, as R-CNN's post-hoc stages do.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.checks import check_boxes, check_rank
from jaxvision.detection.sampling import (
    BalancedPositiveNegativeSampler,
    Matcher,
    TrainingSamples,
    select_training_samples,
)
from jaxvision.ops.boxes import BoxCoder, box_iou, clip_boxes_to_image
from jaxvision.ops.nms import batched_nms

__all__ = [
    "BoxRegressors",
    "Detections",
    "FeatureCache",
    "LinearSVMs",
    "MiningRound",
    "RegionSet",
    "SVMTraining",
    "apply_box_regression",
    "context_boxes",
    "feature_norm_scale",
    "finetune_samples",
    "fit_box_regressors",
    "fit_svms",
    "image_regions",
    "rcnn_detections",
    "region_features",
    "svm_objective",
    "train_svms",
    "warp_regions",
]

Array = jax.Array

#: R-CNN's box-regression parametrisation: (tx, ty, tw, th) without weights (appendix C).
RCNN_BOX_CODER = BoxCoder((1.0, 1.0, 1.0, 1.0))


# --------------------------------------------------------------------------------------------
# Crop and warp


def context_boxes(boxes: Array, out_size: int, context_padding: int) -> Array:
    """Boxes dilated about their centres so that, warped to ``out_size``, the original box
    fills ``[p, out_size - p]`` (R-CNN appendix A), each axis on its own.

    Args:
      boxes: ``[K, 4]`` floating (x1, y1, x2, y2).
      out_size: warped side length S.
      context_padding: ``p``, pixels of context at the warped size (R-CNN: 16 at 227).

    Returns:
      ``[K, 4]`` dilated boxes, not clipped to any image.
    """
    if not 0 <= 2 * context_padding < out_size:
        raise ValueError(f"context_boxes: context_padding must be in [0, out_size / 2), got "
                         f"{context_padding} for out_size {out_size}")
    b = jnp.asarray(boxes)
    scale = out_size / (out_size - 2 * context_padding)
    centre = 0.5 * (b[:, :2] + b[:, 2:])
    half = 0.5 * (b[:, 2:] - b[:, :2]) * scale
    return jnp.concatenate([centre - half, centre + half], axis=1)


def warp_regions(image: Array, boxes: Array, valid: Array | None = None, *,
                 out_size: int = 224, context_padding: int = 16,
                 fill: float | Array = 0.0) -> Array:
    """R-CNN's "crop with context and warp": every box to an ``out_size`` square.

    Each box is dilated by :func:`context_boxes`, and output pixel ``(i, j)`` samples the
    image bilinearly at the centre of its cell of the dilated box, ``x = X1 + (j + 0.5) *
    (X2 - X1) / S`` (pixel centres at half-integers, as ``roi_align(aligned=True)`` and PIL's
    ``resize(box=...)``), without antialiasing (as R-CNN's ``imresize(..., 'antialiasing',
    false)``). Samples up to the image border clamp to the edge pixel; samples outside the
    image take ``fill`` (R-CNN fills with the mean image, i.e. 0 once the mean is subtracted).

    Args:
      image: ``[H, W, C]`` floating (or uint8, computed in float32) image, normalised as the
        CNN expects.
      boxes: ``[K, 4]`` floating (x1, y1, x2, y2) in the image's pixels.
      valid: ``[K]`` bool; padding rows come out all zeros (default: all valid).
      out_size: S, the CNN's input side (224 for torchvision's classifiers; R-CNN's Caffe
        AlexNet took 227).
      context_padding: p (R-CNN: 16); 0 warps the box itself.
      fill: the value outside the image, a scalar or ``[C]``.

    Returns:
      ``[K, S, S, C]`` warped regions, float32 (the image's dtype if floating).
    """
    op = "warp_regions"
    check_rank(image, 3, "image", op, layout="[H, W, C]")
    check_boxes(boxes, "boxes", op)
    image = jnp.asarray(image)
    if not jnp.issubdtype(image.dtype, jnp.floating):
        image = image.astype(jnp.float32)
    h, w, c = image.shape
    k = boxes.shape[0]
    if valid is not None:
        check_rank(valid, 1, "valid", op, layout="[K]")
        if valid.shape[0] != k:
            raise ValueError(f"{op}: valid must have one entry per box ({k}), got shape "
                             f"{tuple(valid.shape)}")
    d = context_boxes(jnp.asarray(boxes).astype(image.dtype), out_size, context_padding)
    t = (jnp.arange(out_size, dtype=image.dtype) + 0.5) / out_size
    xs = d[:, 0:1] + t * (d[:, 2:3] - d[:, 0:1])  # [K, S] sample x in continuous coords
    ys = d[:, 1:2] + t * (d[:, 3:4] - d[:, 1:2])

    def axis(pos: Array, size: int) -> tuple[Array, Array, Array, Array]:
        inside = (pos >= 0) & (pos <= size)
        u = jnp.clip(pos - 0.5, 0, size - 1)  # pixel-centre index, edge-clamped
        lo = jnp.floor(u).astype(jnp.int32)
        hi = jnp.minimum(lo + 1, size - 1)
        return lo, hi, u - lo, inside

    x0, x1, fx, inx = axis(xs, w)
    y0, y1, fy, iny = axis(ys, h)
    yy0, yy1 = y0[:, :, None], y1[:, :, None]
    xx0, xx1 = x0[:, None, :], x1[:, None, :]
    fx4, fy4 = fx[:, None, :, None], fy[:, :, None, None]
    top = image[yy0, xx0] * (1 - fx4) + image[yy0, xx1] * fx4
    bottom = image[yy1, xx0] * (1 - fx4) + image[yy1, xx1] * fx4
    out = top * (1 - fy4) + bottom * fy4
    inside = (iny[:, :, None] & inx[:, None, :])[..., None]
    fill = jnp.broadcast_to(jnp.asarray(fill, image.dtype), (c,))
    out = jnp.where(inside, out, fill)
    if valid is not None:
        out = jnp.where(jnp.asarray(valid, bool)[:, None, None, None], out, 0)
    return out


# --------------------------------------------------------------------------------------------
# Labels: fine-tuning samples and the regions kept for the SVMs and box regression


def finetune_samples(proposals: Array, proposal_valid: Array, gt_boxes: Array,
                     gt_labels: Array, gt_valid: Array, key: Array, *,
                     batch_size: int = 128, positive_fraction: float = 0.25,
                     fg_iou: float = 0.5) -> TrainingSamples:
    """The regions of one image that fine-tune the CNN on N + 1 classes (R-CNN section 2.3).

    Proposals (with the ground-truth boxes added, as R-CNN's window file has them) of IoU >=
    ``fg_iou`` with a box are positives of its class, all others background (no ignored band);
    at most ``int(batch_size * positive_fraction)`` positives are drawn uniformly, negatives
    fill the rest. R-CNN drew 32 + 96 windows over many images per mini-batch; with fixed
    shapes a batch is ``B`` images of ``batch_size / B`` rows (``jax.vmap`` with one key each).

    Args:
      proposals: ``[P, 4]`` floating (x1, y1, x2, y2); proposal_valid: ``[P]`` bool.
      gt_boxes: ``[G, 4]`` floating; gt_labels: ``[G]`` int classes 1..C; gt_valid: ``[G]``.
      key: a ``jax.random`` key.
      batch_size: rows of the result (R-CNN: 128).
      positive_fraction: largest share of positives (R-CNN: 32 / 128).
      fg_iou: the positive threshold (R-CNN: 0.5).

    Returns:
      :class:`~jaxvision.detection.sampling.TrainingSamples` of ``batch_size`` rows:
      ``proposals`` to warp, ``labels`` (0 background) to train on, ``valid``; its
      ``regression_targets`` are R-CNN's unweighted ``(tx, ty, tw, th)``.
    """
    return select_training_samples(
        proposals, proposal_valid, gt_boxes, gt_labels, gt_valid, key,
        matcher=Matcher(fg_iou, fg_iou, False),
        sampler=BalancedPositiveNegativeSampler(batch_size, positive_fraction),
        box_coder=RCNN_BOX_CODER)


class RegionSet(NamedTuple):
    """The regions of one image whose features R-CNN caches: ground truth first, then the
    proposals (``R = G + P`` rows).

    boxes: ``[R, 4]`` float32; valid: ``[R]`` bool; gt_label: ``[R]`` int32, the class of a
    ground-truth row, 0 on proposals and padding; class_iou: ``[R, C]`` float32, the best IoU
    with the boxes of each class (0 where the image has none); target_box: ``[R, 4]`` the box of
    best IoU (any class); target_label: ``[R]`` int32 its class (0 without boxes);
    target_iou: ``[R]`` float32 that IoU.
    """

    boxes: Array
    valid: Array
    gt_label: Array
    class_iou: Array
    target_box: Array
    target_label: Array
    target_iou: Array


def image_regions(proposals: Array, proposal_valid: Array, gt_boxes: Array, gt_labels: Array,
                  gt_valid: Array, num_classes: int) -> RegionSet:
    """Ground truth and proposals of one image with the overlaps the SVMs and regressors use.

    Args:
      proposals: ``[P, 4]`` floating; proposal_valid: ``[P]`` bool.
      gt_boxes: ``[G, 4]`` floating; gt_labels: ``[G]`` int 1..C; gt_valid: ``[G]`` bool.
      num_classes: C, object classes (no background).

    Returns:
      :class:`RegionSet` with ``R = G + P`` rows.
    """
    op = "image_regions"
    check_boxes(proposals, "proposals", op)
    check_boxes(gt_boxes, "gt_boxes", op)
    gt_valid = jnp.asarray(gt_valid, bool)
    gt_labels = jnp.asarray(gt_labels, jnp.int32)
    boxes = jnp.concatenate([jnp.asarray(gt_boxes, jnp.float32),
                             jnp.asarray(proposals, jnp.float32)])
    valid = jnp.concatenate([gt_valid, jnp.asarray(proposal_valid, bool)])
    g = gt_boxes.shape[0]
    gt_label = jnp.concatenate([jnp.where(gt_valid, gt_labels, 0),
                                jnp.zeros(proposals.shape[0], jnp.int32)])
    if g == 0:
        r = boxes.shape[0]
        return RegionSet(boxes, valid, gt_label, jnp.zeros((r, num_classes), jnp.float32),
                         jnp.zeros((r, 4), jnp.float32), jnp.zeros(r, jnp.int32),
                         jnp.zeros(r, jnp.float32))
    iou = jnp.where(gt_valid[:, None], box_iou(boxes[:g], boxes), -1.0)  # [G, R]
    of_class = (gt_labels[:, None] == jnp.arange(1, num_classes + 1)) & gt_valid[:, None]
    class_iou = jnp.max(jnp.where(of_class[:, None, :], iou[:, :, None], 0.0), axis=0)
    best = jnp.argmax(iou, axis=0)
    best_iou = jnp.maximum(jnp.max(iou, axis=0), 0.0)
    any_gt = jnp.any(gt_valid)
    target_box = jnp.where(any_gt, boxes[best], 0.0)
    target_label = jnp.where(any_gt, gt_labels[best], 0)
    return RegionSet(boxes, valid, gt_label, class_iou.astype(jnp.float32), target_box,
                     target_label.astype(jnp.int32), best_iou.astype(jnp.float32))


# --------------------------------------------------------------------------------------------
# Features and their disk cache


def region_features(feature_fn: Callable[[Array], Array], image: Array, boxes: Array,
                    valid: Array, *, out_size: int = 224, context_padding: int = 16,
                    fill: float | Array = 0.0, chunk: int = 128) -> np.ndarray:
    """CNN features of every region of one image: warp, then ``feature_fn``, ``chunk`` at a time.

    Args:
      feature_fn: ``[B, S, S, C] float32 -> [B, D]``, e.g. a jitted ``model.apply`` up to
        fc7 (R-CNN) or pool5; called on batches of exactly ``chunk`` regions (the last one
        padded), so it compiles once.
      image: ``[H, W, C]`` the image, normalised for the CNN.
      boxes: ``[K, 4]`` floating; valid: ``[K]`` bool.
      out_size, context_padding, fill: as :func:`warp_regions`.
      chunk: regions per call.

    Returns:
      ``[K, D]`` numpy features (zeros on padding rows).
    """
    boxes = np.asarray(boxes, np.float32)
    valid = np.asarray(valid, bool)
    k = boxes.shape[0]
    n = -(-k // chunk) * chunk
    boxes_p = np.zeros((n, 4), np.float32)
    boxes_p[:k] = boxes
    valid_p = np.zeros(n, bool)
    valid_p[:k] = valid
    image = jnp.asarray(image)
    fill = jnp.asarray(fill, image.dtype if jnp.issubdtype(image.dtype, jnp.floating)
                       else jnp.float32)
    parts = []
    for s in range(0, n, chunk):
        if not valid_p[s:s + chunk].any():
            parts.append(None)
            continue
        crops = _warp_jit(image, boxes_p[s:s + chunk], valid_p[s:s + chunk],
                          out_size=out_size, context_padding=context_padding, fill=fill)
        parts.append(np.asarray(feature_fn(crops)))
    d = next(p for p in parts if p is not None).shape[1] if any(
        p is not None for p in parts) else 0
    feats = np.concatenate([p if p is not None else np.zeros((chunk, d), np.float32)
                            for p in parts])[:k]
    return np.where(valid[:, None], feats, 0).astype(np.float32)


_warp_jit = jax.jit(warp_regions, static_argnames=("out_size", "context_padding"))


class FeatureCache:
    """R-CNN's on-disk feature cache: one ``<name>.npz`` shard of arrays per image (or batch).

    Writes are atomic (a temporary file in the folder, then renamed), so a killed extraction
    leaves whole shards only and resumes by skipping the names present.

    Args:
      cache_dir: the folder (created on first write).
    """

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.cache_dir = Path(os.fspath(cache_dir)).expanduser()

    def _path(self, name: str) -> Path:
        if not name or "/" in name or os.sep in name or name.startswith("."):
            raise ValueError(f"FeatureCache: shard name must be a plain file stem, got "
                             f"{name!r}")
        return self.cache_dir / f"{name}.npz"

    def __contains__(self, name: str) -> bool:
        return self._path(name).is_file()

    def write(self, name: str, **arrays: np.ndarray) -> Path:
        """Stores ``arrays`` as shard ``name`` (replacing it), atomically."""
        path = self._path(name)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz.tmp", dir=self.cache_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def read(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of shard ``name``."""
        path = self._path(name)
        if not path.is_file():
            raise FileNotFoundError(f"FeatureCache: no shard {name!r} ({path})")
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def names(self) -> list[str]:
        """Shard names, sorted."""
        if not self.cache_dir.is_dir():
            return []
        return sorted(p.stem for p in self.cache_dir.glob("*.npz"))

    def load_all(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Shards concatenated along their first axis (all shards, or ``names``)."""
        names = self.names() if names is None else list(names)
        if not names:
            raise FileNotFoundError(f"FeatureCache: no shard in {self.cache_dir}")
        shards = [self.read(n) for n in names]
        return {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}

    def size_bytes(self) -> int:
        """Bytes the shards take on disk (R-CNN's VOC 2007 fc7 cache: ~200 GB)."""
        if not self.cache_dir.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.cache_dir.glob("*.npz"))


def feature_norm_scale(features: np.ndarray, valid: np.ndarray | None = None,
                       target_norm: float = 20.0) -> float:
    """The factor that makes the mean L2 norm of the features ``target_norm`` (R-CNN scales
    its cached fc7 features to a mean norm of 20 before training the SVMs with C = 0.001)."""
    f = np.asarray(features, np.float32)
    if valid is not None:
        f = f[np.asarray(valid, bool)]
    mean = float(np.mean(np.linalg.norm(f, axis=1))) if len(f) else 0.0
    return target_norm / mean if mean > 0 else 1.0


# --------------------------------------------------------------------------------------------
# Linear SVMs with hard-negative mining


class LinearSVMs(NamedTuple):
    """One linear SVM per class: ``score = features @ W + b``; W: ``[D, C]``, b: ``[C]``."""

    W: Array
    b: Array


@jax.jit
def svm_objective(svms: LinearSVMs, features: Array, y: Array, mask: Array, *,
                  C: float, pos_weight: float = 1.0, bias_scale: float = 10.0) -> Array:
    """Each class's primal objective
    ``0.5 (|w_c|^2 + (b_c / bias_scale)^2) + C sum_i m_ic a_ic max(0, 1 - y_ic s_ic)``.

    ``s_ic = x_i . w_c + b_c``; ``a_ic`` is ``pos_weight`` on positives, 1 on negatives. The
    bias is regularised as liblinear's (R-CNN's solver) ``-B bias_scale``: a constant feature
    ``bias_scale`` with weight ``b_c / bias_scale``.

    Args:
      svms: :class:`LinearSVMs` (``W [D, C]``, ``b [C]``).
      features: ``[N, D]`` floating.
      y: ``[N, C]`` labels +1 / -1; mask: ``[N, C]`` bool, the samples of each class's problem.
      C: the hinge weight (R-CNN: 0.001 on features of mean norm 20).
      pos_weight: weight of positives (R-CNN: 2).
      bias_scale: the constant feature (R-CNN: 10).

    Returns:
      ``[C]`` float32 objectives.
    """
    scores = jnp.asarray(features) @ svms.W + svms.b
    hinge = jnp.maximum(0.0, 1.0 - y * scores)
    a = jnp.where(y > 0, pos_weight, 1.0)
    reg = 0.5 * (jnp.sum(svms.W * svms.W, axis=0) + (svms.b / bias_scale) ** 2)
    return reg + C * jnp.sum(jnp.where(mask, a * hinge, 0.0), axis=0)


def _augment(features: Array, bias_scale: Array) -> Array:
    x = jnp.asarray(features, jnp.float32)
    return jnp.concatenate([x, jnp.full((x.shape[0], 1), 1.0, x.dtype) * bias_scale], axis=1)


@jax.jit
def _fit_dual(xt: Array, y: Array, upper: Array, alpha0: Array, order: Array) -> Array:
    """Dual coordinate descent (Hsieh et al., ICML 2008; liblinear ``-s 3``) on
    ``max 1.a - 0.5 |X~^T (a * y)|^2, 0 <= a <= upper``, every class (column) at once: each
    step solves exactly for one sample's dual variables of all classes. ``order``: ``[T]`` the
    samples in visiting order. Returns the dual variables ``[N, C]``."""
    qii = jnp.maximum(jnp.sum(xt * xt, axis=1), 1e-12)

    def step(j, carry):
        alpha, w = carry
        i = order[j]
        xi, yi, ai = xt[i], y[i], alpha[i]
        grad = yi * (xi @ w) - 1.0  # [C]
        new = jnp.clip(ai - grad / qii[i], 0.0, upper[i])
        return alpha.at[i].set(new), w + xi[:, None] * ((new - ai) * yi)[None, :]

    w0 = xt.T @ (alpha0 * y)
    alpha, _ = jax.lax.fori_loop(0, order.shape[0], step, (alpha0, w0))
    return alpha


def _primal(xt: Array, y: Array, alpha: Array, bias_scale: Array) -> LinearSVMs:
    w = xt.T @ (alpha * y)
    return LinearSVMs(w[:-1], w[-1] * bias_scale)


def fit_svms(features: Array, y: Array, mask: Array, *, C: float = 1e-3,
             pos_weight: float = 2.0, bias_scale: float = 10.0, epochs: int = 20,
             alpha0: Array | None = None, seed: int = 0) -> LinearSVMs:
    """Trains one linear SVM per class, all classes at once, on :func:`svm_objective`.

    R-CNN trained its SVMs with liblinear's dual solver (``-s 3``: L2-regularised hinge loss,
    ``-B 10``, ``-w1 2``). This runs the same algorithm, dual coordinate descent on
    ``max_a 1.a - 0.5 |X~^T (a * y)|^2`` with ``0 <= a_i <= C * weight_i`` (``X~`` the features
    with the bias column), in one jitted loop, every class updated at each sample (the
    classes are independent problems sharing the features); the primal ``w = X~^T (a * y)``.
    (Measured alternatives: ``optax.lbfgs`` on the primal hinge took 15-20 s to compile on
    this CPU; full-batch accelerated projected gradient on the dual needed thousands of
    steps for the objective 20 epochs reach at R-CNN's C = 0.001 on norm-20 features.)

    Args:
      features: ``[N, D]`` floating (the cached region features).
      y: ``[N, C]`` +1 / -1; mask: ``[N, C]`` bool, which samples each class trains on.
      C, pos_weight, bias_scale: see :func:`svm_objective`.
      epochs: passes over the samples, each in a fresh random order.
      alpha0: ``[N, C]`` dual warm start (clipped into the box; 0 outside ``mask``), default
        zeros.
      seed: seed of the visiting order.

    Returns:
      :class:`LinearSVMs` (``W [D, C]``, ``b [C]``).
    """
    return _fit_svms(features, y, mask, C=C, pos_weight=pos_weight, bias_scale=bias_scale,
                     epochs=epochs, alpha0=alpha0, seed=seed)[0]


def _fit_svms(features: Array, y: Array, mask: Array, *, C: float, pos_weight: float,
              bias_scale: float, epochs: int, alpha0: Array | None, seed: int
              ) -> tuple[LinearSVMs, Array]:
    op = "fit_svms"
    check_rank(features, 2, "features", op, layout="[N, D]")
    n = features.shape[0]
    if y.ndim != 2 or y.shape[0] != n or mask.shape != y.shape:
        raise ValueError(f"{op}: y and mask must be [N, C] with N = {n}, got "
                         f"{tuple(y.shape)} and {tuple(mask.shape)}")
    if not C > 0:
        raise ValueError(f"{op}: C must be > 0, got {C!r}")
    alpha0 = jnp.zeros(y.shape, jnp.float32) if alpha0 is None else alpha0
    # Only samples some class trains on are visited (the others' dual variables stay 0).
    active = np.flatnonzero(np.asarray(mask).any(axis=1))
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(active) for _ in range(epochs)] + [[]])
    # Padded to a power of two with visits of an extra all-zero row (a no-op), so the
    # rounds of hard-negative mining, whose caches differ in size, share few compilations.
    length = 1 << max(int(len(order)) - 1, 1).bit_length()
    order = np.concatenate([order, np.full(length - len(order), n)]).astype(np.int32)
    return _fit_svms_jit(jnp.asarray(features, jnp.float32), jnp.asarray(y, jnp.float32),
                         jnp.asarray(mask, bool), jnp.asarray(alpha0, jnp.float32),
                         jnp.asarray(order), jnp.float32(C), jnp.float32(pos_weight),
                         jnp.float32(bias_scale))


@jax.jit
def _fit_svms_jit(features: Array, y: Array, mask: Array, alpha0: Array, order: Array,
                  C: Array, pos_weight: Array, bias_scale: Array
                  ) -> tuple[LinearSVMs, Array]:
    n = features.shape[0]
    xt = _augment(features, bias_scale)
    upper = C * jnp.where(y > 0, pos_weight, 1.0) * mask
    alpha0 = jnp.clip(alpha0, 0.0, upper)
    pad = lambda a: jnp.concatenate([a, jnp.zeros((1,) + a.shape[1:], a.dtype)])  # noqa: E731
    alpha = _fit_dual(pad(xt), pad(y), pad(upper), pad(alpha0), order)[:n]
    return _primal(xt, y, alpha, bias_scale), alpha


class MiningRound(NamedTuple):
    """One round of hard-negative mining.

    svms: the SVMs trained on this round's cache; cache: ``[N, C]`` bool, the negatives they
    were trained on; added: ``[N, C]`` bool, negatives outside the cache scoring above
    ``hard_threshold`` under ``svms`` (added for the next round); evicted: ``[N, C]`` bool,
    cached negatives scoring below ``evict_threshold`` (dropped for the next round);
    negative_hinge: ``[C]`` summed hinge loss of ``svms`` over *all* eligible negatives;
    objective: ``[C]`` :func:`svm_objective` over the positives and all eligible negatives.
    """

    svms: LinearSVMs
    cache: np.ndarray
    added: np.ndarray
    evicted: np.ndarray
    negative_hinge: np.ndarray
    objective: np.ndarray


class SVMTraining(NamedTuple):
    """The result of :func:`train_svms`: the final ``svms`` and the mining ``rounds``."""

    svms: LinearSVMs
    rounds: list[MiningRound]


def _scores(features: np.ndarray, svms: LinearSVMs, chunk: int = 65536) -> np.ndarray:
    w, b = np.asarray(svms.W), np.asarray(svms.b)
    return np.concatenate([features[s:s + chunk] @ w + b
                           for s in range(0, max(len(features), 1), chunk)])


def train_svms(features: np.ndarray, gt_label: np.ndarray, class_iou: np.ndarray,
               valid: np.ndarray, num_classes: int, *, C: float = 1e-3,
               pos_weight: float = 2.0, neg_iou: float = 0.3, initial_negatives: int = 2000,
               rounds: int = 3, hard_threshold: float = -1.0,
               evict_threshold: float | None = -1.2, bias_scale: float = 10.0,
               epochs: int = 20, seed: int = 0) -> SVMTraining:
    """R-CNN's per-class linear SVMs with hard-negative mining (section 2.3, appendix B).

    For class c the positives are the ground-truth boxes of c (``gt_label == c + 1``), the
    eligible negatives every valid region whose IoU with all boxes of c is below ``neg_iou``
    (boxes of other classes included); regions in between are not used. Round 0 trains on the
    positives and a random ``initial_negatives`` of the eligible negatives of each class (the
    "cache"); after each round the eligible negatives outside the cache that violate the margin
    (score > ``hard_threshold``) are added, cached ones scoring below ``evict_threshold`` are
    dropped, and the SVMs retrain from where they were, until no violator is left or after
    ``rounds`` more rounds. R-CNN mined over images one at a time; here the whole cached set is
    scored at once between rounds, which adds the same violators in fewer retrainings.

    Args:
      features: ``[N, D]`` float region features of the whole training set (scaled, e.g. by
        :func:`feature_norm_scale`); gt_label: ``[N]`` int, class 1..C of a ground-truth row,
        0 otherwise; class_iou: ``[N, C]`` best IoU with each class's boxes; valid: ``[N]``
        bool. :func:`image_regions` makes the last three per image.
      num_classes: C.
      C, pos_weight, bias_scale: see :func:`svm_objective` (R-CNN: 0.001, 2 and 10).
      neg_iou: negatives overlap every box of the class less than this (R-CNN: 0.3).
      initial_negatives: size of each class's first cache.
      rounds: mining rounds after the first fit.
      hard_threshold: margin violators score above this (R-CNN: -1).
      evict_threshold: cached negatives scoring below this leave the cache (R-CNN: -1.2);
        None keeps them.
      epochs: :func:`fit_svms` passes per fit (warm-started from the previous round).
      seed: seed of the initial cache.

    Returns:
      :class:`SVMTraining`: the final SVMs (``W [D, C]``, ``b [C]``) and one
      :class:`MiningRound` per fit.
    """
    features = np.asarray(features, np.float32)
    gt_label = np.asarray(gt_label)
    class_iou = np.asarray(class_iou, np.float32)
    valid = np.asarray(valid, bool)
    n = features.shape[0]
    if class_iou.shape != (n, num_classes) or gt_label.shape != (n,) or valid.shape != (n,):
        raise ValueError(f"train_svms: gt_label [N], class_iou [N, C] and valid [N] must match "
                         f"features [N, D] = {features.shape} with C = {num_classes}, got "
                         f"{gt_label.shape}, {class_iou.shape}, {valid.shape}")
    classes = np.arange(1, num_classes + 1)
    positive = valid[:, None] & (gt_label[:, None] == classes)
    eligible = valid[:, None] & (class_iou < neg_iou) & ~positive
    y = np.where(positive, 1.0, -1.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    priority = rng.random((n, num_classes))
    cache = np.zeros_like(eligible)
    for c in range(num_classes):
        cand = np.flatnonzero(eligible[:, c])
        pick = cand[np.argsort(-priority[cand, c], kind="stable")[:initial_negatives]]
        cache[pick, c] = True
    full = positive | eligible
    alpha = None
    history: list[MiningRound] = []
    for r in range(rounds + 1):
        train_mask = positive | cache
        if alpha is not None:
            alpha = jnp.where(jnp.asarray(train_mask), alpha, 0.0)
        svms, alpha = _fit_svms(features, y, train_mask, C=C, pos_weight=pos_weight,
                                bias_scale=bias_scale, epochs=epochs, alpha0=alpha,
                                seed=seed + r)
        scores = _scores(features, svms)
        hinge = np.maximum(0.0, 1.0 + scores)
        negative_hinge = np.sum(np.where(eligible, hinge, 0.0), axis=0)
        objective = np.asarray(svm_objective(svms, features, y, full, C=C,
                                             pos_weight=pos_weight, bias_scale=bias_scale))
        added = eligible & ~cache & (scores > hard_threshold)
        evicted = (cache & (scores < evict_threshold) if evict_threshold is not None
                   else np.zeros_like(cache))
        if r == rounds:
            added = np.zeros_like(cache)
            evicted = np.zeros_like(cache)
        history.append(MiningRound(svms, cache, added, evicted, negative_hinge, objective))
        if not added.any():
            break
        cache = (cache & ~evicted) | added
    return SVMTraining(svms, history)


# --------------------------------------------------------------------------------------------
# Class-specific bounding-box regression


class BoxRegressors(NamedTuple):
    """Ridge regressors of R-CNN's box offsets per class: ``t = features @ W[c] + b[c]``.

    W: ``[C, D, 4]``; b: ``[C, 4]``; codes are :data:`RCNN_BOX_CODER`'s ``(tx, ty, tw, th)``.
    """

    W: Array
    b: Array


def fit_box_regressors(features: Array, boxes: Array, target_box: Array, target_label: Array,
                       target_iou: Array, valid: Array, num_classes: int, *,
                       lam: float = 1000.0, min_iou: float = 0.6) -> BoxRegressors:
    """R-CNN's class-specific bounding-box regression (appendix C), in closed form.

    For class c the samples are the valid regions whose best-overlapping box is of class c
    with IoU > ``min_iou``; the targets are ``BoxCoder((1, 1, 1, 1)).encode(target, box)``;
    ``W[c] = argmin |X W + b - T|^2 + lam |W|^2`` (the bias unregularised), solved as
    ``(Xc^T Xc + lam I) W = Xc^T Tc`` on the centred data. A class without samples gets the
    identity (W = 0, b = 0).

    Args:
      features: ``[N, D]`` floating (R-CNN: pool5).
      boxes: ``[N, 4]`` the regions; target_box: ``[N, 4]``; target_label: ``[N]`` int;
      target_iou: ``[N]``; valid: ``[N]`` bool (:func:`image_regions` makes them).
      num_classes: C.
      lam: the ridge weight (R-CNN: 1000).
      min_iou: the overlap a region needs to train the regressor (R-CNN: 0.6).

    Returns:
      :class:`BoxRegressors`.
    """
    op = "fit_box_regressors"
    check_rank(features, 2, "features", op, layout="[N, D]")
    check_boxes(boxes, "boxes", op)
    check_boxes(target_box, "target_box", op)
    return _ridge(jnp.asarray(features, jnp.float32), jnp.asarray(boxes, jnp.float32),
                  jnp.asarray(target_box, jnp.float32), jnp.asarray(target_label),
                  jnp.asarray(target_iou, jnp.float32), jnp.asarray(valid, bool),
                  jnp.asarray(lam, jnp.float32), jnp.asarray(min_iou, jnp.float32),
                  num_classes)


@functools.partial(jax.jit, static_argnums=(8,))
def _ridge(x: Array, boxes: Array, target_box: Array, target_label: Array, target_iou: Array,
           valid: Array, lam: Array, min_iou: Array, num_classes: int) -> BoxRegressors:
    use = (valid & (target_iou > min_iou)
           & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    safe = jnp.where(use[:, None], boxes, jnp.asarray([0.0, 0.0, 1.0, 1.0]))
    safe_t = jnp.where(use[:, None], target_box, safe)
    t = RCNN_BOX_CODER.encode_single(safe_t, safe)
    m = (use[:, None] & (target_label[:, None] == jnp.arange(1, num_classes + 1))
         ).astype(jnp.float32)  # [N, C]
    d = x.shape[1]
    count = jnp.sum(m, axis=0)  # [C]
    denom = jnp.maximum(count, 1.0)[:, None]
    mx = (m.T @ x) / denom  # [C, D]
    mt = (m.T @ t) / denom  # [C, 4]

    def one(mc, mxc, mtc):
        xc = (x - mxc) * mc[:, None]
        tc = (t - mtc) * mc[:, None]
        a = xc.T @ xc + lam * jnp.eye(d, dtype=x.dtype)
        w = jnp.linalg.solve(a, xc.T @ tc)
        return w, mtc - mxc @ w

    w, b = jax.vmap(one)(m.T, mx, mt)
    has = (count > 0)
    return BoxRegressors(jnp.where(has[:, None, None], w, 0.0), jnp.where(has[:, None], b, 0.0))


def apply_box_regression(features: Array, boxes: Array, regressors: BoxRegressors) -> Array:
    """Every class's regressed box of each region.

    Args:
      features: ``[K, D]`` floating; boxes: ``[K, 4]`` floating (x1, y1, x2, y2).
      regressors: :class:`BoxRegressors` (``W [C, D, 4]``, ``b [C, 4]``).

    Returns:
      ``[K, C, 4]`` float32 boxes (not clipped; :func:`rcnn_detections` clips them).
    """
    op = "apply_box_regression"
    check_rank(features, 2, "features", op, layout="[K, D]")
    check_boxes(boxes, "boxes", op)
    codes = jnp.einsum("kd,cdj->kcj", jnp.asarray(features, jnp.float32), regressors.W)
    codes = codes + regressors.b  # [K, C, 4]
    k, c = codes.shape[:2]
    out = RCNN_BOX_CODER.decode_single(codes.reshape(k, c * 4), jnp.asarray(boxes, jnp.float32))
    return out.reshape(k, c, 4)


# --------------------------------------------------------------------------------------------
# Detections


class Detections(NamedTuple):
    """Fixed-size detections of one image, best first: boxes ``[M, 4]`` float32, scores
    ``[M]`` float32, labels ``[M]`` int32 (1..C), valid ``[M]`` bool (real rows first)."""

    boxes: Array
    scores: Array
    labels: Array
    valid: Array


def rcnn_detections(boxes: Array, scores: Array, valid: Array, image_size: tuple[int, int], *,
                    score_threshold: float = 0.0, nms_threshold: float = 0.3,
                    max_detections: int = 100, min_size: float = 1e-2) -> Detections:
    """Score threshold and greedy per-class NMS into ``max_detections`` padded detections.

    Args:
      boxes: ``[K, 4]`` (the same box for every class) or ``[K, C, 4]`` (class-specific,
        :func:`apply_box_regression`) floating (x1, y1, x2, y2).
      scores: ``[K, C]`` floating per-class scores (SVM margins, or probabilities).
      valid: ``[K]`` bool, real regions.
      image_size: ``(H, W)``; boxes are clipped to it.
      score_threshold: candidates must score at least this (SVM margin 0 by default; use a
        lower one, e.g. -1, for a recall-oriented AP evaluation).
      nms_threshold: IoU above which a lower-scored box of the same class is dropped
        (R-CNN: 0.3).
      max_detections: M.
      min_size: boxes narrower or lower than this after clipping are dropped.

    Returns:
      :class:`Detections`.
    """
    op = "rcnn_detections"
    check_rank(scores, 2, "scores", op, layout="[K, C]")
    k, c = scores.shape
    boxes = jnp.asarray(boxes, jnp.float32)
    if boxes.ndim == 2:
        check_boxes(boxes, "boxes", op)
        boxes = jnp.broadcast_to(boxes[:, None, :], (k, c, 4))
    if boxes.shape != (k, c, 4):
        raise ValueError(f"{op}: boxes must be [K, 4] or [K, C, 4] = [{k}, {c}, 4], got shape "
                         f"{tuple(boxes.shape)}")
    flat = clip_boxes_to_image(boxes.reshape(k * c, 4), image_size)
    s = jnp.asarray(scores, jnp.float32).reshape(k * c)
    labels = jnp.tile(jnp.arange(1, c + 1, dtype=jnp.int32), k)
    keep = (jnp.repeat(jnp.asarray(valid, bool), c) & (s >= score_threshold) & ~jnp.isnan(s)
            & (flat[:, 2] - flat[:, 0] >= min_size) & (flat[:, 3] - flat[:, 1] >= min_size))
    s = jnp.where(keep, s, -jnp.inf)
    # Non-candidates score -inf: NMS ranks them last, so they never suppress a candidate.
    idx, _ = batched_nms(flat, s, labels, nms_threshold, max_detections)
    safe = jnp.maximum(idx, 0)
    out_valid = (idx >= 0) & keep[safe]
    return Detections(jnp.where(out_valid[:, None], flat[safe], 0.0),
                      jnp.where(out_valid, s[safe], 0.0),
                      jnp.where(out_valid, labels[safe], 0), out_valid)
