"""jaxvision/data/tfds_detection.py: TFDS ``voc`` through ``tfds.data_source`` (mocked with
``tfds.testing.mock_data``, no TensorFlow needed), and ``coco``'s TensorFlow requirement."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

from jaxvision.data import (
    VALID,
    AnnotationError,
    DataLoader,
    TFDSDetectionSource,
    VOCSource,
    tfds_detection_source,
)

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")
HAVE_TF = importlib.util.find_spec("tensorflow") is not None


class _Records:
    """What ``builder.as_data_source`` returns: records plus the builder's dataset_info."""

    def __init__(self, info, records):
        self.dataset_info, self.records = info, records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


def _voc_records_from_bccd(src: VOCSource, n: int) -> list[dict]:
    """Real BCCD images and boxes written as TFDS's voc stores them: normalized
    (ymin, xmin, ymax, xmax) and labels 0..C-1."""
    records = []
    for i in range(n):
        ex = src[i]
        k = int(ex["box_valid"].sum())
        h, w = ex["orig_size"]
        x1, y1, x2, y2 = ex["boxes"][:k].T
        bbox = np.stack([y1 / h, x1 / w, y2 / h, x2 / w], 1).astype(np.float32)
        records.append({
            "image": ex["image"], "image/filename": f"{src.ids[i]}.jpg",
            "objects": {"bbox": bbox, "label": ex["labels"][:k].astype(np.int64) - 1,
                        "is_difficult": np.arange(k) % 5 == 0,
                        "is_truncated": np.zeros(k, bool), "pose": np.zeros(k, np.int64)},
        })
    return records


def test_tfds_voc_gives_the_folder_readers_boxes(shared_data):
    root = shared_data / "bccd"
    if not root.is_dir():
        pytest.skip(f"BCCD not found at {root}")
    folder = VOCSource(root, "test")
    records = _voc_records_from_bccd(folder, 6)

    def as_data_source(builder, split, *args, **kwargs):
        return _Records(builder.info, records)

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        src = tfds_detection_source("voc/2007", "test", max_boxes=100)
    assert isinstance(src, TFDSDetectionSource) and len(src) == 6
    assert src.num_classes == 20 and src.classes[:2] == ["aeroplane", "bicycle"]
    for i in range(6):
        got, want = src[i], folder[i]
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-3)
        for key in ("labels", "box_valid", "orig_size"):
            np.testing.assert_array_equal(got[key], want[key])
        k = int(want["box_valid"].sum())
        assert got["difficult"][:k].tolist() == (np.arange(k) % 5 == 0).tolist()
        assert got["image_id"] == i and got["boxes"].dtype == np.float32
    batches = list(DataLoader(src, 4, shuffle=False, num_epochs=1, pad_final=True,
                              shard_index=0, shard_count=1))
    assert [int(b[VALID].sum()) for b in batches] == [4, 2]
    assert batches[0]["boxes"].shape == (4, 100, 4)


def test_tfds_voc_random_mock_records_are_rejected_clearly():
    # TFDS's random mock data gives the objects' fields different lengths.
    with tfds.testing.mock_data(num_examples=2):
        src = tfds_detection_source("voc/2007", "train")
        with pytest.raises(AnnotationError, match="objects' fields differ in length"):
            src[0]


def test_tfds_crowd_and_degenerate_boxes_are_left_out():
    objects = {"bbox": np.asarray([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9],
                                   [0.3, 0.3, 0.3, 0.6]], np.float32),
               "label": np.asarray([0, 4, 2]), "is_crowd": np.asarray([False, True, False])}
    record = {"image": np.zeros((10, 20, 1), np.uint8), "image/id": 77, "objects": objects}
    src = TFDSDetectionSource([record], classes=[str(c) for c in range(5)], max_boxes=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex = src[0]
    assert len(caught) == 1 and "dropped 1 degenerate" in str(caught[0].message)
    assert ex["image"].shape == (10, 20, 3) and ex["image_id"] == 77
    assert ex["box_valid"].tolist() == [True, False, False, False]
    np.testing.assert_allclose(ex["boxes"][0], [2, 1, 10, 5])  # pixels, x then y
    assert ex["labels"].tolist() == [1, 0, 0, 0] and src.num_crowd == 1
    assert src.num_degenerate == 1
    bad = {**record, "objects": {**objects, "bbox": objects["bbox"] * 2}}
    with pytest.raises(AnnotationError, match=r"normalized boxes must lie in \[0, 1\]"):
        TFDSDetectionSource([bad], classes=list("abcde"))[0]


@pytest.mark.skipif(HAVE_TF, reason="checks the message given without TensorFlow")
def test_tfds_coco_without_tensorflow_says_so():
    with tfds.testing.mock_data(num_examples=1):
        with pytest.raises(ImportError, match=r"'coco' builder needs TensorFlow.*COCOSource"):
            tfds_detection_source("coco/2017", "train")


@pytest.mark.skipif(not HAVE_TF, reason="TFDS's coco builder needs TensorFlow")
def test_tfds_coco_with_tensorflow():  # pragma: no cover - TensorFlow is not installed here
    record = {"image": np.zeros((8, 8, 3), np.uint8), "image/id": 5, "image/filename": "x.jpg",
              "objects": {"bbox": np.asarray([[0, 0, 0.5, 0.5], [0, 0, 1, 1]], np.float32),
                          "label": np.asarray([3, 1]), "is_crowd": np.asarray([False, True]),
                          "area": np.asarray([16, 64]), "id": np.asarray([1, 2])}}

    def as_data_source(builder, split, *args, **kwargs):
        return _Records(builder.info, [record])

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        src = tfds_detection_source("coco/2017", "train", max_boxes=3)
    ex = src[0]
    assert src.num_classes == 80 and ex["image_id"] == 5
    assert ex["labels"].tolist() == [4, 0, 0] and ex["boxes"][0].tolist() == [0, 0, 4, 4]

