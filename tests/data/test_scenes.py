"""MNIST scenes: reproducible, boxes where the real digits were pasted, window sampling."""

import numpy as np
import pytest
from PIL import Image

from jaxvision.data import mnist_source
from jaxvision.data.scenes import make_scenes, scene_windows
from jaxvision.detection import voc_iou


@pytest.fixture(scope="module")
def digits():
    src = mnist_source("test")
    idx = np.arange(200)
    return (np.stack([src[int(i)]["image"] for i in idx]),
            np.array([src[int(i)]["label"] for i in idx]))


def test_scenes_are_seeded_and_boxes_hold_the_digits(digits):
    imgs, labels = digits
    a = make_scenes(imgs, labels, 20, size=(96, 96), digits_per_scene=(1, 3), seed=3)
    b = make_scenes(imgs, labels, 20, size=(96, 96), digits_per_scene=(1, 3), seed=3)
    c = make_scenes(imgs, labels, 20, size=(96, 96), digits_per_scene=(1, 3), seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (20, 96, 96, 1) and a.images.dtype == np.uint8
    assert np.all((a.counts >= 1) & (a.counts <= 3))
    for n in range(20):
        k = a.counts[n]
        boxes = a.boxes[n, :k]
        assert np.all(a.labels[n, :k] >= 0) and np.all(a.labels[n, k:] == -1)
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 96)
        sides = boxes[:, 2] - boxes[:, 0]
        assert np.all(sides == boxes[:, 3] - boxes[:, 1])
        assert np.all((sides >= 28) & (sides <= 56))
        for i in range(k):  # frames are disjoint with max_iou=0
            others = np.delete(boxes, i, axis=0)
            assert len(others) == 0 or voc_iou(boxes[i:i + 1], others, plus_one=False).max() == 0
        # All ink lies inside some frame.
        ink = a.images[n, ..., 0] > 0
        inside = np.zeros_like(ink)
        for x1, y1, x2, y2 in boxes.astype(int):
            inside[y1:y2, x1:x2] = True
        assert not np.any(ink & ~inside)


def test_single_digit_scene_is_the_resized_digit(digits):
    imgs, labels = digits
    s = make_scenes(imgs, labels, 5, size=(64, 64), digits_per_scene=(1, 1), seed=0)
    rng = np.random.default_rng(0)  # replay the generator's draws for the first scene
    rng.integers(1, 2)
    idx = int(rng.integers(len(imgs)))
    x1, y1, x2, y2 = s.boxes[0, 0].astype(int)
    side = x2 - x1
    expect = np.asarray(Image.fromarray(imgs[idx][..., 0]).resize((side, side),
                                                                 Image.BILINEAR))
    np.testing.assert_array_equal(s.images[0, y1:y2, x1:x2, 0], expect)
    assert s.labels[0, 0] == labels[idx]


def test_bad_arguments_are_refused(digits):
    imgs, labels = digits
    with pytest.raises(ValueError, match="uint8"):
        make_scenes(imgs.astype(np.float32), labels, 2)
    with pytest.raises(ValueError, match="does not fit"):
        make_scenes(imgs, labels, 2, size=(40, 40), scale_range=(1.0, 2.0))
    with pytest.raises(ValueError, match="digits_per_scene"):
        make_scenes(imgs, labels, 2, digits_per_scene=(3, 1))


def test_windows_respect_the_iou_rules(digits):
    imgs, labels = digits
    s = make_scenes(imgs, labels, 30, size=(96, 96), digits_per_scene=(1, 3), seed=1)
    crops, y = scene_windows(s, scales=(1.0, 0.75, 0.5), windows_per_scene=16, seed=0)
    assert crops.shape[1:] == (28, 28, 1) and crops.dtype == np.uint8
    assert len(crops) == len(y) > 100
    assert set(np.unique(y)) <= set(range(11))
    assert 0.2 < np.mean(y == 10) < 0.8  # both digits and background are sampled
    # Background crops are almost empty of ink; digit crops are not.
    ink = (crops[..., 0] > 128).mean(axis=(1, 2))
    assert ink[y < 10].mean() > 3 * ink[y == 10].mean()
