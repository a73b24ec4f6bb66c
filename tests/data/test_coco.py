"""jaxvision/data/coco.py against pycocotools' own API on coco128, and on broken copies."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxvision.data import VALID, AnnotationError, COCOSource, DataLoader, ImageDecodeError

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

ANN = "annotations/instances_train2017.json"


@pytest.fixture(scope="module")
def coco128(shared_data) -> Path:
    root = shared_data / "coco128"
    if not (root / ANN).is_file():
        pytest.skip(f"coco128 not found at {root}")
    return root


@pytest.fixture(scope="module")
def api(coco128) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(coco128 / ANN))


def test_coco128_equals_pycocotools(coco128, api):
    src = COCOSource(coco128 / ANN, coco128 / "train2017", max_boxes=50, masks=True)
    img_ids = sorted(api.getImgIds())
    assert len(src) == len(img_ids) == 128 and src.image_ids == img_ids
    cat_ids = sorted(api.getCatIds())
    assert len(cat_ids) == src.num_classes == 80
    assert src.classes == [c["name"] for c in api.loadCats(cat_ids)]
    assert src.num_crowd == len(api.getAnnIds(iscrowd=True)) == 10
    total = empty = grey = 0
    for i, image_id in enumerate(img_ids):
        ex = src[i]
        info = api.loadImgs(image_id)[0]
        anns = api.loadAnns(api.getAnnIds(imgIds=image_id, iscrowd=False))
        k = len(anns)
        assert ex["image_id"] == image_id
        assert ex["image"].shape == (info["height"], info["width"], 3)
        assert ex["orig_size"].tolist() == [info["height"], info["width"]]
        assert ex["box_valid"].sum() == k and not ex["box_valid"][k:].any()
        want = np.asarray([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        want[:, 2:] += want[:, :2]  # xywh -> xyxy
        np.testing.assert_allclose(ex["boxes"][:k], want, rtol=0, atol=1e-4)
        assert ex["labels"][:k].tolist() == [cat_ids.index(a["category_id"]) + 1 for a in anns]
        assert ex["masks"].shape == (50, info["height"], info["width"])
        for j, a in enumerate(anns):
            np.testing.assert_array_equal(ex["masks"][j], api.annToMask(a))
            # Each mask lies inside its own box (up to the rasterizer's edge pixel).
            ys, xs = np.nonzero(ex["masks"][j])
            x1, y1, x2, y2 = want[j]
            assert xs.min() >= np.floor(x1) - 1 and xs.max() <= np.ceil(x2)
            assert ys.min() >= np.floor(y1) - 1 and ys.max() <= np.ceil(y2)
        assert not ex["masks"][k:].any() and not ex["difficult"].any()
        total += k
        empty += k == 0
        with Image.open(coco128 / "train2017" / info["file_name"]) as im:
            if im.mode == "L":  # decoded to RGB like every other image
                grey += 1
                assert _is_grey(ex["image"])
    assert total == 939 - 10 and empty == 2 and grey == 1


def _is_grey(image: np.ndarray) -> bool:
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


def test_coco128_through_the_loader(coco128):
    src = COCOSource(coco128 / ANN, coco128 / "train2017", max_boxes=50)
    with pytest.raises(ValueError, match="field 'image' has different shapes"):
        next(iter(DataLoader(src, 8, shuffle=False, shard_index=0, shard_count=1)))

    def crop(ex, rng):  # a fixed canvas, as the dense transform makes
        out = dict(ex)
        out["image"] = np.zeros((64, 64, 3), np.uint8)
        return out

    b = next(iter(DataLoader(src, 8, seed=1, shard_index=0, shard_count=1, transform=crop)))
    assert b["image"].shape == (8, 64, 64, 3) and b["boxes"].shape == (8, 50, 4)
    assert b[VALID].all() and set(b["image_id"].tolist()) <= set(src.image_ids)


def _write_copy(coco128: Path, dst: Path, n: int = 3, edit=None) -> tuple[Path, Path, dict]:
    """The first ``n`` images of coco128 and their annotations, edited by ``edit(data)``."""
    data = json.loads((coco128 / ANN).read_text())
    keep = sorted(i["id"] for i in data["images"])[:n]
    data["images"] = [i for i in data["images"] if i["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    images = dst / "images"
    images.mkdir(parents=True)
    for info in data["images"]:
        shutil.copy(coco128 / "train2017" / info["file_name"], images)
    if edit is not None:
        edit(data)
    ann = dst / "instances.json"
    ann.write_text(json.dumps(data))
    return ann, images, data


def test_rle_masks_equal_their_polygons(coco128, tmp_path):
    """A non-crowd annotation stored as RLE decodes to the same mask as its polygon."""
    def to_rle(data):
        data["orig"] = copy.deepcopy(data["annotations"])
        for a in data["annotations"][:4]:
            info = next(i for i in data["images"] if i["id"] == a["image_id"])
            rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], info["height"],
                                                          info["width"]))
            a["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}

    ann, images, data = _write_copy(coco128, tmp_path, edit=to_rle)
    src = COCOSource(ann, images, masks=True)
    with contextlib.redirect_stdout(io.StringIO()):
        polygons = COCO(str(coco128 / ANN))
    seen = 0
    for i in range(len(src)):
        ex = src[i]
        anns = [a for a in data["orig"] if a["image_id"] == ex["image_id"] and not a["iscrowd"]]
        for j, a in enumerate(anns):
            np.testing.assert_array_equal(ex["masks"][j], polygons.annToMask(a))
            seen += 1
    assert seen > 4


def test_bad_input_errors_and_skips(coco128, tmp_path):
    def outside(data):
        data["annotations"][0]["bbox"][2] += 1000
    ann, images, data = _write_copy(coco128, tmp_path / "outside", edit=outside)
    first = data["annotations"][0]
    with pytest.raises(AnnotationError, match=rf"image {first['image_id']}, annotation "
                                              rf"{first['id']}: box 0 .* outside the"):
        COCOSource(ann, images)
    with pytest.warns(UserWarning, match="skipped 1 bad item"):
        src = COCOSource(ann, images, on_error="skip")
    assert len(src) == 2 and first["image_id"] not in src.image_ids and src.skipped == 1

    def unknown(data):
        data["annotations"][1]["category_id"] = 999
    ann, images, _ = _write_copy(coco128, tmp_path / "unknown", edit=unknown)
    with pytest.raises(AnnotationError, match="category_id 999 is not among"):
        COCOSource(ann, images)

    ann, images, data = _write_copy(coco128, tmp_path / "missing")
    name = data["images"][1]["file_name"]
    (images / name).unlink()
    with pytest.raises(FileNotFoundError, match=rf"image .*{name} \(id"):
        COCOSource(ann, images)
    with pytest.warns(UserWarning, match="skipped 1 bad item"):
        src = COCOSource(ann, images, on_error="skip")
    assert src.skipped_paths == {str(images / name)}

    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"images": [')
    with pytest.raises(AnnotationError, match=r"bad\.json: not a COCO annotation file"):
        COCOSource(bad_json, images)
    with pytest.raises(ValueError, match="differ from the categories"):
        COCOSource(ann, images, classes=["cat", "dog"], on_error="skip")


def test_corrupt_jpeg_and_degenerate_box(coco128, tmp_path):
    def zero(data):
        data["annotations"][0]["bbox"][3] = 0.0
    ann, images, data = _write_copy(coco128, tmp_path, edit=zero)
    with pytest.warns(UserWarning, match=r"dropped 1 degenerate \(zero-area\) boxes"):
        src = COCOSource(ann, images)
    assert src.num_degenerate == 1
    first = sorted(data["images"], key=lambda i: i["id"])
    bad = images / first[1]["file_name"]
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(ImageDecodeError, match=first[1]["file_name"]):
        src[1]
    with pytest.warns(UserWarning):
        skip = COCOSource(ann, images, on_error="skip")
    with pytest.warns(UserWarning, match="skipping"):
        assert skip[1]["image_id"] == first[2]["id"]
    assert skip.skipped_paths == {str(bad)}
