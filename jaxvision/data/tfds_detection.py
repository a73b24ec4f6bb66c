"""TFDS detection data sets (``voc``, ``coco``) through ``tfds.data_source`` as dense examples.

TFDS stores boxes normalized as (ymin, xmin, ymax, xmax) in [0, 1] and labels 0..C-1; the
source returns pixel (x1, y1, x2, y2) boxes and labels 1..C, as the folder readers
(:class:`~jaxvision.data.voc.VOCSource`, :class:`~jaxvision.data.coco.COCOSource`) do.

Reading prepared ``voc`` data needs no TensorFlow. TFDS's ``coco`` builder module imports
TensorFlow, so ``coco`` works only where TensorFlow is installed (else a clear ImportError);
the COCO JSON reader (:class:`~jaxvision.data.coco.COCOSource`) needs only pycocotools.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from jaxvision.data.annotated import (
    AnnotationError,
    check_max_boxes,
    degenerate,
    pad_boxes,
)
from jaxvision.data.sources import Example, _check_index


class TFDSDetectionSource:
    """A TFDS detection split (features ``image`` and ``objects/{bbox,label}``) as a source.

    ``src[i]`` -> {"image": uint8 [H, W, 3], "boxes": float32 [max_boxes, 4] (x1, y1, x2, y2)
    pixels, "labels": int32 [max_boxes] (TFDS label + 1; 0 on padding), "box_valid": bool
    [max_boxes], "difficult": bool [max_boxes] (``objects/is_difficult`` when present),
    "image_id": int64 (``image/id`` when present, else i), "orig_size": int32 [2]}.
    Objects flagged ``is_crowd`` are left out (as :class:`~jaxvision.data.coco.COCOSource`
    does); zero-area boxes are dropped with a warning and counted in ``num_degenerate``
    (as they are met: the records are not scanned up front).

    Args:
      data_source: what ``tfds.data_source(...)`` returns (any random-access sequence of
        records with a ``dataset_info`` attribute, or without one when ``classes`` is given).
      max_boxes: boxes per example after padding; a record with more raises.
      classes: class names in TFDS label order; default the ``objects/label`` names.
    """

    name = "TFDSDetectionSource"

    def __init__(self, data_source: Any, *, max_boxes: int = 100,
                 classes: list[str] | None = None):
        self.data_source = data_source
        self.max_boxes = check_max_boxes(max_boxes, self.name)
        info = getattr(data_source, "dataset_info", None)
        features = getattr(info, "features", None)
        if features is not None:
            if "image" not in features or "objects" not in features:
                raise KeyError(f"{self.name}: dataset has no 'image' and 'objects' features; "
                               f"features: {list(features)}")
            objects = features["objects"]
            obj_keys = list(getattr(objects, "feature", objects).keys())
            for key in ("bbox", "label"):
                if key not in obj_keys:
                    raise KeyError(f"{self.name}: 'objects' has no {key!r}; it has {obj_keys}")
            if classes is None:
                classes = list(getattr(objects, "feature", objects)["label"].names)
        if classes is None:
            raise ValueError(f"{self.name}: no dataset_info to read the class names from; "
                             "pass classes")
        self.classes = [str(c) for c in classes]
        self.num_classes = len(self.classes)
        self.num_degenerate = 0
        self.num_crowd = 0

    def __len__(self) -> int:
        return len(self.data_source)

    def _convert(self, index: int, record: dict[str, Any]) -> Example:
        image = np.asarray(record["image"], np.uint8)
        if image.ndim == 3 and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        h, w = image.shape[:2]
        objects = record["objects"]
        where = f"{self.name} record {index}"
        bbox = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
        label = np.asarray(objects["label"], np.int64).reshape(-1)
        k = len(bbox)
        flags = {key: np.asarray(objects[key], bool).reshape(-1)
                 for key in ("is_difficult", "is_crowd") if key in objects}
        lengths = {"bbox": k, "label": len(label), **{f: len(v) for f, v in flags.items()}}
        if len(set(lengths.values())) > 1:
            raise AnnotationError(f"{where}: the objects' fields differ in length {lengths}")
        if k and (bbox.min() < 0 or bbox.max() > 1):
            raise AnnotationError(f"{where}: normalized boxes must lie in [0, 1], got range "
                                  f"[{bbox.min()}, {bbox.max()}]")
        if k and (label.min() < 0 or label.max() >= self.num_classes):
            raise AnnotationError(f"{where}: object labels {sorted(set(label.tolist()))} "
                                  f"outside 0..{self.num_classes - 1}")
        # (ymin, xmin, ymax, xmax) normalized -> (x1, y1, x2, y2) pixels
        boxes = bbox[:, [1, 0, 3, 2]] * np.asarray([w, h, w, h], np.float32)
        keep = np.ones(k, bool)
        if "is_crowd" in flags:
            keep &= ~flags["is_crowd"]
            self.num_crowd += int(flags["is_crowd"].sum())
        bad = degenerate(boxes) & keep
        if bad.any():
            self.num_degenerate += int(bad.sum())
            warnings.warn(f"{where}: dropped {int(bad.sum())} degenerate (zero-area) box(es) "
                          f"{boxes[bad].tolist()}", stacklevel=3)
        keep &= ~bad
        difficult = flags.get("is_difficult", np.zeros(k, bool))[keep]
        ex: Example = {"image": image}
        ex.update(pad_boxes(boxes[keep], (label[keep] + 1).astype(np.int32), self.max_boxes,
                            difficult, where=where))
        image_id = record.get("image/id", index)
        ex["image_id"] = np.int64(image_id)
        ex["orig_size"] = np.asarray([h, w], np.int32)
        return ex

    def __getitem__(self, index: int) -> Example:
        i = _check_index(index, len(self), self.name)
        return self._convert(i, self.data_source[i])

    def __repr__(self) -> str:
        return (f"TFDSDetectionSource(n={len(self)}, classes={self.num_classes}, "
                f"max_boxes={self.max_boxes})")


def tfds_detection_source(
    name: str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    max_boxes: int = 100,
    download: bool = False,
) -> TFDSDetectionSource:
    """A TFDS detection split (e.g. ``"voc/2007"``, ``"coco/2017"``) as a dense source.

    Raises:
      ImportError: without tensorflow-datasets; for builders that import TensorFlow
        (``coco``) where TensorFlow is not installed, saying so.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "tfds_detection_source needs tensorflow-datasets: pip install 'jaxvision[tfds]'"
        ) from e
    try:
        ds = tfds.data_source(name, split=split, download=download,
                              data_dir=None if data_dir is None else os.fspath(data_dir))
    except ModuleNotFoundError as e:
        missing = getattr(e, "name", None) or ""
        cause = e.__cause__ if isinstance(e.__cause__, ModuleNotFoundError) else None
        missing = missing or (getattr(cause, "name", "") if cause else "")
        if missing.split(".")[0] == "tensorflow" or "tensorflow'" in str(e):
            raise ImportError(
                f"TFDS's {name.split('/')[0]!r} builder needs TensorFlow, which is not "
                "installed: pip install tensorflow (or, for COCO, read the annotation JSON "
                "with COCOSource / data.source='coco', which needs only pycocotools)"
            ) from e
        raise
    return TFDSDetectionSource(ds, max_boxes=max_boxes)
