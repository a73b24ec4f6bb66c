"""OverFeat dense evaluation: offset pooling, the paper's Table 5, multi-scale prediction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.dense.overfeat import (
    OVERFEAT_SCALES,
    interleave,
    multiscale_classify,
    offset_max_pool,
    spatial_table,
)
from jaxvision.models import convolutionize, get_model, network_stride


@pytest.fixture(scope="module")
def small_accurate():
    # The accurate layout with a small classifier head: same conv stack and map sizes.
    model = get_model("overfeat_accurate", num_classes=7, hidden=(32, 16))
    return model, model.init(jax.random.key(0), jnp.zeros((1, 221, 221, 3)))


def _classify_pooled(fcn_vars, fcn, pooled):
    """The classifier as ordinary (undilated) convolutions over one pooled map."""
    f = pooled
    for i, d in enumerate(fcn.dense):
        p = fcn_vars["params"][d]
        f = jax.lax.conv_general_dilated(f, p["kernel"], (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         precision="highest") + p["bias"]
        if i < len(fcn.dense) - 1:
            f = jax.nn.relu(f)
    return f


def test_offset_pooling_is_shifted_pooling_interleaved(small_accurate):
    model, v = small_accurate
    fcn, fv = convolutionize(model, v, (221, 221, 3))
    fcn_off, fv_off = convolutionize(model, v, (221, 221, 3), offset_pooling=True)
    x = jax.random.normal(jax.random.key(2), (2, 281, 317, 3))
    pre = model.apply(v, x, last_pool=False, method="features")
    maps = offset_max_pool(pre, 3)
    # Each offset's pooled map is ordinary 3x3/3 pooling of the shifted conv map.
    for (dx, dy), pooled in maps.items():
        shifted = np.asarray(pre)[:, dy:, dx:, :]
        h, w = shifted.shape[1] // 3, shifted.shape[2] // 3
        ref = shifted[:, :3 * h, :3 * w].reshape(2, h, 3, w, 3, -1).max(axis=(2, 4))
        np.testing.assert_array_equal(np.asarray(pooled), ref)
    ref = interleave({k: _classify_pooled(fv, fcn, p) for k, p in maps.items()}, 3)
    out = fcn_off.apply(fv_off, x)
    assert ref.shape == (2, 6, 9, 7)
    np.testing.assert_allclose(np.asarray(out)[:, :6, :9], np.asarray(ref), atol=1e-5)
    assert network_stride(model, (221, 221, 3)) == 36
    assert network_stride(model, (221, 221, 3), offset_pooling=True) == 12


def test_interleave_layout():
    maps = {(dx, dy): jnp.full((1, 2, 2, 1), 10 * dy + dx, jnp.float32)
            for dy in range(3) for dx in range(3)}
    out = np.asarray(interleave(maps, 3))[0, :, :, 0]
    assert out.shape == (6, 6)
    assert out[4, 2] == 10 * 1 + 2  # row 4 = 1*3 + dy=1, col 2 = 0*3 + dx=2


# The paper's Table 5 (accurate model): input, layer-5 pre-pool, post-pool (per offset),
# classifier map per offset, interleaved class map. Row 5 as printed (32x35, 10x11, 6x7) is
# inconsistent with its own 18x24 class map; 425x497 gives 32x38 / 10x12 / 6x8 -> 18x24.
PAPER_TABLE_5 = [
    ((245, 245), (17, 17), (5, 5), (1, 1), (3, 3)),
    ((281, 317), (20, 23), (6, 7), (2, 3), (6, 9)),
    ((317, 389), (23, 29), (7, 9), (3, 5), (9, 15)),
    ((389, 461), (29, 35), (9, 11), (5, 7), (15, 21)),
    ((425, 497), None, None, None, (18, 24)),
    ((461, 569), (35, 44), (11, 14), (7, 10), (21, 30)),
]


def test_spatial_table_matches_paper(small_accurate):
    model, v = small_accurate
    rows = spatial_table(model, v)
    assert [r["input"] for r in rows] == list(OVERFEAT_SCALES)
    for row, (inp, pre, post, cls, cmap) in zip(rows, PAPER_TABLE_5, strict=True):
        assert row["input"] == inp
        assert row["class_map"] == cmap
        assert row["offsets"] == (3, 3)
        if pre is not None:
            assert (row["prepool"], row["postpool"], row["classifier"]) == (pre, post, cls)


def test_fcn_class_maps_at_the_six_scales(small_accurate):
    model, v = small_accurate
    fcn, fv = convolutionize(model, v, (221, 221, 3), offset_pooling=True)
    for (inp, *_, cmap) in PAPER_TABLE_5:
        out = jax.eval_shape(lambda v, x: fcn.apply(v, x), fv,
                             jax.ShapeDtypeStruct((1, *inp, 3), jnp.float32))
        # All offsets' maps, uncropped: at least the paper's interleaved size.
        assert out.shape[1] >= cmap[0] and out.shape[2] >= cmap[1]
        assert out.shape[1] - cmap[0] < 3 and out.shape[2] - cmap[1] < 3


def test_multiscale_classify_is_a_distribution_and_flip_aware():
    model = get_model("overfeat_fast", num_classes=4, hidden=(8, 8))
    v = model.init(jax.random.key(0), jnp.zeros((1, 231, 231, 3)))
    fcn, fv = convolutionize(model, v, (231, 231, 3), offset_pooling=True)
    x = jax.random.normal(jax.random.key(3), (2, 256, 256, 3))
    scales = ((231, 231), (263, 295))
    probs = multiscale_classify(fcn, fv, x, scales)
    assert probs.shape == (2, 4)
    p = np.asarray(probs)
    assert np.all(p > 0) and np.all(p <= 1)
    # One view at the training size, no flip: the spatial max over the 2x2 offset map.
    single = multiscale_classify(fcn, fv, x, ((231, 231),), flip=False)
    resized = jax.image.resize(x, (2, 231, 231, 3), "bilinear")
    dense = jax.nn.softmax(fcn.apply(fv, resized), -1)
    np.testing.assert_allclose(np.asarray(single), np.asarray(dense.max(axis=(1, 2))),
                               rtol=1e-5)
