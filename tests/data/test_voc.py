"""jaxvision/data/voc.py on the real BCCD folders (Pascal VOC layout) and broken copies."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxvision.data import (
    VALID,
    AnnotationError,
    DataLoader,
    ImageDecodeError,
    VOCSource,
    voc_classes,
)


@pytest.fixture(scope="module")
def bccd(shared_data) -> Path:
    root = shared_data / "bccd"
    if not (root / "Annotations").is_dir():
        pytest.skip(f"BCCD not found at {root}")
    return root


def test_bccd_counts_classes_and_the_two_zero_area_boxes(bccd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainval = VOCSource(bccd, "trainval")
        test = VOCSource(bccd, "test")
    messages = [str(w.message) for w in caught]
    degenerate = [m for m in messages if "degenerate" in m]
    assert len(degenerate) == 1 and "dropped 2 degenerate" in degenerate[0], messages
    assert "BloodImage_00338" in degenerate[0] and "BloodImage_00343" in degenerate[0]
    assert trainval.num_degenerate == 2 and test.num_degenerate == 0
    assert [s[0] for s in trainval.degenerate_boxes] == ["BloodImage_00338", "BloodImage_00343"]

    assert len(trainval) + len(test) == 364 and (len(trainval), len(test)) == (292, 72)
    assert set(trainval.ids).isdisjoint(test.ids)
    # Classes are collected, sorted, from the training split; the test split gets the same.
    assert trainval.classes == test.classes == ["Platelets", "RBC", "WBC"]
    assert voc_classes(bccd, "train") == trainval.classes
    # The annotated boxes: 4,155 / 372 / 361, of which the two zero-area RBC boxes dropped.
    total = {c: trainval.box_counts[c] + test.box_counts[c] for c in trainval.classes}
    assert total == {"RBC": 4155 - 2, "WBC": 372, "Platelets": 361}
    assert not trainval.skipped_paths and not test.skipped_paths


def test_bccd_example_follows_the_contract(bccd):
    with pytest.warns(UserWarning, match="dropped 2 degenerate"):
        src = VOCSource(bccd, "trainval", max_boxes=40)
    i = src.ids.index("BloodImage_00338")
    ex = src[i]
    assert ex["image"].shape == (480, 640, 3) and ex["image"].dtype == np.uint8
    np.testing.assert_array_equal(
        ex["image"], np.asarray(Image.open(bccd / "JPEGImages" / "BloodImage_00338.jpg"))
    )
    assert ex["boxes"].shape == (40, 4) and ex["boxes"].dtype == np.float32
    assert ex["labels"].dtype == np.int32 and ex["box_valid"].dtype == np.bool_
    # 14 objects in the XML, one zero-area: 13 boxes, in file order, as written.
    assert ex["box_valid"].sum() == 13 and not ex["box_valid"][13:].any()
    np.testing.assert_array_equal(ex["boxes"][0], [453, 81, 555, 182])
    np.testing.assert_array_equal(ex["boxes"][12], [244, 327, 509, 480])  # the WBC, after
    assert ex["labels"][:13].tolist() == [2] * 12 + [3]  # RBC x12 (one dropped), WBC
    assert (ex["boxes"][13:] == 0).all() and (ex["labels"][13:] == 0).all()
    assert not ex["difficult"].any()
    assert ex["image_id"] == i and ex["image_id"].dtype == np.int64
    assert ex["orig_size"].tolist() == [480, 640] and ex["orig_size"].dtype == np.int32


def test_bccd_through_the_loader(bccd):
    src = VOCSource(bccd, "test", max_boxes=50)
    batches = list(DataLoader(src, 32, shuffle=False, num_epochs=1, pad_final=True,
                              shard_index=0, shard_count=1))
    assert len(batches) == 3 and [int(b[VALID].sum()) for b in batches] == [32, 32, 8]
    b = batches[1]
    assert b["image"].shape == (32, 480, 640, 3) and b["boxes"].shape == (32, 50, 4)
    assert b["image_id"].tolist() == list(range(32, 64))
    np.testing.assert_array_equal(b["boxes"][5], src[37]["boxes"])
    counted = sum(int(x["box_valid"][x[VALID]].sum()) for x in batches)
    assert counted == sum(src.box_counts.values())


# ---- broken copies -------------------------------------------------------------------------
STEMS = ["BloodImage_00000", "BloodImage_00001", "BloodImage_00002"]


def _copy_voc(bccd: Path, dst: Path) -> Path:
    """A 3-image VOC folder copied from BCCD (split 'train' = the three)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (dst / sub).mkdir(parents=True)
    for s in STEMS:
        shutil.copy(bccd / "Annotations" / f"{s}.xml", dst / "Annotations")
        shutil.copy(bccd / "JPEGImages" / f"{s}.jpg", dst / "JPEGImages")
    (dst / "ImageSets/Main/train.txt").write_text("\n".join(STEMS) + "\n")
    return dst


