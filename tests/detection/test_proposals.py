"""Selective-search proposals (OpenCV) on real BCCD images: geometry, determinism, cache,
recall, whole-source pass with failures, bad input."""

from __future__ import annotations

import dataclasses
import shutil
import warnings

import numpy as np
import pytest

pytest.importorskip("cv2")

from jaxvision.data import VOCSource  # noqa: E402
from jaxvision.data.sources import ImageDecodeError, decode_image  # noqa: E402
from jaxvision.detection.proposals import (  # noqa: E402
    ProposalCache,
    SelectiveSearch,
    recall_at_iou,
    source_proposals,
)

# Small search scale and cap: every test here stays well under a second of searching.
SEARCH = SelectiveSearch(mode="fast", short_side=200, min_size=10.0, max_proposals=1000)


@pytest.fixture(scope="module")
def bccd(shared_data):
    root = shared_data / "bccd"
    if not root.is_dir():
        pytest.skip(f"BCCD not found at {root}")
    return root


@pytest.fixture(scope="module")
def test_split(bccd):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the two known zero-area boxes
        return VOCSource(bccd, "test")


@pytest.fixture(scope="module")
def searched(test_split):
    """(example, proposals) of the first three test images."""
    out = []
    for i in range(3):
        ex = test_split[i]
        out.append((ex, SEARCH(ex["image"])))
    return out


def test_proposals_are_fixed_size_inside_the_image_unique_and_large_enough(searched):
    for ex, props in searched:
        h, w = ex["image"].shape[:2]
        assert props.boxes.shape == (1000, 4) and props.boxes.dtype == np.float32
        assert props.valid.shape == (1000,) and props.valid.dtype == bool
        k = props.count
        assert 200 < k < 1000
        assert props.valid[:k].all() and not props.valid[k:].any()  # valid rows first
        assert not props.boxes[k:].any()
        b = props.boxes[:k]
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (b[:, 2] - b[:, 0] >= 10).all() and (b[:, 3] - b[:, 1] >= 10).all()
        assert len(np.unique(b, axis=0)) == k
        # Mapped back from the 200 px search: some box reaches the far border.
        assert b[:, 2].max() > 0.9 * w and b[:, 3].max() > 0.9 * h


def test_search_is_deterministic(searched):
    ex, props = searched[0]
    again = SEARCH(ex["image"])
    np.testing.assert_array_equal(again.boxes, props.boxes)
    np.testing.assert_array_equal(again.valid, props.valid)


def test_cap_keeps_the_first_of_the_ranking(searched):
    ex, props = searched[0]
    capped = dataclasses.replace(SEARCH, max_proposals=25)(ex["image"])
    assert capped.count == 25
    np.testing.assert_array_equal(capped.boxes, props.boxes[:25])


def test_recall_at_05_on_bccd(searched):
    # Measured: 0.717 on these three images at 200 px (fast mode over the first 10 test
    # images: 0.711 at 240 px, 0.749 at full size; quality mode 0.829 at 240 px).
    props = np.stack([p.boxes for _, p in searched])
    valid = np.stack([p.valid for _, p in searched])
    gt = np.stack([ex["boxes"] for ex, _ in searched])
    gt_valid = np.stack([ex["box_valid"] for ex, _ in searched])
    recall = recall_at_iou(props, gt, 0.5, proposal_valid=valid, gt_valid=gt_valid)
    assert recall >= 0.65
    assert recall_at_iou(props, gt, 0.9, proposal_valid=valid, gt_valid=gt_valid) < recall


