"""OverFeat models: parameter counts (paper: ~145M fast, ~144M accurate), shapes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import convolutionize, get_model, network_stride


def _count(model):
    shape = (1, *model.default_input_shape)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(v["params"]))


@pytest.mark.parametrize(("name", "params", "size"), [
    # Table 1/3 layouts: conv 34,944 + 614,656 + 1,180,160 + 4,719,616 + 9,438,208, FC
    # 113,249,280 + 12,587,008 + 4,097,000 (fast); see overfeat.py for the accurate one.
    ("overfeat_fast", 145_920_872, 231),
    ("overfeat_accurate", 144_656_488, 221),
])
def test_param_count_and_shapes(name, params, size):
    model = get_model(name)
    assert model.default_input_shape == (size, size, 3)
    assert _count(model) == params
    out = jax.eval_shape(lambda: model.init_with_output(
        jax.random.key(0), jnp.zeros((2, size, size, 3)))[0])
    assert out.shape == (2, 1000)


def test_classifier_map_sizes_at_training_size():
    model = get_model("overfeat_fast", num_classes=5, hidden=(8, 8))
    x = jax.ShapeDtypeStruct((1, 231, 231, 3), jnp.float32)
    v = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)

    def shape(**kw):
        return jax.eval_shape(lambda v, x: model.apply(v, x, method="features", **kw),
                              v, x).shape

    assert shape() == (1, 6, 6, 1024)
    assert shape(last_pool=False) == (1, 12, 12, 1024)


def test_too_small_input_is_refused():
    model = get_model("overfeat_accurate", num_classes=5, hidden=(8, 8))
    with pytest.raises(ValueError, match="at least"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 40, 40, 3)))
    # Big enough for the conv stack, not for the dense classifier: points to convolutionize.
    with pytest.raises(ValueError, match="221x221 input.*convolutionize"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 100, 100, 3)))
    with pytest.raises(TypeError, match="floating-point"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 221, 221, 3), jnp.uint8))


# OverFeat's layout with narrow layers: the same kernels, strides, pools and padding, so the
# same geometry (stride 32 fast, 36 accurate) at a fraction of the cost.
def _narrow(convs, widths):
    return tuple((w, k, s, p, pool)
                 for w, (_, k, s, p, pool) in zip(widths[:len(convs)], convs, strict=True))


def _windows(model, v, x, grid, stride, size):
    """The classifier on each input crop (corner = position x stride) of ``x``."""
    crops = jnp.stack([x[0, i * stride:i * stride + size, j * stride:j * stride + size]
                       for i in range(grid[0]) for j in range(grid[1])])
    return np.asarray(model.apply(v, crops)).reshape(*grid, -1)


def _dense_head(model, v, feats, i, j, side):
    f = feats[:, i:i + side, j:j + side].reshape(1, -1)
    for n, d in enumerate(model.convolutionize_spec.dense):
        f = jnp.dot(f, v["params"][d]["kernel"], precision="highest") + v["params"][d]["bias"]
        f = jax.nn.relu(f) if n < len(model.hidden) else f
    return np.asarray(f[0])


@pytest.mark.parametrize("offset_pooling", [False, True])
@pytest.mark.parametrize("layout", ["fast", "accurate"])
def test_convolutionized_equals_logits_at_training_size(layout, offset_pooling):
    from jaxvision.models.overfeat import ACCURATE, FAST, OverFeat

    convs, size = (FAST, 231) if layout == "fast" else (ACCURATE, 221)
    model = OverFeat(convs=_narrow(convs, (8, 16, 16, 16, 16, 16)), hidden=(16, 16),
                     num_classes=5, input_size=size)
    x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    v = model.init(jax.random.key(0), x)
    fcn, fv = convolutionize(model, v, (size, size, 3), offset_pooling=offset_pooling)
    out = fcn.apply(fv, x)
    assert out.shape == (2, 1, 1, 5)
    np.testing.assert_allclose(np.asarray(out)[:, 0, 0], np.asarray(model.apply(v, x)),
                               atol=1e-5)


def test_dense_evaluation_windows_and_crops():
    """Paper OverFeat (padded layers 3-5): dense = classifier on conv-map windows, != crops.

    The same stack without that padding: dense = classifying each crop, exactly.
    """
    from jaxvision.models.overfeat import FAST, OverFeat

    widths = (8, 16, 16, 16, 16)
    x = jax.random.normal(jax.random.key(2), (1, 263, 295, 3))
    for padded in (True, False):
        convs = _narrow(FAST, widths)
        if not padded:
            convs = tuple((c, k, s, 0, pool) for c, k, s, _, pool in convs)
        model = OverFeat(convs=convs, hidden=(16, 16), num_classes=5, input_size=231)
        v = model.init(jax.random.key(0), jnp.zeros((1, 231, 231, 3)))
        fcn, fv = convolutionize(model, v, (231, 231, 3))
        stride = network_stride(model, (231, 231, 3))
        assert stride == 32
        out = np.asarray(fcn.apply(fv, x))[0]
        assert out.shape == (2, 3, 5)
        crops = _windows(model, v, x, out.shape[:2], stride, 231)
        if padded:
            side = model._map_size()
            feats = model.apply(v, x, method="features")
            ref = np.stack([[_dense_head(model, v, feats, i, j, side) for j in range(3)]
                            for i in range(2)])
            np.testing.assert_allclose(out, ref, atol=1e-5)
            assert np.abs(out - crops).max() > 0.01 * np.abs(crops).max()
        else:
            np.testing.assert_allclose(out, crops, atol=1e-5)
