"""What the dense-task sources (VOC, COCO, segmentation folders, TFDS) share.

A dense example (``src[i]``, host side, numpy) holds ``image`` uint8 [H, W, 3] and, for
detection, the boxes padded to a fixed ``max_boxes`` (:func:`pad_boxes`):

- ``boxes``: float32 [max_boxes, 4], (x1, y1, x2, y2) in the image's pixels (torchvision's
  continuous convention: area ``(x2 - x1) * (y2 - y1)``, no +1); padding rows are 0
- ``labels``: int32 [max_boxes], 1..C (0 = background / padding)
- ``box_valid``: bool [max_boxes], True on the real boxes
- ``difficult``: bool [max_boxes] (VOC's flag; False elsewhere)

plus ``image_id`` int64 scalar and ``orig_size`` int32 [2] = (H, W) of the decoded image.

Bad input (:class:`AnnotationError`, :class:`~jaxvision.data.ImageDecodeError`) either raises
naming the file (``on_error="raise"``) or, with ``on_error="skip"``, is skipped, recorded in
``skipped_paths`` (with the reason in ``skip_reasons``) and reported in one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from jaxvision.data.sources import Example, FileSource, ImageDecodeError


class AnnotationError(ValueError):
    """An annotation (XML, JSON entry, label image) is malformed or inconsistent with its
    image; the message names the file and what was wrong."""


def check_max_boxes(max_boxes: int, what: str) -> int:
    if not isinstance(max_boxes, (int, np.integer)) or max_boxes < 1:
        raise ValueError(f"{what}: max_boxes must be a positive int, got {max_boxes!r}")
    return int(max_boxes)


def pad_boxes(boxes: np.ndarray, labels: np.ndarray, max_boxes: int,
              difficult: np.ndarray | None = None, *, where: str = "") -> Example:
    """Pad K boxes to ``max_boxes`` rows: {"boxes", "labels", "box_valid", "difficult"}.

    Args:
      boxes: [K, 4] (x1, y1, x2, y2); labels: [K] ints 1..C; difficult: [K] bools or None.
      where: the file, for the error message.

    Raises:
      ValueError: when K > max_boxes (nothing is cut silently: raise ``data.max_boxes``).
    """
    k = len(boxes)
    if k > max_boxes:
        raise ValueError(
            f"{where}: {k} boxes exceed max_boxes={max_boxes}; raise max_boxes "
            "(config data.max_boxes) so that no box is cut"
        )
    out_boxes = np.zeros((max_boxes, 4), np.float32)
    out_labels = np.zeros((max_boxes,), np.int32)
    valid = np.zeros((max_boxes,), bool)
    diff = np.zeros((max_boxes,), bool)
    out_boxes[:k] = np.asarray(boxes, np.float32).reshape(k, 4)
    out_labels[:k] = labels
    valid[:k] = True
    if difficult is not None:
        diff[:k] = difficult
    return {"boxes": out_boxes, "labels": out_labels, "box_valid": valid, "difficult": diff}


def check_boxes_inside(boxes: np.ndarray, height: int, width: int, where: str,
                       tolerance: float = 0.0) -> None:
    """Raise AnnotationError naming ``where`` when a box [K, 4] xyxy leaves the image."""
    if not len(boxes):
        return
    b = np.asarray(boxes, np.float64)
    outside = ((b[:, 0] < -tolerance) | (b[:, 1] < -tolerance)
               | (b[:, 2] > width + tolerance) | (b[:, 3] > height + tolerance))
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise AnnotationError(
            f"{where}: box {k} (x1, y1, x2, y2) = {b[k].tolist()} lies outside the "
            f"{width}x{height} (width x height) image"
        )


def degenerate(boxes: np.ndarray) -> np.ndarray:
    """bool [K]: boxes of zero or negative width or height (x2 <= x1 or y2 <= y1)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])


def warn_degenerate(what: str, dropped: Sequence[tuple[str, Sequence[float]]]) -> None:
    """One warning counting the degenerate boxes a source dropped (naming a few)."""
    if not dropped:
        return
    names = ", ".join(f"{w} {list(map(float, b))}" for w, b in dropped[:5])
    more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
    warnings.warn(
        f"{what}: dropped {len(dropped)} degenerate (zero-area) boxes: {names}{more}",
        stacklevel=3,
    )


class AnnotatedSource(FileSource):
    """Base of the dense sources: a :class:`~jaxvision.data.sources.FileSource` whose bad
    items are undecodable images or inconsistent annotations (:class:`AnnotationError`)."""

    name = "AnnotatedSource"
    skippable = (ImageDecodeError, AnnotationError)
    #: ``(where, box)`` of every zero-area box dropped while indexing.
    degenerate_boxes: list[tuple[str, tuple[float, ...]]]

    @property
    def num_degenerate(self) -> int:
        """Zero-area boxes dropped while indexing."""
        return len(self.degenerate_boxes)
