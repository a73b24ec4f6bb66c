"""jaxvision/data/augment.py against torchvision.transforms and the definitions they follow."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF

from jaxvision.data import augment


def _coordinate_images(b: int, h: int, w: int) -> np.ndarray:
    """[b, h, w, 2] int32 whose pixel (y, x) holds (y + 1, x + 1): a crop reveals where it
    came from, and zero padding (0) is told apart from any real pixel."""
    yy, xx = np.meshgrid(np.arange(1, h + 1), np.arange(1, w + 1), indexing="ij")
    return np.broadcast_to(np.stack([yy, xx], -1), (b, h, w, 2)).astype(np.int32).copy()


def _photo_batch(b: int = 3, h: int = 37, w: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, h, w, 3), dtype=np.uint8)


def test_random_crop_is_the_padded_window_and_random_per_example():
    x = _coordinate_images(64, 8, 8)
    fn = jax.jit(augment.random_crop, static_argnums=(2, 3))
    out = np.asarray(fn(jax.random.PRNGKey(0), jnp.asarray(x), (8, 8), 2))
    assert out.shape == (64, 8, 8, 2) and out.dtype == np.int32
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    offsets = set()
    for b in range(64):
        # Find where the crop came from and check it is exactly that window.
        matches = [(t, c) for t in range(5) for c in range(5)
                   if np.array_equal(padded[b, t:t + 8, c:c + 8], out[b])]
        assert len(matches) == 1, b
        offsets.add(matches[0])
    # Identical inputs, different crops: the randomness is per example; with 64 draws of
    # 25 offsets all the extremes of the range occur.
    assert len(offsets) > 10
    assert {t for t, _ in offsets} == set(range(5)) and {c for _, c in offsets} == set(range(5))
    again = np.asarray(fn(jax.random.PRNGKey(0), jnp.asarray(x), (8, 8), 2))
    other = np.asarray(fn(jax.random.PRNGKey(1), jnp.asarray(x), (8, 8), 2))
    np.testing.assert_array_equal(again, out)
    assert not np.array_equal(other, out)


def test_random_crop_to_smaller_size_without_padding():
    x = _coordinate_images(16, 10, 12)
    out = np.asarray(augment.random_crop(jax.random.PRNGKey(3), jnp.asarray(x), (6, 5)))
    assert out.shape == (16, 6, 5, 2)
    tops, lefts = out[:, 0, 0, 0] - 1, out[:, 0, 0, 1] - 1
    for b in range(16):
        np.testing.assert_array_equal(out[b], x[b, tops[b]:tops[b] + 6, lefts[b]:lefts[b] + 5])
    assert tops.max() <= 4 and lefts.max() <= 7 and len(set(tops)) > 1
    with pytest.raises(ValueError, match="larger than the padded image"):
        augment.random_crop(jax.random.PRNGKey(0), jnp.asarray(x), (11, 5))


def test_random_flip_mirrors_about_half_of_the_examples():
    x = jnp.asarray(_photo_batch(200, 5, 7))
    out = np.asarray(jax.jit(augment.random_flip)(jax.random.PRNGKey(0), x))
    xn = np.asarray(x)
    flipped = np.array([np.array_equal(out[b], xn[b, :, ::-1]) for b in range(200)])
    kept = np.array([np.array_equal(out[b], xn[b]) for b in range(200)])
    assert np.all(flipped ^ kept)  # each example is either mirrored or untouched
    assert 70 < flipped.sum() < 130
    np.testing.assert_array_equal(np.asarray(augment.random_flip(jax.random.PRNGKey(0), x)), out)


def test_normalize_matches_torchvision_to_tensor_normalize():
    img = _photo_batch(1, 6, 5)[0]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ref = T.Normalize(mean, std)(T.ToTensor()(img)).permute(1, 2, 0).numpy()
    ours = np.asarray(augment.normalize(jnp.asarray(img), mean, std))
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size, hw", [(4, (9, 9)), ((5, 3), (10, 8)), (6, (7, 11)),
                                      (5, (5, 5))])
def test_center_crop_matches_torchvision(size, hw):
    x = _photo_batch(2, *hw)
    ours = np.asarray(augment.center_crop(jnp.asarray(x), size))
    for b in range(2):
        ref = TF.center_crop(torch.tensor(x[b]).permute(2, 0, 1), list(np.atleast_1d(size)))
        np.testing.assert_array_equal(ours[b], ref.permute(1, 2, 0).numpy())


@pytest.mark.parametrize("size, hw", [(4, (9, 9)), ((5, 3), (10, 8)), (6, (7, 11))])
def test_ten_crop_equals_torchvision_ten_crop(size, hw):
    x = _photo_batch(2, *hw)
    ours = np.asarray(jax.jit(augment.ten_crop, static_argnums=1)(jnp.asarray(x), size))
    h, w = (size, size) if isinstance(size, int) else size
    assert ours.shape == (2, 10, h, w, 3)
    for b in range(2):
        crops = T.TenCrop(size)(torch.tensor(x[b]).permute(2, 0, 1))
        assert len(crops) == 10
        for i, c in enumerate(crops):
            np.testing.assert_array_equal(ours[b, i], c.permute(1, 2, 0).numpy(), err_msg=str(i))


def test_ten_crop_average_averages_per_crop_predictions():
    x = jnp.asarray(_photo_batch(3, 8, 8))
    # A "model" whose prediction is the mean pixel of the crop (per channel).
    predict = lambda crops: crops.astype(jnp.float32).mean(axis=(1, 2))
    got = np.asarray(augment.ten_crop_average(predict, x, 5))
    want = np.asarray(augment.ten_crop(x, 5)).astype(np.float32).mean(axis=(2, 3)).mean(axis=1)
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_random_resized_crop_boxes_follow_torchvision_get_params():
    h, w, n = 60, 80, 4000
    boxes = np.asarray(jax.jit(augment.random_resized_crop_boxes, static_argnums=(1, 2, 3))(
        jax.random.PRNGKey(0), n, h, w))
    top, left, bh, bw = boxes.T
    assert boxes.dtype == np.int32
    assert np.all((top >= 0) & (left >= 0) & (bh >= 1) & (bw >= 1))
    assert np.all((top + bh <= h) & (left + bw <= w))
    # Every box is within the scale and ratio ranges, up to the rounding of h and w to
    # integers (torchvision rounds the same way).
    area = bh * bw / (h * w)
    r = bw / bh
    assert area.min() >= 0.08 * (1 - 0.2) and area.max() <= 1.0
    assert r.min() >= 0.75 * (1 - 0.2) and r.max() <= 4 / 3 * (1 + 0.2)
    # Same distribution as torchvision's sampler (compare moments over many draws).
    torch.manual_seed(0)
    ref = np.array([T.RandomResizedCrop.get_params(torch.zeros(3, h, w), [0.08, 1.0],
                                                   [3 / 4, 4 / 3]) for _ in range(n)])
    ref_area = ref[:, 2] * ref[:, 3] / (h * w)
    ref_r = ref[:, 3] / ref[:, 2]
    assert abs(area.mean() - ref_area.mean()) < 0.02
    assert abs(np.log(r).mean() - np.log(ref_r).mean()) < 0.02
    assert abs(np.log(r).std() - np.log(ref_r).std()) < 0.02
    # Placement is uniform over the free range: the centre of the box averages the image's.
    assert abs((top + bh / 2).mean() - h / 2) < 1.0 and abs((left + bw / 2).mean() - w / 2) < 1.5
    # Per-example and reproducible.
    assert len({tuple(b) for b in boxes[:50]}) == 50
    again = augment.random_resized_crop_boxes(jax.random.PRNGKey(0), n, h, w)
    np.testing.assert_array_equal(np.asarray(again), boxes)


def test_random_resized_crop_falls_back_to_the_clamped_central_crop():
    # A 1x40 strip: no box with ratio in [3/4, 4/3] and area >= 8% fits, so every example
    # takes torchvision's fallback: the whole height, width clamped to ratio 4/3.
    boxes = np.asarray(augment.random_resized_crop_boxes(jax.random.PRNGKey(0), 8, 1, 40,
                                                         scale=(0.5, 1.0)))
    fb_w = int(round(1 * 4 / 3))
    np.testing.assert_array_equal(boxes, [[0, (40 - fb_w) // 2, 1, fb_w]] * 8)


@pytest.mark.parametrize("box, size", [((3, 5, 20, 30), (12, 16)),   # shrink: antialiased
                                       ((0, 0, 37, 50), (24, 24)),   # whole image
                                       ((10, 7, 6, 9), (18, 20))])   # enlarge
def test_resized_crop_matches_torchvision_antialiased_bilinear(box, size):
    x = _photo_batch(2)
    ours = np.asarray(augment.resized_crop(jnp.asarray(x), jnp.asarray([box] * 2), size))
    assert ours.shape == (2, *size, 3) and ours.dtype == np.float32
    for b in range(2):
        ref = TF.resized_crop(torch.tensor(x[b]).permute(2, 0, 1).float(), *box, list(size),
                              antialias=True)
        np.testing.assert_allclose(ours[b], ref.permute(1, 2, 0).numpy(), atol=1e-3)


def test_random_resized_crop_output_is_the_resampled_box():
    x = jnp.asarray(_photo_batch(4))
    key = jax.random.PRNGKey(5)
    out = np.asarray(jax.jit(augment.random_resized_crop, static_argnums=2)(key, x, 16))
    boxes = augment.random_resized_crop_boxes(key, 4, 37, 50)
    np.testing.assert_allclose(out, np.asarray(augment.resized_crop(x, boxes, 16)), atol=1e-4)
    assert out.shape == (4, 16, 16, 3) and 0 <= out.min() and out.max() <= 255.0 + 1e-3


def test_pca_color_noise_is_alexnet_lighting():
    n = 4000
    x = jnp.full((n, 2, 3, 3), 100, jnp.uint8)
    out = np.asarray(jax.jit(augment.pca_color_noise)(jax.random.PRNGKey(0), x, 0.1))
    shift = out - 100.0
    # One RGB shift per image, the same at every pixel, different between images.
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1, :1], shift.shape), atol=1e-4)
    assert np.unique(np.round(shift[:, 0, 0, 0], 4)).size > n // 2
    # The shift is eigvec @ (alpha * eigval) * 255 with alpha ~ N(0, 0.1^2): recover alpha.
    vec = np.array(augment.IMAGENET_PCA_EIGVEC)
    val = np.array(augment.IMAGENET_PCA_EIGVAL)
    alpha = np.linalg.solve(vec, shift[:, 0, 0].T / 255.0).T / val
    np.testing.assert_allclose(alpha.std(axis=0), 0.1, rtol=0.06)
    np.testing.assert_allclose(alpha.mean(axis=0), 0.0, atol=0.01)
    # fb.resnet.torch's eigenvectors are orthonormal columns.
    np.testing.assert_allclose(vec.T @ vec, np.eye(3), atol=2e-3)
    with pytest.raises(ValueError, match="C=3"):
        augment.pca_color_noise(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 1)))


def test_train_preprocessing_is_deterministic_from_the_step_key():
    from jaxvision.train.config import load_config
    from jaxvision.train.steps import preprocess_train

    config = load_config("lenet5_mnist", ["augment.crop_padding=4", "augment.flip=True"])
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), np.uint8))
    fn = jax.jit(lambda k, x: preprocess_train(config, k, x, (28, 28)))
    a, b = fn(jax.random.PRNGKey(1), x), fn(jax.random.PRNGKey(1), x)
    c = fn(jax.random.PRNGKey(2), x)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert a.dtype == jnp.float32 and a.shape == (8, 28, 28, 1)
    # Normalized with MNIST's statistics: zero padding maps to -mean / std.
    assert math.isclose(float(np.asarray(a).min()), -0.1307 / 0.3081, rel_tol=1e-5)
