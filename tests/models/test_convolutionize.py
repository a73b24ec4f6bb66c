"""convolutionize: dense layers become convolutions, with the classifier's exact numbers.

At the training size the fully convolutional model gives the classifier's logits. On a
larger input, every output position equals the dense classifier applied to the matching
window of the conv features (checked against torchvision's own ``features`` and
``classifier`` for AlexNet and VGG-11), and for LeNet-5, whose convs have no padding, it
equals classifying the matching input crop.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import convolutionize, get_model, network_stride


def _init(model, shape, seed=0):
    return model.init({"params": jax.random.key(seed), "dropout": jax.random.key(seed)},
                      jnp.zeros((1, *shape)))


def _dense_head(model, v, window_feats):
    """The classifier's dense layers, written out by hand, on ``[N, h, w, C]`` conv maps."""
    spec = model.convolutionize_spec
    f = window_feats.reshape(window_feats.shape[0], -1)  # NHWC flatten, as the zoo models
    for i, d in enumerate(spec.dense):
        p = v["params"][d]
        f = jnp.dot(f, p["kernel"], precision="highest") + p["bias"]
        if i < len(spec.dense) - 1:
            f = spec.activation(f)
    return f


def test_lenet5_equals_crops_at_every_position():
    model = get_model("lenet5")
    v = _init(model, (28, 28, 1))
    fcn, fv = convolutionize(model, v, (28, 28, 1))
    x28 = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
    np.testing.assert_allclose(np.asarray(fcn.apply(fv, x28))[:, 0, 0],
                               np.asarray(model.apply(v, x28)), atol=1e-5)
    stride = network_stride(model, (28, 28, 1))
    assert stride == 4
    for hw in [(60, 60), (52, 76)]:
        x = jax.random.uniform(jax.random.key(2), (1, *hw, 1))
        maps = np.asarray(fcn.apply(fv, x))[0]
        assert maps.shape[:2] == ((hw[0] - 28) // 4 + 1, (hw[1] - 28) // 4 + 1)
        ys, xs = np.meshgrid(range(maps.shape[0]), range(maps.shape[1]), indexing="ij")
        crops = jnp.stack([x[0, i * stride:i * stride + 28, j * stride:j * stride + 28]
                           for i, j in zip(ys.ravel(), xs.ravel(), strict=True)])
        ref = np.asarray(model.apply(v, crops)).reshape(maps.shape)
        np.testing.assert_allclose(maps, ref, atol=1e-5)
        # ... and the dense layers applied to each 4x4 window of the big image's conv map.
        feats = model.apply(v, x, method="features")
        wins = jnp.stack([feats[0, i:i + 4, j:j + 4]
                          for i, j in zip(ys.ravel(), xs.ravel(), strict=True)])
        np.testing.assert_allclose(maps, np.asarray(_dense_head(model, v, wins)).reshape(
            maps.shape), atol=1e-5)


def test_lenet5_tanh_keeps_its_activation():
    model = get_model("lenet5", activation="tanh")
    v = _init(model, (28, 28, 1))
    fcn, fv = convolutionize(model, v, (28, 28, 1))
    x = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
    np.testing.assert_allclose(np.asarray(fcn.apply(fv, x))[:, 0, 0],
                               np.asarray(model.apply(v, x)), atol=1e-5)


@pytest.mark.parametrize("name", ["alexnet", "alexnet_2012"])
def test_alexnets_at_training_size(name):
    model = get_model(name, num_classes=10)
    shape = model.default_input_shape
    v = _init(model, shape)
    fcn, fv = convolutionize(model, v, shape)
    x = jax.random.normal(jax.random.key(3), (1, *shape))
    np.testing.assert_allclose(np.asarray(fcn.apply(fv, x))[:, 0, 0],
                               np.asarray(model.apply(v, x)), atol=1e-5)


def _torch_windows(tv, x_nchw, grid, window):
    """torchvision's classifier applied to every window of its own features of x."""
    import torch

    with torch.inference_mode():
        feats = tv.features(x_nchw)
        out = np.zeros((*grid, tv.classifier[-1].out_features), np.float32)
        for i in range(grid[0]):
            for j in range(grid[1]):
                win = feats[:, :, i:i + window, j:j + window]
                out[i, j] = tv.classifier(torch.flatten(win, 1))[0].numpy()
    return out


@pytest.mark.parametrize(("name", "window", "sizes"), [
    ("alexnet", 6, [(287, 287), (255, 351)]),
    ("vgg11", 7, [(256, 256), (288, 320)]),
])
def test_dense_evaluation_equals_torchvision_windows(name, window, sizes):
    import torch
    import torchvision

    from tests.torch_parity import converted, nchw_to_nhwc

    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(num_classes=10).eval()
    model = get_model(name, num_classes=10)
    v = converted(model, tv)
    fcn, fv = convolutionize(model, v, (224, 224, 3))
    apply = jax.jit(lambda v, x: fcn.apply(v, x))
    x224 = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        ref224 = tv(x224).numpy()
    out224 = np.asarray(apply(fv, nchw_to_nhwc(x224)))[:, 0, 0]
    # The same weights in jaxvision's own classifier: equal to float32 round-off.
    np.testing.assert_allclose(out224, np.asarray(model.apply(v, nchw_to_nhwc(x224))),
                               atol=1e-5)
    np.testing.assert_allclose(out224, ref224, atol=1e-4)
    for hw in sizes:
        x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(hw[1]))
        out = np.asarray(apply(fv, nchw_to_nhwc(x)))[0]
        assert out.shape[0] > 1 and out.shape[1] > 1
        ref = _torch_windows(tv, x, out.shape[:2], window)
        np.testing.assert_allclose(out, ref, atol=1e-4)
    # Padded convs: the window at (0, 0) of the big image is not the classifier on that crop
    # (the crop's convs see zero padding at its right/bottom border), as the docs say.
    with torch.inference_mode():
        crop = tv(x[:, :, :224, :224]).numpy()[0]
    assert np.abs(out[0, 0] - crop).max() > 0.01 * np.abs(crop).max()


def test_refuses_models_without_dense_head():
    model = get_model("resnet18", num_classes=10)
    v = jax.eval_shape(lambda: _init(model, (224, 224, 3)))
    with pytest.raises(TypeError, match="cannot be convolutionized"):
        convolutionize(model, v, (224, 224, 3))


def test_refuses_a_size_where_adaptive_pooling_is_not_identity():
    model = get_model("alexnet", num_classes=10)
    v = jax.eval_shape(lambda: _init(model, (224, 224, 3)))
    with pytest.raises(ValueError, match="not the identity"):
        convolutionize(model, v, (288, 288, 3))


def test_refuses_offset_pooling_without_last_pool():
    model = get_model("lenet5")
    v = _init(model, (28, 28, 1))
    with pytest.raises(ValueError, match="offset pooling"):
        convolutionize(model, v, (28, 28, 1), offset_pooling=True)