def _edit_xml(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _check_skip(root: Path, bad: Path, match: str, **kw) -> VOCSource:
    """on_error='skip': the bad item is left out, listed with its reason, and warned about."""
    with pytest.warns(UserWarning, match="skipped 1 bad item"):
        src = VOCSource(root, "train", on_error="skip", **kw)
    assert len(src) == 2 and src.skipped == 1 and src.skipped_paths == {str(bad)}
    assert match in src.skip_reasons[str(bad)]
    return src


def test_malformed_xml(bccd, tmp_path):
    root = _copy_voc(bccd, tmp_path / "voc")
    bad = root / "Annotations" / f"{STEMS[1]}.xml"
    bad.write_text(bad.read_text()[:300])  # cut mid-element
    with pytest.raises(AnnotationError, match=rf"{STEMS[1]}\.xml: malformed XML"):
        VOCSource(root, "train")
    src = _check_skip(root, bad, "malformed XML")
    assert src.ids == [STEMS[0], STEMS[2]]
    root2 = _copy_voc(bccd, tmp_path / "voc2")
    _edit_xml(root2 / "Annotations" / f"{STEMS[2]}.xml", "<xmin>", "<xmin>x")
    with pytest.raises(AnnotationError, match=r"00002\.xml: object 0: <xmin> is 'x"):
        VOCSource(root2, "train")
    _edit_xml(root2 / "Annotations" / f"{STEMS[1]}.xml", "<name>RBC</name>", "<nam>RBC</nam>")
    with pytest.raises(AnnotationError, match=r"00001\.xml: object 1: missing <name>"):
        VOCSource(root2, "train")


def test_missing_image_and_annotation(bccd, tmp_path):
    root = _copy_voc(bccd, tmp_path / "voc")
    (root / "JPEGImages" / f"{STEMS[0]}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=rf"no image for '{STEMS[0]}'"):
        VOCSource(root, "train")
    _check_skip(root, root / "Annotations" / f"{STEMS[0]}.xml", "no image")
    (root / "ImageSets/Main/val.txt").write_text("BloodImage_09999\n")
    with pytest.raises(FileNotFoundError, match=r"BloodImage_09999\.xml \(listed in split"):
        VOCSource(root, "val", classes=["RBC"])
    with pytest.raises(FileNotFoundError, match=r"no split file .*trainval\.txt .*'train', 'val'"):
        VOCSource(root, "trainval")


def test_box_outside_the_image(bccd, tmp_path):
    root = _copy_voc(bccd, tmp_path / "voc")
    bad = root / "Annotations" / f"{STEMS[2]}.xml"
    text = bad.read_text()
    xmax = text.split("<xmax>")[1].split("</xmax>")[0]
    _edit_xml(bad, f"<xmax>{xmax}</xmax>", "<xmax>641</xmax>")
    with pytest.raises(AnnotationError, match=r"00002\.xml: box 0 .*641.* outside the 640x480"):
        VOCSource(root, "train")
    _check_skip(root, bad, "outside")


def test_unknown_class_and_too_many_boxes(bccd, tmp_path):
    root = _copy_voc(bccd, tmp_path / "voc")
    with pytest.raises(AnnotationError, match=r"object name\(s\) \['RBC'\] not in the classes"):
        VOCSource(root, "train", classes=["Platelets", "WBC"])
    with pytest.raises(ValueError, match="boxes exceed max_boxes=3"):
        VOCSource(root, "train", max_boxes=3)


def test_corrupt_jpeg_raises_on_access_or_is_skipped(bccd, tmp_path):
    root = _copy_voc(bccd, tmp_path / "voc")
    bad = root / "JPEGImages" / f"{STEMS[1]}.jpg"
    bad.write_bytes(bad.read_bytes()[:2000])  # truncated
    src = VOCSource(root, "train")  # found only when decoded
    assert len(src) == 3 and src[0]["image"].shape == (480, 640, 3)
    with pytest.raises(ImageDecodeError, match=rf"{STEMS[1]}\.jpg"):
        src[1]
    skip = VOCSource(root, "train", on_error="skip")
    with pytest.warns(UserWarning, match=rf"skipping .*{STEMS[1]}\.jpg"):
        ex = skip[1]
    assert ex["image_id"] == 2  # the next good item
    assert skip.skipped_paths == {str(bad)} and "cannot decode" in skip.skip_reasons[str(bad)]
    # Worker processes report the files they skipped back to the loader's source.
    fresh = VOCSource(root, "train", on_error="skip")
    batches = list(DataLoader(fresh, 3, shuffle=False, num_epochs=1, worker_count=1,
                              shard_index=0, shard_count=1))
    assert batches[0]["image_id"].tolist() == [0, 2, 2] and fresh.skipped_paths == {str(bad)}


def test_image_size_differs_from_the_xml(bccd, tmp_path):
    root = _copy_voc(bccd, tmp_path / "voc")
    img = root / "JPEGImages" / f"{STEMS[0]}.jpg"
    Image.open(img).resize((320, 240)).save(img)
    src = VOCSource(root, "train")
    with pytest.raises(AnnotationError, match=r"00000\.jpg: decoded size 320x240 differs"):
        src[0]
