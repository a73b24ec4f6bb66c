"""Semantic segmentation folders: ``<root>/<split>/images/<stem>.<ext>`` paired with
``<root>/<split>/labels/<stem>.png`` (class ids as pixel values: PIL mode "L" or "P")."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxvision.data.annotated import AnnotatedSource, AnnotationError
from jaxvision.data.sources import Example, ImageDecodeError, decode_image

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def read_class_file(path: str | os.PathLike[str]) -> dict[int, str]:
    """``{id: name}`` from a class list: lines ``<id> <name>``, or one name per line (id =
    line number)."""
    out: dict[int, str] = {}
    lines = [ln.strip() for ln in Path(os.fspath(path)).read_text().splitlines() if ln.strip()]
    for k, line in enumerate(lines):
        first, _, rest = line.partition(" ")
        if first.isdigit() and rest.strip():
            out[int(first)] = rest.strip()
        else:
            out[k] = line
    return out


class _Item(NamedTuple):
    stem: str
    image_path: str
    label_path: str


class SegmentationFolderSource(AnnotatedSource):
    """Image + label-image pairs of one split as a random-access source.

    ``src[i]`` -> {"image": uint8 [H, W, 3], "mask": uint8 [H, W] (class ids 0..C-1, and
    ``ignore_index`` on void pixels, kept as is), "image_id": int64 (= i, the row of
    ``ids``), "orig_size": int32 [2] (H, W)}. Pairs are sorted by file stem.

    Every label value must be a class id below ``num_classes`` or ``ignore_index``; a label
    image breaking that, of another size than its image, or of a colour mode (class ids must
    be the pixel values, PIL "L" or "P") raises naming the file (checked on access).

    Args:
      root: the data set folder holding ``<split>/images`` and ``<split>/labels``.
      split: e.g. "train", "val", "test".
      num_classes: C; default ``len(classes)``.
      classes: class names by id; default read from ``<root>/classes.txt`` when present
        (lines ``<id> <name>``; the ``ignore_index`` entry, a void class, is left out).
      ignore_index: the void label value (kept in ``mask``; 0..255, not a class id).
      on_error: "raise" or "skip" (see :class:`~jaxvision.data.annotated.AnnotatedSource`).
    """

    name = "SegmentationFolderSource"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        *,
        num_classes: int | None = None,
        classes: Sequence[str] | None = None,
        ignore_index: int = 255,
        on_error: str = "raise",
    ):
        self._init_errors(on_error)
        self.root = Path(os.fspath(root)).expanduser()
        self.split = split
        images_dir, labels_dir = self.root / split / "images", self.root / split / "labels"
        for d in (images_dir, labels_dir):
            if not d.is_dir():
                raise FileNotFoundError(
                    f"SegmentationFolderSource: no folder {d}; expected "
                    "<root>/<split>/images/* and <root>/<split>/labels/*.png"
                )
        if not 0 <= ignore_index <= 255:
            raise ValueError(f"SegmentationFolderSource: ignore_index must be in 0..255 (uint8 "
                             f"masks), got {ignore_index}")
        self.ignore_index = int(ignore_index)
        class_file = self.root / "classes.txt"
        if classes is None and class_file.is_file():
            by_id = read_class_file(class_file)
            by_id.pop(self.ignore_index, None)
            if sorted(by_id) != list(range(len(by_id))):
                raise AnnotationError(f"{class_file}: class ids {sorted(by_id)} (without "
                                      f"ignore_index {ignore_index}) are not 0..C-1")
            classes = [by_id[k] for k in range(len(by_id))]
        self.classes = None if classes is None else [str(c) for c in classes]
        if num_classes is None:
            if self.classes is None:
                raise ValueError(
                    f"SegmentationFolderSource: give num_classes or classes (no {class_file})"
                )
            num_classes = len(self.classes)
        elif self.classes is not None and len(self.classes) != num_classes:
            raise ValueError(f"SegmentationFolderSource: num_classes={num_classes} but "
                             f"{len(self.classes)} class names {self.classes}")
        if not 1 <= num_classes <= 256:
            raise ValueError(f"SegmentationFolderSource: num_classes must be in 1..256, got "
                             f"{num_classes}")
        if self.ignore_index < num_classes:
            raise ValueError(
                f"SegmentationFolderSource: ignore_index={ignore_index} is a class id (< "
                f"num_classes={num_classes}); the void value must lie outside 0..C-1"
            )
        self.num_classes = int(num_classes)

        images = {p.stem: p for p in sorted(images_dir.iterdir())
                  if p.suffix.lower() in _IMAGE_EXTENSIONS}
        labels = {p.stem: p for p in labels_dir.glob("*.png")}
        self.items: list[_Item] = []
        for stem in sorted(images):
            if stem not in labels:
                self._reject(str(images[stem]), FileNotFoundError(
                    f"SegmentationFolderSource: image {images[stem]} has no label "
                    f"{labels_dir / stem}.png"))
                continue
            self.items.append(_Item(stem, str(images[stem]), str(labels[stem])))
        orphans = sorted(set(labels) - set(images))
        if orphans:
            warnings.warn(f"SegmentationFolderSource: {len(orphans)} label file(s) in "
                          f"{labels_dir} have no image and are not used: {orphans[:5]}",
                          stacklevel=2)
        if not self.items:
            raise FileNotFoundError(f"SegmentationFolderSource: no image with a label in "
                                    f"{images_dir}")
        self.ids = [it.stem for it in self.items]
        self._warn_skipped()

    def _item_path(self, item: _Item) -> str:
        return item.image_path

    def read_label(self, path: str) -> np.ndarray:
        """Decode and check one label image: uint8 [H, W]."""
        from PIL import Image

        try:
            with Image.open(path) as im:
                if im.mode not in ("L", "P"):
                    raise AnnotationError(
                        f"{path}: label image mode {im.mode!r}; expected class ids as pixel "
                        "values (mode 'L' or 'P'), not colours"
                    )
                mask = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as e:
            if isinstance(e, AnnotationError):
                raise
            raise ImageDecodeError(f"cannot decode label image {path}: {type(e).__name__}: "
                                   f"{e}") from e
        bad = (mask >= self.num_classes) & (mask != self.ignore_index)
        if bad.any():
            values = sorted(int(v) for v in np.unique(mask[bad]))
            raise AnnotationError(
                f"{path}: label values {values} are neither class ids 0..{self.num_classes - 1} "
                f"nor ignore_index {self.ignore_index}"
            )
        return mask

    def _load(self, index: int, item: _Item) -> Example:
        image = decode_image(item.image_path)
        mask = self.read_label(item.label_path)
        if mask.shape != image.shape[:2]:
            raise AnnotationError(f"{item.label_path}: label size {mask.shape[::-1]} differs "
                                  f"from its image's {image.shape[1::-1]} (width, height)")
        return {"image": image, "mask": mask, "image_id": np.int64(index),
                "orig_size": np.asarray(image.shape[:2], np.int32)}

    def __repr__(self) -> str:
        return (f"SegmentationFolderSource({str(self.root)!r}, split={self.split!r}, "
                f"n={len(self)}, num_classes={self.num_classes}, "
                f"ignore_index={self.ignore_index}, on_error={self.on_error!r})")
