"""Detection metrics: Pascal VOC average precision and COCO AP through pycocotools.

Both are host-side accumulators: numpy in, one call per image (``add``) or per batch
(``add_batch``), padded detector outputs accepted with a count or a validity mask per row
(the static-shape convention of :mod:`jaxvision.ops`); ``compute`` after the pass. Labels
are torchvision's: ``1..C`` name ``class_names[label - 1]``, 0 is background / padding.

**Pascal VOC AP** (:class:`VOCEvaluator`), matched as the official devkit's ``VOCevaldet.m``
and py-faster-rcnn's ``voc_eval.py``, class by class:

- the class's detections of the whole data set are ranked by score (ties keep the order in
  which they were added: image order, then row order; the devkit's MATLAB ``sort`` is stable
  too, numpy's default ``argsort`` in ``voc_eval.py`` is not);
- each detection, in that order, takes the ground-truth box of its image with the largest
  IoU (the first of equal ones), taken or not; it is a true positive when that IoU reaches
  the threshold, the box is not ``difficult`` and not yet taken; a second detection of a
  taken box is a false positive (a duplicate); a detection whose best box is ``difficult``
  is neither (and does not take it); below the threshold, a false positive;
- recall is TP / (non-difficult ground-truth boxes), precision TP / (TP + FP);
- ``use_07_metric`` (VOC2007): the mean over recall thresholds ``np.arange(0, 1.1, 0.1)``
  (as ``voc_eval.py``; 0.3, 0.6 and 0.7 are then a hair above their decimals) of the largest
  precision at recall >= t; otherwise (VOC2010+): the area under the monotone precision
  envelope, summed where recall changes.

Defaults are the devkit's: ``plus_one=True`` (IoU of inclusive pixel boxes, width
``x2 - x1 + 1``; this reproduces the devkit on VOC coordinates read as written, which is how
:mod:`jaxvision.data.voc` reads them; ``plus_one=False`` is torchvision's continuous
``box_iou``) and ``inclusive=True`` (IoU >= threshold, ``VOCevaldet.m``'s
``ovmax>=VOCopts.minoverlap``; ``inclusive=False`` is ``voc_eval.py``'s ``ovmax > ovthresh``).
The two differ only at an IoU of exactly the threshold, which integer boxes can reach.

A class without non-difficult ground truth has no recall, so its AP is NaN (the devkit
divides by zero there), it is reported as NaN and left out of the mean over classes (mAP is
the mean over the classes that have ground truth; NaN when none has).

**COCO AP** (:class:`COCOEvaluator`): detections exported as COCO results JSON (xyxy ->
``[x, y, w, h]``, label -> category id, image ids) and scored by pycocotools' ``COCOeval``
on a ground-truth ``COCO`` object: the annotation file's (crowd regions included, so
detections on them are ignored as COCO intends) or one built from VOC-style arrays, as
torchvision's ``references/detection/coco_utils.convert_to_coco_api`` builds it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "COCOEvaluator",
    "COCOResult",
    "VOCEvaluator",
    "VOCResult",
    "coco_results",
    "voc_ap",
    "voc_iou",
]


# --------------------------------------------------------------------------- input checks


def _array(x: Any, name: str, op: str, *, ndim: int, last: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != ndim or (last is not None and a.shape[-1] != last):
        want = f"{ndim}-D" + (f" with {last} entries in its last axis" if last else "")
        raise ValueError(f"{op}: {name} must be {want}, got shape {a.shape}")
    return a


def _row_mask(valid: Any, n: int, name: str, op: str) -> np.ndarray:
    """A bool [n] keep mask from ``None`` (all rows), a count (the first rows) or a mask."""
    if valid is None:
        return np.ones(n, bool)
    v = np.asarray(valid)
    if v.ndim == 0:
        if not np.issubdtype(v.dtype, np.integer) or not 0 <= int(v) <= n:
            raise ValueError(f"{op}: {name} as a count must be an integer in 0..{n}, got {valid!r}")
        return np.arange(n) < int(v)
    if v.shape != (n,):
        raise ValueError(f"{op}: {name} must be a count or a bool mask of shape ({n},), "
                         f"got shape {v.shape}")
    return v.astype(bool)


def _check_labels(labels: np.ndarray, num_classes: int, name: str, op: str) -> np.ndarray:
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{op}: {name} must be integers, got dtype {labels.dtype}")
    bad = (labels < 1) | (labels > num_classes)
    if bad.any():
        raise ValueError(
            f"{op}: {name} must lie in 1..{num_classes} (0 is background/padding: mark padded "
            f"rows with the valid mask or count), got {sorted(set(labels[bad].tolist()))}")
    return labels.astype(np.int64)


def _check_boxes(boxes: np.ndarray, name: str, op: str) -> np.ndarray:
    boxes = boxes.astype(np.float64)
    if not np.isfinite(boxes).all():
        raise ValueError(f"{op}: {name} holds NaN or infinite coordinates")
    if (boxes[:, 2:] < boxes[:, :2]).any():
        k = int(np.flatnonzero((boxes[:, 2:] < boxes[:, :2]).any(1))[0])
        raise ValueError(f"{op}: {name} must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1, "
                         f"row {k} is {boxes[k].tolist()}")
    return boxes


# --------------------------------------------------------------------------- VOC AP


def voc_iou(boxes1: np.ndarray, boxes2: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """Pairwise IoU the devkit's way.

    Args:
      boxes1: ``[N, 4]``, boxes2: ``[M, 4]`` (x1, y1, x2, y2), any real dtype.
      plus_one: inclusive pixel boxes (width ``x2 - x1 + 1``, the devkit); False gives
        torchvision's continuous ``box_iou``.
    Returns:
      ``[N, M] float64``; 0 where the union is empty.
    """
    a = np.asarray(boxes1, np.float64)[:, None, :]
    b = np.asarray(boxes2, np.float64)[None, :, :]
    off = 1.0 if plus_one else 0.0
    iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + off, 0)
    ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + off, 0)
    inter = iw * ih
    union = ((a[..., 2] - a[..., 0] + off) * (a[..., 3] - a[..., 1] + off)
             + (b[..., 2] - b[..., 0] + off) * (b[..., 3] - b[..., 1] + off) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision from a ranked list's cumulative recall and precision.

    Args:
      recall, precision: ``[D] float`` after each of the ``D`` ranked detections (recall
        non-decreasing); empty when there is no detection (AP 0).
      use_07_metric: the VOC2007 11-point AP; otherwise VOC2010+'s area under the monotone
        precision envelope.
    Returns:
      AP in [0, 1].
    """
    rec, prec = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):  # voc_eval.py's thresholds, float error included
            above = rec >= t
            ap += (prec[above].max() if above.any() else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope: best precision to the right
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _iou_tag(iou_threshold: float) -> str:
    """``0.5 -> "50"``, as in mAP@50 / AP50."""
    pct = iou_threshold * 100
    return str(round(pct)) if math.isclose(pct, round(pct)) else f"{pct:g}".replace(".", "_")


@dataclass(frozen=True)
class VOCResult:
    """Per-class VOC APs of one evaluation pass.

    Attributes:
      class_names: ``C`` names, label ``k`` is ``class_names[k - 1]``.
      ap: ``[C] float64`` all-point (VOC2010+) AP; NaN for a class without non-difficult
        ground truth.
      ap_voc07: ``[C] float64`` 11-point (VOC2007) AP, NaN likewise.
      num_gt: ``[C] int64`` non-difficult ground-truth boxes (the recall denominator).
      num_difficult: ``[C] int64`` difficult ground-truth boxes.
      num_detections: ``[C] int64`` detections scored.
      recall, precision: per class, ``[D_c] float64`` along the ranked detections.
      iou_threshold: the matching threshold.
      num_images: images added.
    """

    class_names: tuple[str, ...]
    ap: np.ndarray
    ap_voc07: np.ndarray
    num_gt: np.ndarray
    num_difficult: np.ndarray
    num_detections: np.ndarray
    recall: list[np.ndarray] = field(repr=False)
    precision: list[np.ndarray] = field(repr=False)
    iou_threshold: float = 0.5
    num_images: int = 0

    @staticmethod
    def _mean(ap: np.ndarray) -> float:
        ap = ap[~np.isnan(ap)]
        return float(ap.mean()) if ap.size else float("nan")

    @property
    def map(self) -> float:
        """All-point mAP over the classes with ground truth (NaN when none has)."""
        return self._mean(self.ap)

    @property
    def map_voc07(self) -> float:
        """11-point mAP over the classes with ground truth (NaN when none has)."""
        return self._mean(self.ap_voc07)

    def metrics(self, prefix: str = "eval_") -> dict[str, float]:
        """The engine's scalars: ``eval_map50`` (all-point mAP), ``eval_map50_voc07`` and
        ``eval_ap50/<class name>`` (all-point, NaN for a class without ground truth); the
        number is the IoU threshold in percent."""
        tag = _iou_tag(self.iou_threshold)
        out = {f"{prefix}map{tag}": self.map, f"{prefix}map{tag}_voc07": self.map_voc07}
        for name, ap in zip(self.class_names, self.ap, strict=True):
            out[f"{prefix}ap{tag}/{name}"] = float(ap)
        return out

    def table(self, digits: int = 3) -> str:
        """A markdown table: one row per class (ground truth, detections, both APs), then
        the means; ``n/a`` where a class has no ground truth."""
        tag = _iou_tag(self.iou_threshold)
        fmt = lambda v: "n/a" if np.isnan(v) else f"{v:.{digits}f}"
        lines = [f"| class | GT | difficult | detections | AP{tag} | AP{tag} (VOC07) |",
                 "|---|---:|---:|---:|---:|---:|"]
        for k, name in enumerate(self.class_names):
            lines.append(f"| {name} | {self.num_gt[k]} | {self.num_difficult[k]} | "
                         f"{self.num_detections[k]} | {fmt(self.ap[k])} | "
                         f"{fmt(self.ap_voc07[k])} |")
        lines.append(f"| **mean** | {self.num_gt.sum()} | {self.num_difficult.sum()} | "
                     f"{self.num_detections.sum()} | **{fmt(self.map)}** | "
                     f"**{fmt(self.map_voc07)}** |")
        return "\n".join(lines)


class VOCEvaluator:
    """Accumulates detections and ground truth image by image; :meth:`compute` gives the
    per-class VOC APs (both metrics) and their means.

    Each image is matched when added (a detection competes only for boxes of its own image,
    so matching in score order per image equals the devkit's pass over the global ranking);
    only scores and TP/FP flags are kept.

    Args:
      class_names: the ``C`` class names in label order (label ``k`` names
        ``class_names[k - 1]``), or ``C`` (names ``"1".."C"``).
      iou_threshold: in (0, 1]; 0.5 for Pascal VOC.
      plus_one: IoU of inclusive pixel boxes (the devkit, default) or continuous boxes.
      inclusive: a match needs IoU >= threshold (the devkit, default) or > threshold
        (``voc_eval.py``).
    """

    _op = "VOCEvaluator"

    def __init__(self, class_names: Sequence[str] | int, *, iou_threshold: float = 0.5,
                 plus_one: bool = True, inclusive: bool = True):
        if isinstance(class_names, (int, np.integer)):
            class_names = [str(k) for k in range(1, int(class_names) + 1)]
        self.class_names = tuple(str(c) for c in class_names)
        if not self.class_names:
            raise ValueError(f"{self._op}: class_names must name at least one class")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"{self._op}: class_names has duplicates: {self.class_names}")
        if not 0.0 < float(iou_threshold) <= 1.0:
            raise ValueError(f"{self._op}: iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = float(iou_threshold)
        self.plus_one = bool(plus_one)
        self.inclusive = bool(inclusive)
        self.reset()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def reset(self) -> None:
        """Forget everything added."""
        c = self.num_classes
        self._scores: list[list[np.ndarray]] = [[] for _ in range(c)]
        self._tp: list[list[np.ndarray]] = [[] for _ in range(c)]
        self._fp: list[list[np.ndarray]] = [[] for _ in range(c)]
        self._npos = np.zeros(c, np.int64)
        self._ndiff = np.zeros(c, np.int64)
        self.num_images = 0

    def add(self, pred_boxes: Any, pred_scores: Any, pred_labels: Any, gt_boxes: Any,
            gt_labels: Any, gt_difficult: Any = None, *, pred_valid: Any = None,
            gt_valid: Any = None) -> None:
        """Add one image.

        Args:
          pred_boxes: ``[K, 4] float`` (x1, y1, x2, y2), in the ground truth's pixels.
          pred_scores: ``[K] float``; pred_labels: ``[K] int`` in 1..C.
          gt_boxes: ``[M, 4] float``; gt_labels: ``[M] int`` in 1..C.
          gt_difficult: ``[M] bool`` (None: no box is difficult).
          pred_valid, gt_valid: which rows are real: None (all), a count (the first rows) or
            a ``bool [K]`` / ``[M]`` mask (the contract's ``box_valid``). Padded rows may
            hold anything.
        """
        op = self._op
        pb = _array(pred_boxes, "pred_boxes", op, ndim=2, last=4)
        ps = _array(pred_scores, "pred_scores", op, ndim=1)
        pl = _array(pred_labels, "pred_labels", op, ndim=1)
        gb = _array(gt_boxes, "gt_boxes", op, ndim=2, last=4)
        gl = _array(gt_labels, "gt_labels", op, ndim=1)
        gd = (np.zeros(len(gl), bool) if gt_difficult is None
              else _array(gt_difficult, "gt_difficult", op, ndim=1))
        k, m = len(pb), len(gb)
        for name, a, n in (("pred_scores", ps, k), ("pred_labels", pl, k), ("gt_labels", gl, m),
                           ("gt_difficult", gd, m)):
            if len(a) != n:
                raise ValueError(f"{op}: {name} has {len(a)} rows, its boxes {n}")
        keep = _row_mask(pred_valid, k, "pred_valid", op)
        pb, ps, pl = pb[keep], ps[keep].astype(np.float64), pl[keep]
        keep = _row_mask(gt_valid, m, "gt_valid", op)
        gb, gl, gd = gb[keep], gl[keep], gd[keep].astype(bool)
        pb, gb = _check_boxes(pb, "pred_boxes", op), _check_boxes(gb, "gt_boxes", op)
        if not np.isfinite(ps).all():
            raise ValueError(f"{op}: pred_scores holds NaN or infinite values")
        pl = _check_labels(pl, self.num_classes, "pred_labels", op)
        gl = _check_labels(gl, self.num_classes, "gt_labels", op)

        self.num_images += 1
        np.add.at(self._npos, gl[~gd] - 1, 1)
        np.add.at(self._ndiff, gl[gd] - 1, 1)
        for c in np.unique(pl):
            sel, gsel = pl == c, gl == c
            scores, tp, fp = self._match(pb[sel], ps[sel], gb[gsel], gd[gsel])
            self._scores[c - 1].append(scores)
            self._tp[c - 1].append(tp)
            self._fp[c - 1].append(fp)

    def _match(self, boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray,
               gt_difficult: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One class in one image: scores in ranked order with TP and FP flags (both False
        for a detection of a difficult box)."""
        order = np.argsort(-scores, kind="stable")
        boxes, scores = boxes[order], scores[order]
        tp = np.zeros(len(scores), bool)
        fp = np.zeros(len(scores), bool)
        if len(gt_boxes) == 0:
            fp[:] = True
            return scores, tp, fp
        iou = voc_iou(boxes, gt_boxes, self.plus_one)
        best, ovmax = iou.argmax(1), iou.max(1)
        hit = ovmax >= self.iou_threshold if self.inclusive else ovmax > self.iou_threshold
        taken = np.zeros(len(gt_boxes), bool)
        for d, j in enumerate(best):  # greedy in score order: sequential by nature
            if not hit[d]:
                fp[d] = True
            elif gt_difficult[j]:
                continue
            elif taken[j]:
                fp[d] = True
            else:
                tp[d] = taken[j] = True
        return scores, tp, fp

    def add_batch(self, pred_boxes: Any, pred_scores: Any, pred_labels: Any, gt_boxes: Any,
                  gt_labels: Any, gt_difficult: Any = None, *, pred_valid: Any = None,
                  gt_valid: Any = None, example_valid: Any = None) -> None:
        """Add a batch: every argument of :meth:`add` with a leading batch axis ``B``
        (``pred_valid`` / ``gt_valid``: ``[B]`` counts or ``[B, K]`` masks), and
        ``example_valid``: ``[B]`` bool or float (the loader's ``_valid``; rows where it is
        False or 0 are padding and skipped)."""
        b = len(np.asarray(pred_boxes))
        ex = _row_mask(None if example_valid is None else np.asarray(example_valid).astype(bool),
                       b, "example_valid", self._op)
        pick = lambda a, i: None if a is None else np.asarray(a)[i]
        for i in np.flatnonzero(ex):
            self.add(pick(pred_boxes, i), pick(pred_scores, i), pick(pred_labels, i),
                     pick(gt_boxes, i), pick(gt_labels, i), pick(gt_difficult, i),
                     pred_valid=pick(pred_valid, i), gt_valid=pick(gt_valid, i))

    def compute(self) -> VOCResult:
        """Per-class APs (both metrics) over everything added."""
        c = self.num_classes
        ap, ap07 = np.full(c, np.nan), np.full(c, np.nan)
        ndet = np.zeros(c, np.int64)
        recalls, precisions = [], []
        for k in range(c):
            scores = np.concatenate(self._scores[k]) if self._scores[k] else np.zeros(0)
            tp = np.concatenate(self._tp[k]) if self._tp[k] else np.zeros(0, bool)
            fp = np.concatenate(self._fp[k]) if self._fp[k] else np.zeros(0, bool)
            ndet[k] = len(scores)
            order = np.argsort(-scores, kind="stable")  # ties: the order of add()
            tpc = np.cumsum(tp[order], dtype=np.float64)
            fpc = np.cumsum(fp[order], dtype=np.float64)
            npos = self._npos[k]
            rec = tpc / npos if npos else np.full(len(tpc), np.nan)
            prec = tpc / np.maximum(tpc + fpc, np.finfo(np.float64).eps)
            recalls.append(rec)
            precisions.append(prec)
            if npos:
                ap[k], ap07[k] = voc_ap(rec, prec), voc_ap(rec, prec, use_07_metric=True)
        return VOCResult(self.class_names, ap, ap07, self._npos.copy(), self._ndiff.copy(),
                         ndet, recalls, precisions, self.iou_threshold, self.num_images)


# --------------------------------------------------------------------------- COCO AP

#: ``COCOeval.stats`` entries reported, by metric name (the rest are average recalls).
_COCO_STATS = {"coco_map": 0, "coco_map50": 1, "coco_map75": 2, "coco_map_small": 3,
               "coco_map_medium": 4, "coco_map_large": 5}


def coco_results(image_id: int, boxes: Any, scores: Any, labels: Any,
                 label_to_category_id: Mapping[int, int], valid: Any = None) -> list[dict]:
    """One image's detections as COCO results entries.

    Args:
      image_id: the image's COCO id.
      boxes: ``[K, 4] float`` (x1, y1, x2, y2) in the image's original pixels (continuous,
        torchvision's convention: width ``x2 - x1``).
      scores: ``[K] float``; labels: ``[K] int``, mapped through ``label_to_category_id``.
      valid: None (all rows), a count or a ``bool [K]`` mask.
    Returns:
      ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]`` (plain Python
      numbers, ready for ``json.dump`` and ``COCO.loadRes``).
    """
    op = "coco_results"
    b = _array(boxes, "boxes", op, ndim=2, last=4)
    s = _array(scores, "scores", op, ndim=1)
    lab = _array(labels, "labels", op, ndim=1)
    if not len(b) == len(s) == len(lab):
        raise ValueError(f"{op}: boxes, scores and labels have {len(b)}, {len(s)} and "
                         f"{len(lab)} rows")
    keep = _row_mask(valid, len(b), "valid", op)
    b = _check_boxes(b[keep], "boxes", op)
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
    out = []
    for box, score, label in zip(xywh.tolist(), s[keep].tolist(), lab[keep].tolist(),
                                 strict=True):
        if label not in label_to_category_id:
            raise ValueError(f"{op}: label {label} has no category id in label_to_category_id "
                             f"(known labels {sorted(label_to_category_id)})")
        out.append({"image_id": int(image_id), "category_id": int(label_to_category_id[label]),
                    "bbox": box, "score": float(score)})
    return out


def _coco_from_dict(dataset: dict) -> Any:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints its progress
        coco.createIndex()
    return coco


@dataclass(frozen=True)
class COCOResult:
    """One ``COCOeval`` run.

    Attributes:
      stats: ``[12] float64``, ``COCOeval.stats`` as pycocotools gives it (AP@[.5:.95],
        AP50, AP75, AP small/medium/large, then the ARs; -1 where no ground truth).
      summary: ``COCOeval.summarize()``'s printed table.
      num_images, num_detections: what was evaluated.
    """

    stats: np.ndarray
    summary: str
    num_images: int
    num_detections: int

    def metrics(self, prefix: str = "eval_") -> dict[str, float]:
        """``eval_coco_map`` (AP@[.5:.95]), ``eval_coco_map50``, ``eval_coco_map75``,
        ``eval_coco_map_small`` / ``_medium`` / ``_large``; NaN where pycocotools gives -1
        (no ground truth in that area range)."""
        return {f"{prefix}{name}": (float("nan") if self.stats[i] < 0 else float(self.stats[i]))
                for name, i in _COCO_STATS.items()}


class COCOEvaluator:
    """Accumulates detections as COCO results; :meth:`compute` runs pycocotools' ``COCOeval``
    (``iouType="bbox"``) over the images added.

    Two ground truths:

    - ``coco_gt``: a ``pycocotools.coco.COCO`` (e.g. ``COCOSource.coco``); image ids are its
      ids, labels map to category ids through ``label_to_category_id`` (default: label ``k``
      is the ``k``-th smallest category id, :class:`jaxvision.data.coco.COCOSource`'s
      convention). Its crowd regions stay in, so COCOeval ignores detections on them.
    - None: the ground truth comes with each :meth:`add` (VOC-style arrays) and a ``COCO``
      object is built from it as torchvision's ``convert_to_coco_api`` does (``area`` =
      box w * h, ``iscrowd`` from ``gt_crowd`` or 0, category id = label, annotation ids from
      1). VOC's ``difficult`` flags have no COCO meaning and are not used unless passed as
      ``gt_crowd``.

    Only the images added are evaluated (``params.imgIds``), as torchvision's
    ``CocoEvaluator`` does, so evaluating a subset does not count the rest as missed.

    Args:
      coco_gt: the ground truth, or None (built from :meth:`add`'s arrays).
      label_to_category_id: a mapping from labels 1..C to category ids.
      class_names: with ``coco_gt=None``, the names of labels 1..C (the built categories).
    """

    _op = "COCOEvaluator"

    def __init__(self, coco_gt: Any = None, label_to_category_id: Mapping[int, int] | None = None,
                 *, class_names: Sequence[str] | None = None):
        try:
            import pycocotools.cocoeval  # noqa: F401
        except ImportError as e:
            raise ImportError(f"{self._op} needs pycocotools: pip install pycocotools") from e
        self.coco_gt = coco_gt
        if label_to_category_id is None:
            if coco_gt is not None:
                label_to_category_id = {k + 1: c for k, c in enumerate(sorted(coco_gt.getCatIds()))}
            elif class_names is not None:
                label_to_category_id = {k: k for k in range(1, len(class_names) + 1)}
        self.label_to_category_id = (None if label_to_category_id is None
                                     else {int(k): int(v) for k, v in label_to_category_id.items()})
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.reset()

    def reset(self) -> None:
        """Forget everything added."""
        self._results: list[dict] = []
        self._image_ids: list[int] = []
        self._seen: set[int] = set()
        self._gt_images: list[dict] = []
        self._gt_anns: list[dict] = []
        self._gt_labels: set[int] = set()

    @property
    def results(self) -> list[dict]:
        """The detections so far as COCO results entries (a copy)."""
        return copy.deepcopy(self._results)

    def write_results(self, path: str | os.PathLike[str]) -> None:
        """Write the detections as a COCO results JSON file (``COCO.loadRes`` reads it)."""
        with open(path, "w") as f:
            json.dump(self._results, f)

    def _mapping(self, labels: np.ndarray) -> Mapping[int, int]:
        if self.label_to_category_id is not None:
            return self.label_to_category_id
        return {int(v): int(v) for v in labels.tolist()}  # no mapping given: category = label

    def add(self, image_id: int, pred_boxes: Any, pred_scores: Any, pred_labels: Any, *,
            pred_valid: Any = None, gt_boxes: Any = None, gt_labels: Any = None,
            gt_valid: Any = None, gt_crowd: Any = None,
            image_size: tuple[int, int] | None = None) -> None:
        """Add one image's detections (and, without ``coco_gt``, its ground truth).

        Args:
          image_id: the image's id (``coco_gt``'s, or any distinct int).
          pred_boxes: ``[K, 4] float`` (x1, y1, x2, y2) in the original image's pixels.
          pred_scores: ``[K] float``; pred_labels: ``[K] int`` (labels 1..C).
          pred_valid: None, a count or a ``bool [K]`` mask of real rows.
          gt_boxes, gt_labels, gt_valid, gt_crowd: ``[M, 4]``, ``[M] int``, its mask or count,
            ``[M] bool`` crowd flags; only without ``coco_gt``.
          image_size: ``(H, W)`` written into the built ground truth's image entry.
        """
        op, image_id = self._op, int(image_id)
        if image_id in self._seen:
            raise ValueError(f"{op}: image {image_id} was added twice")
        labels = _array(pred_labels, "pred_labels", op, ndim=1)
        if self.coco_gt is not None:
            if gt_boxes is not None or gt_labels is not None:
                raise ValueError(f"{op}: gt_boxes/gt_labels are read from coco_gt; pass them "
                                 "only when the evaluator has no coco_gt")
            if image_id not in self.coco_gt.imgs:
                raise ValueError(f"{op}: image id {image_id} is not in the ground truth")
        else:
            if gt_boxes is None or gt_labels is None:
                raise ValueError(f"{op}: without coco_gt, add() needs gt_boxes and gt_labels")
            self._add_gt(image_id, gt_boxes, gt_labels, gt_valid, gt_crowd, image_size)
        mapping = self._mapping(labels)
        self._results.extend(coco_results(image_id, pred_boxes, pred_scores, labels, mapping,
                                          pred_valid))
        self._seen.add(image_id)
        self._image_ids.append(image_id)

    def _add_gt(self, image_id: int, boxes: Any, labels: Any, valid: Any, crowd: Any,
                image_size: tuple[int, int] | None) -> None:
        op = self._op
        b = _array(boxes, "gt_boxes", op, ndim=2, last=4)
        lab = _array(labels, "gt_labels", op, ndim=1)
        cr = np.zeros(len(b), bool) if crowd is None else _array(crowd, "gt_crowd", op, ndim=1)
        if not len(b) == len(lab) == len(cr):
            raise ValueError(f"{op}: gt_boxes, gt_labels and gt_crowd have {len(b)}, {len(lab)} "
                             f"and {len(cr)} rows")
        keep = _row_mask(valid, len(b), "gt_valid", op)
        b, lab, cr = _check_boxes(b[keep], "gt_boxes", op), lab[keep], cr[keep].astype(bool)
        mapping = self._mapping(lab)
        image: dict[str, Any] = {"id": image_id}
        if image_size is not None:
            image["height"], image["width"] = int(image_size[0]), int(image_size[1])
        self._gt_images.append(image)
        for box, label, is_crowd in zip(b.tolist(), lab.tolist(), cr.tolist(), strict=True):
            if label not in mapping:
                raise ValueError(f"{op}: gt label {label} has no category id "
                                 f"(known labels {sorted(mapping)})")
            w, h = box[2] - box[0], box[3] - box[1]
            self._gt_anns.append({"id": len(self._gt_anns) + 1,  # COCOeval takes id 0 as none
                                  "image_id": image_id, "category_id": mapping[label],
                                  "bbox": [box[0], box[1], w, h], "area": w * h,
                                  "iscrowd": int(is_crowd)})
            self._gt_labels.add(label)

    def _ground_truth(self) -> Any:
        if self.coco_gt is not None:
            return self.coco_gt
        if self.label_to_category_id is not None:
            cats = [{"id": cid, "name": (self.class_names[label - 1] if self.class_names
                                         and label <= len(self.class_names) else str(cid))}
                    for label, cid in sorted(self.label_to_category_id.items())]
        else:  # every label seen, in ground truth or detections
            seen = self._gt_labels | {r["category_id"] for r in self._results}
            cats = [{"id": c, "name": str(c)} for c in sorted(seen)]
        return _coco_from_dict({"images": list(self._gt_images), "annotations": self._gt_anns,
                                "categories": cats})

    def compute(self) -> COCOResult:
        """Run ``COCOeval`` (evaluate, accumulate, summarize) on the images added."""
        from pycocotools.cocoeval import COCOeval

        if not self._image_ids:
            raise ValueError(f"{self._op}: no image was added")
        gt = self._ground_truth()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):  # COCOeval prints its progress and table
            if self._results:  # loadRes writes into the entries: give it copies
                dt = gt.loadRes(copy.deepcopy(self._results))
            else:  # loadRes cannot take an empty list
                dt = _coco_from_dict({"images": list(gt.dataset["images"]), "annotations": [],
                                      "categories": copy.deepcopy(gt.dataset["categories"])})
            ev = COCOeval(gt, dt, iouType="bbox")
            ev.params.imgIds = sorted(self._image_ids)
            ev.evaluate()
            ev.accumulate()
            summary = io.StringIO()
            with contextlib.redirect_stdout(summary):
                ev.summarize()
        return COCOResult(np.asarray(ev.stats, np.float64), summary.getvalue(),
                          len(self._image_ids), len(self._results))
