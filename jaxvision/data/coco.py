"""COCO-format detection and instance segmentation (an ``instances_*.json`` + an image folder),
read with pycocotools.

- Boxes: COCO's ``[x, y, w, h]`` become ``(x, y, x + w, y + h)`` (torchvision's xyxy).
- Labels: the category ids, sorted, map to contiguous labels 1..C (``classes[label - 1]`` is
  the name; ``label_to_category_id`` / ``category_id_to_label`` convert, e.g. to write
  results for ``COCOeval``). Every category the file defines gets a label, present or not.
- Masks (``masks=True``): polygons and RLEs decoded by pycocotools' ``annToMask``.
- ``iscrowd=1`` regions are *left out* of the boxes, labels and masks, as torchvision's
  detection reference (``ConvertCocoPolysToMask``) does: they mark groups that are neither
  positives nor negatives. ``COCOeval`` reads them from the annotation file itself to ignore
  detections on them. ``num_crowd`` counts them.
- Images without (non-crowd) annotations are kept, with no valid box.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxvision.data.annotated import (
    AnnotatedSource,
    AnnotationError,
    check_boxes_inside,
    check_max_boxes,
    degenerate,
    pad_boxes,
    warn_degenerate,
)
from jaxvision.data.sources import Example, decode_image

# COCO's float boxes overshoot the image border by rounding (x + w = 640.0001...); boxes up to
# this many pixels outside are clipped to the image, farther ones are errors.
_BORDER_TOLERANCE = 1.0


def _load_coco(annotation_file: Path) -> Any:
    try:
        from pycocotools.coco import COCO
    except ImportError as e:
        raise ImportError("COCOSource needs pycocotools: pip install pycocotools") from e
    if not annotation_file.is_file():
        raise FileNotFoundError(f"COCOSource: annotation file {annotation_file} does not exist")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its progress
            return COCO(str(annotation_file))
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise AnnotationError(
            f"{annotation_file}: not a COCO annotation file ({type(e).__name__}: {e})"
        ) from e


class _Item(NamedTuple):
    image_id: int
    path: str
    size: tuple[int, int]  # (H, W) from the JSON
    boxes: np.ndarray  # float32 [K, 4] xyxy
    labels: np.ndarray  # int32 [K]
    anns: list[dict]  # the kept annotations (for the masks), in box order


class COCOSource(AnnotatedSource):
    """A COCO-format annotation file as a random-access source of dense examples.

    ``src[i]`` -> {"image": uint8 [H, W, 3], "boxes": float32 [max_boxes, 4] (x1, y1, x2, y2),
    "labels": int32 [max_boxes] (1..C, 0 on padding), "box_valid": bool [max_boxes],
    "difficult": bool [max_boxes] (all False), "image_id": int64 (COCO's image id),
    "orig_size": int32 [2] (H, W)} and with ``masks=True`` "masks": uint8 [max_boxes, H, W]
    (0/1, zero on padding rows). Images are in ascending image-id order (``image_ids``), as
    torchvision's ``CocoDetection``. The annotations are in the file's order per image.

    Annotations are checked up front: unknown category, box of the wrong length, box more
    than 1 px outside the image (closer ones are clipped: COCO's float rounding), missing
    image file. Zero-area boxes are dropped with one warning (``num_degenerate``).

    Args:
      annotation_file: e.g. ``annotations/instances_train2017.json``.
      image_dir: the folder of the images (``file_name`` is relative to it).
      max_boxes: boxes per example after padding; an image with more raises.
      masks: also return the instance masks.
      classes: optional expected class names in label order; a mismatch with the file's
        categories raises (so a config cannot silently relabel).
      on_error: "raise" or "skip" (see :class:`~jaxvision.data.annotated.AnnotatedSource`).
    """

    name = "COCOSource"

    def __init__(
        self,
        annotation_file: str | os.PathLike[str],
        image_dir: str | os.PathLike[str],
        *,
        max_boxes: int = 100,
        masks: bool = False,
        classes: Sequence[str] | None = None,
        on_error: str = "raise",
    ):
        self._init_errors(on_error)
        self.annotation_file = Path(os.fspath(annotation_file)).expanduser()
        self.image_dir = Path(os.fspath(image_dir)).expanduser()
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"COCOSource: image folder {self.image_dir} does not exist")
        self.max_boxes = check_max_boxes(max_boxes, self.name)
        self.masks = bool(masks)
        self.coco = coco = _load_coco(self.annotation_file)
        cat_ids = sorted(coco.cats)
        self.category_id_to_label = {c: k + 1 for k, c in enumerate(cat_ids)}
        self.label_to_category_id = {k + 1: c for k, c in enumerate(cat_ids)}
        self.classes = [str(coco.cats[c]["name"]) for c in cat_ids]
        self.num_classes = len(self.classes)
        if classes is not None and list(classes) != self.classes:
            raise ValueError(
                f"COCOSource: classes {list(classes)} differ from the categories of "
                f"{self.annotation_file} in id order: {self.classes}"
            )
        self.num_crowd = 0
        self.degenerate_boxes: list[tuple[str, tuple[float, ...]]] = []
        self.items: list[_Item] = []
        for image_id in sorted(coco.imgs):
            try:
                self.items.append(self._to_item(image_id))
            except (AnnotationError, FileNotFoundError, ValueError) as e:
                info = coco.imgs[image_id]
                self._reject(str(self.image_dir / str(info.get("file_name", image_id))), e)
        if not self.items:
            raise AnnotationError(f"COCOSource: no usable image in {self.annotation_file}")
        self.image_ids = [it.image_id for it in self.items]
        warn_degenerate(f"COCOSource({self.annotation_file.name})", self.degenerate_boxes)
        self._warn_skipped()

    def _to_item(self, image_id: int) -> _Item:
        coco, where = self.coco, f"{self.annotation_file}: image {image_id}"
        info = coco.imgs[image_id]
        try:
            name, h, w = info["file_name"], int(info["height"]), int(info["width"])
        except (KeyError, TypeError, ValueError) as e:
            raise AnnotationError(f"{where}: entry lacks file_name/height/width ({e})") from None
        path = self.image_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"COCOSource: image {path} (id {image_id}) does not exist")
        boxes, labels, anns = [], [], []
        for ann in coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0):
                self.num_crowd += 1
                continue
            at = f"{where}, annotation {ann.get('id')}"
            if ann.get("category_id") not in self.category_id_to_label:
                raise AnnotationError(f"{at}: category_id {ann.get('category_id')!r} is not "
                                      f"among the defined categories {sorted(coco.cats)}")
            bbox = ann.get("bbox")
            if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                    or not all(isinstance(v, (int, float)) for v in bbox)):
                raise AnnotationError(f"{at}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
            x, y, bw, bh = map(float, bbox)
            box = np.asarray([[x, y, x + bw, y + bh]])
            if degenerate(box)[0]:
                self.degenerate_boxes.append((f"{name} annotation {ann.get('id')}",
                                              tuple(bbox)))
                continue
            check_boxes_inside(box, h, w, at, tolerance=_BORDER_TOLERANCE)
            if self.masks and not isinstance(ann.get("segmentation"), (list, dict)):
                raise AnnotationError(f"{at}: segmentation must be polygons or an RLE, got "
                                      f"{type(ann.get('segmentation')).__name__}")
            boxes.append(np.clip(box[0], 0, [w, h, w, h]))
            labels.append(self.category_id_to_label[ann["category_id"]])
            anns.append(ann)
        if len(boxes) > self.max_boxes:
            raise ValueError(f"{where}: {len(boxes)} boxes exceed max_boxes={self.max_boxes}; "
                             "raise max_boxes (config data.max_boxes)")
        return _Item(int(image_id), str(path), (h, w),
                     np.asarray(boxes, np.float32).reshape(-1, 4),
                     np.asarray(labels, np.int32), anns)

    def _item_path(self, item: _Item) -> str:
        return item.path

    def _load(self, index: int, item: _Item) -> Example:
        image = decode_image(item.path)
        h, w = image.shape[:2]
        if (h, w) != item.size:
            raise AnnotationError(
                f"{item.path}: decoded size {w}x{h} differs from the annotation file's "
                f"{item.size[1]}x{item.size[0]} (width x height) for image {item.image_id}"
            )
        ex = {"image": image}
        ex.update(pad_boxes(item.boxes, item.labels, self.max_boxes, where=item.path))
        if self.masks:
            masks = np.zeros((self.max_boxes, h, w), np.uint8)
            for k, ann in enumerate(item.anns):
                try:
                    masks[k] = self.coco.annToMask(ann)
                except Exception as e:  # pycocotools raises bare errors on bad polygons
                    raise AnnotationError(
                        f"{self.annotation_file}: annotation {ann.get('id')} of image "
                        f"{item.image_id}: cannot decode its segmentation "
                        f"({type(e).__name__}: {e})"
                    ) from e
            ex["masks"] = masks
        ex["image_id"] = np.int64(item.image_id)
        ex["orig_size"] = np.asarray([h, w], np.int32)
        return ex

    def __repr__(self) -> str:
        return (f"COCOSource({str(self.annotation_file)!r}, n={len(self)}, "
                f"classes={self.num_classes}, max_boxes={self.max_boxes}, masks={self.masks}, "
                f"on_error={self.on_error!r})")