def test_recall_at_iou_counts_exactly():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 1, 1]], np.float32)
    props = np.array([[0, 0, 10, 10], [20, 20, 30, 35], [50, 50, 60, 60]], np.float32)
    # IoUs of the best proposals: 1, 100/150, 0.01.
    assert recall_at_iou(props, gt, 0.5) == pytest.approx(2 / 3)
    assert recall_at_iou(props, gt, 0.7) == pytest.approx(1 / 3)
    assert recall_at_iou(props, gt, 0.5, gt_valid=np.array([True, False, False])) == 1.0
    assert recall_at_iou(props, gt, 0.5, proposal_valid=np.array([False, True, True])) == \
        pytest.approx(1 / 3)
    assert np.isnan(recall_at_iou(props, gt[:0], 0.5))


def test_cache_hit_returns_the_same_arrays_without_searching(tmp_path, test_split):
    path = test_split.items[0].image_path
    search = SelectiveSearch(mode="fast", short_side=96, max_proposals=200)
    cache = ProposalCache(search, tmp_path / "ss")
    first = cache(path)
    assert (cache.hits, cache.misses) == (0, 1)
    entry = cache.path_for(path)
    assert entry.is_file() and [p.name for p in (tmp_path / "ss").iterdir()] == [entry.name]
    stamp = entry.stat().st_mtime_ns

    fresh = ProposalCache(search, tmp_path / "ss")
    second = fresh(path)
    assert (fresh.hits, fresh.misses) == (1, 0)
    assert entry.stat().st_mtime_ns == stamp  # read, not rewritten
    np.testing.assert_array_equal(first.boxes, second.boxes)
    np.testing.assert_array_equal(first.valid, second.valid)
    np.testing.assert_array_equal(first.boxes, search(decode_image(path)).boxes)

    # Another setting or another file is another entry, never a stale hit.
    other = ProposalCache(SelectiveSearch(mode="fast", short_side=96, max_proposals=100),
                          tmp_path / "ss")
    assert other.path_for(path) != entry
    assert cache.path_for(test_split.items[1].image_path) != entry


def _tiny_voc(root, bccd, stems):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    names = []
    for k, stem in enumerate(stems):
        shutil.copy(bccd / "Annotations" / f"{stem}.xml", root / "Annotations" / f"img{k}.xml")
        shutil.copy(bccd / "JPEGImages" / f"{stem}.jpg", root / "JPEGImages" / f"img{k}.jpg")
        names.append(f"img{k}")
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(names) + "\n")
    return names


def test_source_proposals_counts_and_reports_failures(tmp_path, bccd, test_split):
    stems = test_split.ids[:2]
    _tiny_voc(tmp_path / "voc", bccd, stems)
    (tmp_path / "voc" / "JPEGImages" / "img1.jpg").write_bytes(b"not a jpeg")
    src = VOCSource(tmp_path / "voc", "train")
    search = SelectiveSearch(mode="fast", short_side=96, max_proposals=200)

    with pytest.warns(UserWarning, match="1 of 2 image"):
        out = source_proposals(src, search, tmp_path / "cache", on_error="skip",
                               progress=False)
    assert out.boxes.shape == (2, 200, 4) and out.valid.shape == (2, 200)
    assert out.valid[0].any() and not out.valid[1].any()
    assert list(out.failures) == [str(tmp_path / "voc" / "JPEGImages" / "img1.jpg")]
    assert "cannot decode" in out.failures[str(tmp_path / "voc" / "JPEGImages" / "img1.jpg")]
    np.testing.assert_array_equal(out.boxes[0], search(decode_image(src.items[0].image_path))
                                  .boxes)
    with pytest.raises(ImageDecodeError, match="img1.jpg"):
        source_proposals(src, search, tmp_path / "cache", progress=False)


def test_bad_images_are_rejected_clearly():
    search = SelectiveSearch(short_side=64, max_proposals=10)
    with pytest.raises(TypeError, match=r"uint8 \[H, W, 3\].*float32"):
        search(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\].*\(32, 32\)"):
        search(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="mode must be"):
        SelectiveSearch(mode="slow")
    gray = np.random.default_rng(0).integers(0, 255, (48, 64, 1), np.uint8)
    assert search(gray).boxes.shape == (10, 4)  # grayscale is searched as RGB
