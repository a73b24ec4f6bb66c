"""jaxvision/data/segmentation.py on the real CamVid folders and on broken copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxvision.data import (
    VALID,
    AnnotationError,
    DataLoader,
    ImageDecodeError,
    SegmentationFolderSource,
)

VOID = 11


@pytest.fixture(scope="module")
def camvid(shared_data) -> Path:
    root = shared_data / "camvid"
    if not (root / "train" / "labels").is_dir():
        pytest.skip(f"CamVid not found at {root}")
    return root


def test_camvid_splits_classes_and_label_values(camvid):
    sizes = {}
    for split in ("train", "val", "test"):
        src = SegmentationFolderSource(camvid, split, ignore_index=VOID)
        sizes[split] = len(src)
        assert src.num_classes == 11 and src.classes[0] == "Sky" and src.classes[-1] == "Bicyclist"
        values = set()
        for item in src.items:  # every label image, checked by the source's own reader
            values |= set(np.unique(src.read_label(item.label_path)).tolist())
        assert values <= set(range(12)) and VOID in values and 0 in values
    assert sizes == {"train": 367, "val": 101, "test": 233}
    # Without a void value, "Unlabelled" is class 11 of 12.
    assert SegmentationFolderSource(camvid, "val").num_classes == 12


def test_camvid_example_and_loader(camvid):
    src = SegmentationFolderSource(camvid, "val", ignore_index=VOID)
    ex = src[3]
    stem = src.ids[3]
    assert ex["image"].shape == (360, 480, 3) and ex["image"].dtype == np.uint8
    assert ex["mask"].shape == (360, 480) and ex["mask"].dtype == np.uint8
    np.testing.assert_array_equal(ex["mask"], np.asarray(Image.open(
        camvid / "val" / "labels" / f"{stem}.png")))
    np.testing.assert_array_equal(ex["image"], np.asarray(Image.open(
        camvid / "val" / "images" / f"{stem}.jpg").convert("RGB")))
    assert ex["image_id"] == 3 and ex["orig_size"].tolist() == [360, 480]
    b = next(iter(DataLoader(src, 4, seed=0, shard_index=0, shard_count=1)))
    assert b["mask"].shape == (4, 360, 480) and b[VALID].all()
    np.testing.assert_array_equal(b["mask"][1], src[int(b["image_id"][1])]["mask"])


def _copy(camvid: Path, dst: Path, n: int = 3) -> Path:
    for sub in ("images", "labels"):
        (dst / "train" / sub).mkdir(parents=True)
    stems = sorted(p.stem for p in (camvid / "train" / "images").iterdir())[:n]
    for s in stems:
        shutil.copy(camvid / "train" / "images" / f"{s}.jpg", dst / "train" / "images")
        shutil.copy(camvid / "train" / "labels" / f"{s}.png", dst / "train" / "labels")
    shutil.copy(camvid / "classes.txt", dst)
    return dst


def test_label_value_above_the_class_count(camvid, tmp_path):
    root = _copy(camvid, tmp_path)
    label = sorted((root / "train" / "labels").iterdir())[1]
    mask = np.asarray(Image.open(label)).copy()
    mask[0, :5] = 12
    Image.fromarray(mask).save(label)
    src = SegmentationFolderSource(root, "train", ignore_index=VOID)
    with pytest.raises(AnnotationError, match=rf"{label.name}: label values \[12\] are neither "
                                              r"class ids 0\.\.10 nor ignore_index 11"):
        src[1]
    skip = SegmentationFolderSource(root, "train", ignore_index=VOID, on_error="skip")
    with pytest.warns(UserWarning, match="skipping"):
        assert skip[1]["image_id"] == 2
    image = str(root / "train" / "images" / f"{label.stem}.jpg")
    assert skip.skipped_paths == {image} and "label values [12]" in skip.skip_reasons[image]
    # 255 is fine as the void value of a 12-class reading.
    mask[0, :5] = 255
    Image.fromarray(mask).save(label)
    assert SegmentationFolderSource(root, "train")[1]["mask"][0, 0] == 255


def test_missing_label_corrupt_image_colour_label_and_size(camvid, tmp_path):
    root = _copy(camvid, tmp_path)
    labels = sorted((root / "train" / "labels").iterdir())
    images = sorted((root / "train" / "images").iterdir())
    labels[0].unlink()
    with pytest.raises(FileNotFoundError, match=rf"{images[0].name} has no label"):
        SegmentationFolderSource(root, "train", ignore_index=VOID)
    with pytest.warns(UserWarning, match="skipped 1 bad item"):
        src = SegmentationFolderSource(root, "train", ignore_index=VOID, on_error="skip")
    assert len(src) == 2 and src.skipped_paths == {str(images[0])}

    shutil.copy(camvid / "train" / "labels" / labels[0].name, labels[0])
    strict = SegmentationFolderSource(root, "train", ignore_index=VOID)
    images[1].write_bytes(images[1].read_bytes()[:3000])
    with pytest.raises(ImageDecodeError, match=images[1].name):
        strict[1]
    Image.open(labels[2]).convert("RGB").save(labels[2])
    with pytest.raises(AnnotationError, match=r"mode 'RGB'; expected class ids"):
        strict[2]
    Image.open(images[0]).resize((100, 80)).save(images[0])
    with pytest.raises(AnnotationError, match=r"label size \(480, 360\) differs from its "
                                              r"image's \(100, 80\)"):
        strict[0]


def test_argument_errors(camvid, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no folder .*nosplit/images"):
        SegmentationFolderSource(camvid, "nosplit")
    with pytest.raises(AnnotationError, match=r"classes\.txt: class ids .* are not 0\.\.C-1"):
        SegmentationFolderSource(camvid, "val", ignore_index=5)
    root = _copy(camvid, tmp_path, n=1)
    (root / "classes.txt").unlink()
    with pytest.raises(ValueError, match="ignore_index=5 is a class id"):
        SegmentationFolderSource(root, "train", num_classes=12, ignore_index=5)
    with pytest.raises(ValueError, match="give num_classes or classes"):
        SegmentationFolderSource(root, "train")
    assert SegmentationFolderSource(root, "train", num_classes=11, ignore_index=11).classes is None
