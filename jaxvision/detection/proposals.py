"""Selective-search region proposals for R-CNN and Fast R-CNN, padded to a fixed size.

R-CNN (Girshick et al., CVPR 2014, section 2.1) and Fast R-CNN score about 2,000 category-
independent regions per image from selective search (Uijlings et al., IJCV 2013) in its
"fast mode". The search itself is OpenCV's (``cv2.ximgproc.segmentation``, from
``opencv-contrib-python-headless``, the ``detection`` extra), not a re-implementation; this
module turns its output into what the detectors need:

- :class:`SelectiveSearch`: one image (``uint8 [H, W, 3]`` RGB) to :class:`Proposals`, boxes
  ``[max_proposals, 4]`` float32 (x1, y1, x2, y2) in the image's pixels plus a validity mask,
  so a jitted Fast R-CNN sees one shape. Optionally the image is shrunk first (R-CNN's code
  resized to a width of 500 px for speed; proposals are not scale invariant, so the setting is
  part of the cache key) and the boxes are mapped back. Duplicates and boxes narrower than
  ``min_size`` are removed; the first ``max_proposals`` in OpenCV's ranking are kept.
- :class:`ProposalCache`: proposals computed once per image file and parameter set, kept as
  ``.npz`` files (written to a temporary name, then renamed: a killed run leaves no torn file).
- :func:`source_proposals`: the proposals of every image of a dense source (e.g.
  :class:`~jaxvision.data.VOCSource`) with a progress bar, failures counted and reported.
- :func:`recall_at_iou`: the share of ground-truth boxes some proposal covers at an IoU
  threshold, the quality number R-CNN and Fast R-CNN report for selective search.

OpenCV ranks the regions by a pseudo-random priority (``rand() * level``, as in Uijlings et
al.) from the C library's generator; :class:`SelectiveSearch` seeds it (``srand(seed)``)
before each search, so the same image and parameters give the same boxes in the same order.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "ProposalCache",
    "Proposals",
    "SelectiveSearch",
    "SourceProposals",
    "recall_at_iou",
    "source_proposals",
]

#: Bumped whenever the boxes produced for the same parameters change (invalidates caches).
_CACHE_VERSION = 1


def _cv2() -> Any:
    try:
        import cv2
        cv2.ximgproc.segmentation.createSelectiveSearchSegmentation  # noqa: B018
    except (ImportError, AttributeError):
        raise ImportError(
            "selective search needs OpenCV's contrib modules: pip install "
            "'opencv-contrib-python-headless' (or jaxvision[detection])") from None
    return cv2


def _seed_c_rand(seed: int) -> None:
    """Seeds the C library's ``rand()``, which OpenCV's selective search ranks regions with."""
    try:
        ctypes.CDLL(None).srand(ctypes.c_uint(seed))
    except (OSError, AttributeError, TypeError):  # no process-wide libc (e.g. Windows)
        pass


class Proposals(NamedTuple):
    """The proposals of one image, padded to a fixed size.

    boxes: ``[P, 4]`` float32 (x1, y1, x2, y2) in the image's pixels, valid rows first in
    OpenCV's ranking, zeros on padding; valid: ``[P]`` bool.
    """

    boxes: np.ndarray
    valid: np.ndarray

    @property
    def count(self) -> int:
        """Number of real proposals."""
        return int(np.sum(self.valid))


def _check_image(image: Any, op: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"{op}: image must be uint8 [H, W, 3] RGB (as decode_image returns), "
                        f"got dtype {image.dtype}; convert [0, 1] floats with "
                        "(image * 255).round().astype(np.uint8)")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)  # grayscale: the search wants 3 channels
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{op}: image must be [H, W, 3] (RGB) or [H, W, 1], got shape "
                         f"{image.shape}")
    if min(image.shape[:2]) < 2:
        raise ValueError(f"{op}: image must be at least 2x2 pixels, got shape {image.shape}")
    return image


@dataclasses.dataclass(frozen=True)
class SelectiveSearch:
    """OpenCV's selective search as R-CNN used it, returning fixed-size :class:`Proposals`.

    Args:
      mode: ``"fast"`` (R-CNN's and Fast R-CNN's setting: HSV and Lab colour spaces, two
        similarity strategies, k in {50, 100}) or ``"quality"`` (more strategies, ~2-3x the
        boxes and time).
      short_side: shrink (never enlarge) the image so its shorter side has this many pixels
        before searching, for speed; boxes are mapped back to the original pixels. None
        searches the full image.
      min_size: boxes whose width or height (in the original image's pixels) is below this
        are dropped (R-CNN's ``minBoxWidth`` is 20 px at its search scale).
      max_proposals: ``P``, the fixed number of rows of the output (R-CNN: 2,000); more
        proposals than this are cut in OpenCV's ranking order.
      seed: seed of the pseudo-random ranking (see the module docstring).
    """

    mode: str = "fast"
    short_side: int | None = None
    min_size: float = 10.0
    max_proposals: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("fast", "quality"):
            raise ValueError(f"SelectiveSearch: mode must be 'fast' or 'quality', got "
                             f"{self.mode!r}")
        if self.short_side is not None and (int(self.short_side) != self.short_side
                                            or self.short_side < 8):
            raise ValueError(f"SelectiveSearch: short_side must be None or an int >= 8, got "
                             f"{self.short_side!r}")
        if int(self.max_proposals) != self.max_proposals or self.max_proposals < 1:
            raise ValueError(f"SelectiveSearch: max_proposals must be a positive int, got "
                             f"{self.max_proposals!r}")
        if not self.min_size >= 0:
            raise ValueError(f"SelectiveSearch: min_size must be >= 0, got {self.min_size!r}")

    def params(self) -> dict[str, Any]:
        """The settings that determine the boxes (the cache key's parameter part)."""
        return {**dataclasses.asdict(self), "version": _CACHE_VERSION}

    def raw(self, image: np.ndarray) -> np.ndarray:
        """All of OpenCV's boxes for ``image`` (uint8 ``[H, W, 3]`` RGB), before filtering.

        Returns:
          ``[R, 4]`` float32 (x1, y1, x2, y2) in the original image's pixels, clipped to it,
          in OpenCV's ranking order (duplicates possible).
        """
        cv2 = _cv2()
        image = _check_image(image, "SelectiveSearch")
        h, w = image.shape[:2]
        bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
        if self.short_side is not None and min(h, w) > self.short_side:
            scale = self.short_side / min(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2 wants (w, h)
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        sh, sw = bgr.shape[:2]
        ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        ss.setBaseImage(bgr)
        if self.mode == "fast":
            ss.switchToSelectiveSearchFast()
        else:
            ss.switchToSelectiveSearchQuality()
        _seed_c_rand(self.seed)
        rects = np.asarray(ss.process(), np.float64).reshape(-1, 4)  # (x, y, w, h), pixels
        # A rect of w pixels from column x covers [x, x + w) in continuous coordinates.
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        boxes *= np.asarray([w / sw, h / sh, w / sw, h / sh])
        boxes = np.clip(boxes, 0, np.asarray([w, h, w, h], np.float64))
        return boxes.astype(np.float32)

    def __call__(self, image: np.ndarray) -> Proposals:
        """Proposals of one image.

        Args:
          image: uint8 ``[H, W, 3]`` RGB (``[H, W, 1]`` grayscale is repeated to 3 channels).

        Returns:
          :class:`Proposals` with ``P = max_proposals`` rows.

        Raises:
          TypeError / ValueError: ``image`` is not uint8 or not ``[H, W, 3]``.
        """
        boxes = self.raw(image)
        wh = boxes[:, 2:] - boxes[:, :2]
        boxes = boxes[np.all(wh >= max(self.min_size, 1e-6), axis=1)]
        _, first = np.unique(boxes, axis=0, return_index=True)
        boxes = boxes[np.sort(first)][:self.max_proposals]  # unique, in ranking order
        out = np.zeros((self.max_proposals, 4), np.float32)
        out[:len(boxes)] = boxes
        return Proposals(out, np.arange(self.max_proposals) < len(boxes))


class ProposalCache:
    """Proposals of image files computed once and kept on disk.

    One ``<sha1>.npz`` (``boxes``, ``valid``) per image and parameter set, keyed by the image's
    absolute path, size and modification time and the :meth:`SelectiveSearch.params`; a
    changed file or setting is a miss, never a stale hit. Writes go to a temporary file in the
    cache folder and are renamed into place (atomic on POSIX), so concurrent or killed runs
    leave either no entry or a whole one.

    Args:
      search: the :class:`SelectiveSearch` to run on a miss.
      cache_dir: folder of the ``.npz`` files (created on first write).

    ``hits`` and ``misses`` count the lookups of this object.
    """

    def __init__(self, search: SelectiveSearch, cache_dir: str | os.PathLike[str]) -> None:
        self.search = search
        self.cache_dir = Path(os.fspath(cache_dir)).expanduser()
        self.hits = 0
        self.misses = 0

    def path_for(self, image_path: str | os.PathLike[str]) -> Path:
        """The cache file of ``image_path`` under the current parameters."""
        p = Path(os.fspath(image_path)).expanduser().resolve()
        st = p.stat()
        key = json.dumps({"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                          **self.search.params()}, sort_keys=True)
        return self.cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"

    def __call__(self, image_path: str | os.PathLike[str],
                 image: np.ndarray | None = None) -> Proposals:
        """The proposals of the image file ``image_path``, from the cache or computed.

        Args:
          image_path: the image file (its identity is the cache key).
          image: its decoded uint8 ``[H, W, 3]`` pixels, when the caller has them already
            (otherwise decoded with :func:`~jaxvision.data.sources.decode_image` on a miss).

        Raises:
          FileNotFoundError: ``image_path`` does not exist.
          ImageDecodeError: it cannot be decoded.
        """
        path = self.path_for(image_path)
        if path.is_file():
            try:
                with np.load(path) as z:
                    boxes, valid = z["boxes"], z["valid"]
                if boxes.shape == (self.search.max_proposals, 4):
                    self.hits += 1
                    return Proposals(boxes, valid)
            except (OSError, ValueError, KeyError):
                pass  # unreadable entry: recompute and overwrite it
        self.misses += 1
        if image is None:
            from jaxvision.data.sources import decode_image
            image = decode_image(image_path)
        props = self.search(image)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz.tmp", dir=self.cache_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, boxes=props.boxes, valid=props.valid)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return props


class SourceProposals(NamedTuple):
    """The proposals of a whole source, row ``i`` for ``source[i]``.

    boxes: ``[N, P, 4]`` float32; valid: ``[N, P]`` bool (all False for a failed image);
    failures: ``{image path: reason}``; seconds: wall time of the whole pass.
    """

    boxes: np.ndarray
    valid: np.ndarray
    failures: dict[str, str]
    seconds: float


def _image_path(source: Any, index: int) -> str:
    item = source.items[index]
    path = getattr(item, "image_path", None)
    return str(path) if path is not None else str(source._item_path(item))


def source_proposals(source: Any, search: SelectiveSearch,
                     cache_dir: str | os.PathLike[str] | None = None, *,
                     indices: Sequence[int] | None = None, on_error: str = "raise",
                     progress: bool = True) -> SourceProposals:
    """Selective search over every image of a file-backed dense source.

    Args:
      source: a :class:`~jaxvision.data.AnnotatedSource` (``VOCSource``, ...) whose
        ``items[i]`` name the image files.
      search: the :class:`SelectiveSearch` settings.
      cache_dir: a :class:`ProposalCache` folder, so a data set is searched once; None
        computes everything.
      indices: the rows of ``source`` to do (default all), in the output's order.
      on_error: ``"raise"`` stops at the first image that cannot be read or searched;
        ``"skip"`` leaves its row empty, counts it and warns once at the end.
      progress: show a tqdm progress bar.

    Returns:
      :class:`SourceProposals` with one row per index.
    """
    from jaxvision.data.sources import ImageDecodeError, check_on_error, decode_image

    check_on_error(on_error, "source_proposals")
    indices = list(range(len(source))) if indices is None else [int(i) for i in indices]
    cache = ProposalCache(search, cache_dir) if cache_dir is not None else None
    p = search.max_proposals
    boxes = np.zeros((len(indices), p, 4), np.float32)
    valid = np.zeros((len(indices), p), bool)
    failures: dict[str, str] = {}
    start = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(indices, desc="selective search", unit="img", disable=not progress)
    cv2 = _cv2()
    for row, i in enumerate(bar):
        path = _image_path(source, i)
        try:
            props = cache(path) if cache is not None else search(decode_image(path))
        except (ImageDecodeError, OSError, ValueError, cv2.error) as e:
            if on_error == "raise":
                raise
            failures[path] = f"{type(e).__name__}: {e}"
            bar.set_postfix(failed=len(failures))
            continue
        boxes[row], valid[row] = props
    if failures:
        first = "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:3])
        warnings.warn(f"source_proposals: {len(failures)} of {len(indices)} image(s) failed "
                      f"and have no proposals: {first}", stacklevel=2)
    return SourceProposals(boxes, valid, failures, time.perf_counter() - start)


def _iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``box_iou`` in numpy (an evaluation over many images of varying counts would otherwise
    compile ``jaxvision.ops.box_iou`` once per shape)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / np.where(union > 0, union, 1.0)


def recall_at_iou(proposals: np.ndarray, gt_boxes: np.ndarray, iou_threshold: float = 0.5, *,
                  proposal_valid: np.ndarray | None = None,
                  gt_valid: np.ndarray | None = None) -> float:
    """Share of ground-truth boxes that some proposal overlaps with IoU >= ``iou_threshold``.

    Args:
      proposals: ``[P, 4]`` or ``[N, P, 4]`` float (x1, y1, x2, y2), one image or a batch.
      gt_boxes: ``[G, 4]`` or ``[N, G, 4]`` float, the same leading shape.
      iou_threshold: the overlap a box must reach to count as found (0.5 in R-CNN's and
        Uijlings et al.'s recall numbers).
      proposal_valid: ``[P]`` / ``[N, P]`` bool, real proposals (default all).
      gt_valid: ``[G]`` / ``[N, G]`` bool, real boxes (default all).

    Returns:
      recall over all valid ground-truth boxes of all images (NaN when there are none).
    """
    proposals = np.asarray(proposals, np.float32)
    gt_boxes = np.asarray(gt_boxes, np.float32)
    if proposals.ndim not in (2, 3) or proposals.shape[-1] != 4:
        raise ValueError(f"recall_at_iou: proposals must be [P, 4] or [N, P, 4], got shape "
                         f"{proposals.shape}")
    if gt_boxes.ndim != proposals.ndim or gt_boxes.shape[-1] != 4 or \
            gt_boxes.shape[:-2] != proposals.shape[:-2]:
        raise ValueError(f"recall_at_iou: gt_boxes must be [G, 4] / [N, G, 4] matching "
                         f"proposals {proposals.shape}, got shape {gt_boxes.shape}")
    if proposals.ndim == 2:
        proposals, gt_boxes = proposals[None], gt_boxes[None]
        proposal_valid = None if proposal_valid is None else np.asarray(proposal_valid)[None]
        gt_valid = None if gt_valid is None else np.asarray(gt_valid)[None]
    pv = np.ones(proposals.shape[:2], bool) if proposal_valid is None else \
        np.asarray(proposal_valid, bool)
    gv = np.ones(gt_boxes.shape[:2], bool) if gt_valid is None else np.asarray(gt_valid, bool)
    found = total = 0
    for props, pmask, gts, gmask in zip(proposals, pv, gt_boxes, gv, strict=True):
        gts = gts[gmask]
        total += len(gts)
        if len(gts) == 0 or not pmask.any():
            continue
        iou = _iou_np(gts, props[pmask])
        found += int(np.sum(iou.max(axis=1) >= iou_threshold))
    return found / total if total else float("nan")
