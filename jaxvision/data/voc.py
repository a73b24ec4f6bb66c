"""Pascal VOC detection folders: ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``,
``ImageSets/Main/<split>.txt``.

Coordinates are read as written, as continuous pixel coordinates (torchvision's convention,
as torchvision's ``VOCDetection`` users and mmdetection >= 2 read VOC: no -1 shift, area
``(x2 - x1) * (y2 - y1)``), so a box with ``xmin == xmax`` has zero area and is dropped.
The image id is the file stem listed in the split file; the XML's ``<filename>``,
``<path>`` and ``<folder>`` name the annotator's machine and are ignored.
"""

from __future__ import annotations

import collections
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

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

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


@dataclass
class VOCObject:
    """One ``<object>`` of an annotation file: ``box`` (x1, y1, x2, y2) as written."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool


class _Item(NamedTuple):
    stem: str
    image_path: str
    boxes: np.ndarray  # float32 [K, 4]
    labels: np.ndarray  # int32 [K]
    difficult: np.ndarray  # bool [K]
    size: tuple[int, int] | None  # (H, W) from the XML


@dataclass
class VOCAnnotation:
    """One parsed annotation file; ``size`` = (height, width) from ``<size>`` or None."""

    stem: str
    xml_path: str
    size: tuple[int, int] | None
    objects: list[VOCObject]


def _text(node: ET.Element, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(f"{where}: missing <{tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = _text(node, tag, where)
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(f"{where}: <{tag}> is {text!r}, not a number") from None


def parse_voc_xml(path: str | os.PathLike[str]) -> VOCAnnotation:
    """Parse one VOC annotation file.

    Raises:
      AnnotationError: naming the file, when the XML is malformed or an object lacks its
        ``<name>`` or a numeric ``<bndbox>``.
    """
    path = str(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise AnnotationError(f"{path}: malformed XML ({e})") from None
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read the annotation ({e})") from None
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    size = None
    node = root.find("size")
    if node is not None:
        w, h = _number(node, "width", path), _number(node, "height", path)
        if w > 0 and h > 0:  # some VOC-style files write 0 when unknown
            size = (int(h), int(w))
    objects = []
    for k, obj in enumerate(root.iter("object")):
        where = f"{path}: object {k}"
        name = _text(obj, "name", where)
        bnd = obj.find("bndbox")
        if bnd is None:
            raise AnnotationError(f"{where}: missing <bndbox>")
        box = tuple(_number(bnd, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        diff = obj.find("difficult")
        difficult = diff is not None and (diff.text or "0").strip() not in ("0", "")
        objects.append(VOCObject(name, box, difficult))  # type: ignore[arg-type]
    return VOCAnnotation(Path(path).stem, path, size, objects)


def read_split(root: str | os.PathLike[str], split: str) -> list[str]:
    """The ids (file stems) listed in ``root/ImageSets/Main/<split>.txt``, in file order."""
    main = Path(os.fspath(root)).expanduser() / "ImageSets" / "Main"
    path = main / f"{split}.txt"
    if not path.is_file():
        have = sorted(p.stem for p in main.glob("*.txt")) if main.is_dir() else []
        raise FileNotFoundError(
            f"VOC: no split file {path} (splits there: {have or 'none'}); expected "
            "<root>/ImageSets/Main/<split>.txt"
        )
    # Main/<class>_<split>.txt lines carry a second column (1/-1); only the id matters.
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def voc_classes(root: str | os.PathLike[str], split: str = "train",
                on_error: str = "raise") -> list[str]:
    """The sorted object names of the annotations of ``split`` (the training split).

    Raises AnnotationError naming the file for a malformed or missing annotation, unless
    ``on_error="skip"`` (then such files are passed over: the split's own source reports them).
    """
    root = Path(os.fspath(root)).expanduser()
    names: set[str] = set()
    for stem in read_split(root, split):
        try:
            names |= {o.name for o in parse_voc_xml(root / "Annotations" / f"{stem}.xml").objects}
        except AnnotationError:
            if on_error == "raise":
                raise
    if not names:
        raise AnnotationError(f"VOC: the annotations of split {split!r} under {root} name no "
                              "object; give the classes explicitly")
    return sorted(names)


class VOCSource(AnnotatedSource):
    """A Pascal VOC detection split as a random-access source of dense examples.

    ``src[i]`` -> {"image": uint8 [H, W, 3], "boxes": float32 [max_boxes, 4] (x1, y1, x2, y2),
    "labels": int32 [max_boxes] (1..C, 0 on padding), "box_valid": bool [max_boxes],
    "difficult": bool [max_boxes], "image_id": int64 (= i, the row of ``ids``),
    "orig_size": int32 [2] (H, W)}. ``ids[i]`` is the file stem.

    Every annotation of the split is parsed up front (so bad XML, unknown class names,
    missing images and boxes outside the image are found before training starts); images are
    decoded on access. Boxes with zero area are dropped with one warning counting them
    (``num_degenerate``, ``degenerate_boxes``). ``difficult`` objects are kept, flagged.

    Args:
      root: the VOC folder (holding ``Annotations``, ``JPEGImages``, ``ImageSets``).
      split: the ``ImageSets/Main/<split>.txt`` to read.
      classes: class names in label order (label = position + 1); None collects the sorted
        names found in the annotations of ``classes_split``.
      classes_split: the training split, whose names make the class list when ``classes``
        is None (so every split of a data set gets the same labels).
      max_boxes: boxes per example after padding; an image with more raises.
      on_error: "raise" (the default) raises naming the file; "skip" leaves bad items out
        (see :class:`~jaxvision.data.annotated.AnnotatedSource`).

    Raises:
      AnnotationError: malformed XML, an object named outside ``classes``, a box outside the
        image, an image whose decoded size differs from the XML's ``<size>``.
      FileNotFoundError: a missing split file, annotation file or image.
      ImageDecodeError: an undecodable image (on access).
    """

    name = "VOCSource"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "trainval",
        *,
        classes: Sequence[str] | None = None,
        classes_split: str = "train",
        max_boxes: int = 100,
        on_error: str = "raise",
    ):
        self._init_errors(on_error)
        self.root = Path(os.fspath(root)).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"VOCSource: {self.root} is not a directory")
        self.split = split
        self.max_boxes = check_max_boxes(max_boxes, self.name)
        stems = read_split(self.root, split)
        parsed: list[tuple[VOCAnnotation, Path]] = []
        for stem in stems:
            xml = self.root / "Annotations" / f"{stem}.xml"
            try:
                if not xml.is_file():
                    raise FileNotFoundError(f"VOCSource: {xml} (listed in split {split!r}) "
                                            "does not exist")
                ann = parse_voc_xml(xml)
                image = self._find_image(stem)
            except (AnnotationError, FileNotFoundError) as e:
                self._reject(str(xml), e)
                continue
            parsed.append((ann, image))
        if classes is None:
            if classes_split == split:
                names = {o.name for a, _ in parsed for o in a.objects}
                classes = sorted(names)
            else:
                classes = voc_classes(self.root, classes_split, on_error)
        self.classes = [str(c) for c in classes]
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"VOCSource: classes repeat a name: {self.classes}")
        self.num_classes = len(self.classes)
        self.class_to_label = {c: k + 1 for k, c in enumerate(self.classes)}

        self.items: list[_Item] = []
        self.degenerate_boxes: list[tuple[str, tuple[float, ...]]] = []
        for ann, image in parsed:
            try:
                item = self._to_item(ann, image)
            except (AnnotationError, ValueError) as e:
                self._reject(ann.xml_path, e)
                continue
            self.items.append(item)
        if not self.items:
            raise AnnotationError(f"VOCSource: no usable item in split {split!r} of {self.root}")
        self.ids = [it.stem for it in self.items]
        counts = collections.Counter(int(v) for it in self.items for v in it.labels)
        self.box_counts = {c: counts.get(k + 1, 0) for k, c in enumerate(self.classes)}
        warn_degenerate(f"VOCSource({self.root.name}, {split!r})", self.degenerate_boxes)
        self._warn_skipped()

    def _find_image(self, stem: str) -> Path:
        folder = self.root / "JPEGImages"
        for ext in _IMAGE_EXTENSIONS:
            p = folder / f"{stem}{ext}"
            if p.is_file():
                return p
        raise FileNotFoundError(f"VOCSource: no image for {stem!r}: {folder / stem}.jpg "
                                "does not exist")

    def _to_item(self, ann: VOCAnnotation, image: Path) -> _Item:
        boxes = np.asarray([o.box for o in ann.objects], np.float32).reshape(-1, 4)
        unknown = sorted({o.name for o in ann.objects} - set(self.class_to_label))
        if unknown:
            raise AnnotationError(f"{ann.xml_path}: object name(s) {unknown} not in the "
                                  f"classes {self.classes}")
        labels = np.asarray([self.class_to_label[o.name] for o in ann.objects], np.int32)
        difficult = np.asarray([o.difficult for o in ann.objects], bool)
        if ann.size is not None:
            check_boxes_inside(boxes, *ann.size, where=ann.xml_path)
        bad = degenerate(boxes)
        self.degenerate_boxes += [(ann.stem, tuple(boxes[k].tolist()))
                                  for k in np.flatnonzero(bad)]
        keep = ~bad
        boxes, labels, difficult = boxes[keep], labels[keep], difficult[keep]
        if len(boxes) > self.max_boxes:
            raise ValueError(f"{ann.xml_path}: {len(boxes)} boxes exceed max_boxes="
                             f"{self.max_boxes}; raise max_boxes (config data.max_boxes)")
        return _Item(ann.stem, str(image), boxes, labels, difficult, ann.size)

    def _item_path(self, item: _Item) -> str:
        return item.image_path

    def _load(self, index: int, item: _Item) -> Example:
        stem, image_path, boxes, labels, difficult, size = item
        image = decode_image(image_path)
        h, w = image.shape[:2]
        if size is not None and size != (h, w):
            raise AnnotationError(
                f"{image_path}: decoded size {w}x{h} differs from the annotation's "
                f"<size> {size[1]}x{size[0]} (width x height)"
            )
        check_boxes_inside(boxes, h, w, where=f"{self.root / 'Annotations' / stem}.xml")
        ex = {"image": image}
        ex.update(pad_boxes(boxes, labels, self.max_boxes, difficult, where=image_path))
        ex["image_id"] = np.int64(index)
        ex["orig_size"] = np.asarray([h, w], np.int32)
        return ex

    def __repr__(self) -> str:
        return (f"VOCSource({str(self.root)!r}, split={self.split!r}, n={len(self)}, "
                f"classes={self.classes}, max_boxes={self.max_boxes}, "
                f"on_error={self.on_error!r})")
