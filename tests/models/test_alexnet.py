"""AlexNet: torchvision's variant against the installed torchvision, and the 2012 original
against the same network written with torch layers (grouped convs, LocalResponseNorm)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter as TorchGetter

from jaxvision.models import get_model
from jaxvision.models.alexnet import AlexNet2012
from jaxvision.weights.convert import variable_shapes
from tests.torch_parity import converted, nchw_to_nhwc, torch_eval_logits


def n_params(module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(
        variable_shapes(module)["params"]))


def torch_alexnet_2012(groups: int = 2) -> nn.Module:
    """The NIPS 2012 AlexNet in torch layers; state_dict keys are our module names."""
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)  # noqa: E731
    model = nn.Module()
    model.features = nn.Sequential(
        nn.Conv2d(3, 96, 11, 4), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=groups), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=groups), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=groups), nn.ReLU(), nn.MaxPool2d(3, 2))
    model.classifier = nn.Sequential(
        nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Dropout(), nn.Linear(4096, 1000))
    model.forward = lambda x: model.classifier(torch.flatten(model.features(x), 1))
    return model


@pytest.fixture(scope="module")
def tv_alexnet():
    torch.manual_seed(0)
    return torchvision.models.alexnet().eval()


def test_param_count_matches_torchvision(tv_alexnet):
    assert n_params(get_model("alexnet")) == sum(p.numel() for p in tv_alexnet.parameters())
    assert n_params(get_model("alexnet")) == 61_100_840


@pytest.fixture(scope="module")
def alexnet_variables(tv_alexnet):
    return converted(get_model("alexnet"), tv_alexnet)


@pytest.mark.parametrize("hw", [(224, 224), (193, 257), (63, 63)])
def test_eval_parity_with_torchvision(tv_alexnet, alexnet_variables, hw):
    model = get_model("alexnet")
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(0))
    ref = torch_eval_logits(tv_alexnet, x)
    out = np.asarray(jax.jit(lambda v, x: model.apply(v, x))(alexnet_variables,
                                                             nchw_to_nhwc(x)))
    err = float(np.abs(out - ref).max())
    print(f"alexnet {hw}: max abs err {err:.2e}, logit scale {np.abs(ref).max():.2e}")
    assert out.shape == (2, 1000)
    # torch's default init gives logits of ~0.03: bound the error relative to them too.
    assert err <= 1e-4 and err <= 1e-4 * float(np.abs(ref).max())


def test_dropout_only_in_training(alexnet_variables):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 63, 63, 3)), jnp.float32)

    def run(dropout: float, train: bool, seed: int) -> np.ndarray:
        model = get_model("alexnet", dropout=dropout)
        fn = jax.jit(lambda v, x, k: model.apply(v, x, train=train, rngs={"dropout": k}))
        return np.asarray(fn(alexnet_variables, x, jax.random.key(seed)))

    evaluated = run(0.5, False, 0)
    assert not np.allclose(run(0.5, True, 0), run(0.5, True, 1))
    assert not np.allclose(run(0.5, True, 0), evaluated)
    np.testing.assert_allclose(run(0.0, True, 0), evaluated, rtol=0, atol=1e-7)


def test_alexnet_2012_param_count():
    # 34,944 + 307,456 + 885,120 + 663,936 + 442,624 (conv1-5)
    # + 37,752,832 + 16,781,312 + 4,097,000 (fc6-8), see the module docstring.
    assert n_params(get_model("alexnet_2012")) == 60_965_224
    assert n_params(get_model("alexnet_2012")) == sum(
        p.numel() for p in torch_alexnet_2012().parameters())
    # Without the two-GPU split conv2/4/5 see all maps: +307,200 +663,552 +442,368 weights.
    assert n_params(get_model("alexnet_2012", groups=1)) == 60_965_224 + 1_413_120


@pytest.mark.parametrize("hw", [(227, 227), (258, 240)])
def test_alexnet_2012_matches_torch(hw):
    torch.manual_seed(0)
    tm = torch_alexnet_2012().eval()
    model = get_model("alexnet_2012")
    variables = converted(model, tm)
    # Scaled up so that the LRN denominators differ from k ** beta (unit-variance pixels
    # times torch's small default weights would leave LRN almost the identity).
    x = 40 * torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(1))
    ref = torch_eval_logits(tm, x)
    out = np.asarray(jax.jit(lambda v, x: model.apply(v, x))(variables, nchw_to_nhwc(x)))
    err = float(np.abs(out - ref).max())
    print(f"alexnet_2012 {hw}: max abs err {err:.2e}, logit scale {np.abs(ref).max():.2e}")
    assert out.shape == (2, 1000)
    assert err <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_lrn_is_the_papers_and_torchs():
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 12)).astype(np.float32) * 30
    ours = np.asarray(AlexNet2012().lrn(jnp.asarray(x)))
    # torch.nn.LocalResponseNorm divides alpha by size: the paper's alpha is 5x smaller.
    ref = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(
        torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    # The paper's formula, b_i = a_i / (k + alpha * sum_{|j - i| <= 2} a_j^2) ** beta.
    sq = np.pad(x ** 2, [(0, 0)] * 3 + [(2, 2)])
    window = sum(sq[..., i:i + 12] for i in range(5))
    np.testing.assert_allclose(ours, x / (2.0 + 1e-4 * window) ** 0.75, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours, x / 2.0 ** 0.75, rtol=1e-2)  # the normalization bites


def test_features_end_where_the_classifier_starts():
    for name, hw in [("alexnet", 224), ("alexnet_2012", 227)]:
        model = get_model(name)
        variables = variable_shapes(model)
        fmap = jax.eval_shape(lambda v, x, m=model: m.apply(v, x, method="features"),
                              variables, jax.ShapeDtypeStruct((1, hw, hw, 3), jnp.float32))
        c, h, w = model.torch_flatten_shapes[model.dense_names[0]]
        assert fmap.shape == (1, h, w, c)
        assert model.convolutionize_spec.dense == model.dense_names


@pytest.mark.parametrize("name", ["alexnet", "alexnet_2012"])
def test_bfloat16(name):
    model = get_model(name, dtype=jnp.bfloat16)
    variables = variable_shapes(model)
    assert jax.tree_util.tree_leaves(variables)[0].dtype == jnp.float32
    size = model.default_input_shape[0]
    out = jax.eval_shape(model.apply, variables,
                         jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32))
    assert out.shape == (2, 1000) and out.dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "name, shape, dtype, error, match",
    [
        ("alexnet", (224, 224, 3), jnp.float32, ValueError, "rank 4"),
        ("alexnet", (1, 224, 224, 1), jnp.float32, ValueError, "3 input channels"),
        ("alexnet", (1, 3, 224, 224), jnp.float32, ValueError, "NCHW"),
        ("alexnet", (1, 224, 224, 3), jnp.uint8, TypeError, "floating-point"),
        ("alexnet", (1, 62, 100, 3), jnp.float32, ValueError, "at least 63x63"),
        ("alexnet_2012", (1, 66, 66, 3), jnp.float32, ValueError, "at least 67x67"),
        ("alexnet_2012", (1, 224, 224, 3), jnp.float32, ValueError, "227x227 input"),
        ("alexnet_2012", (1, 259, 259, 3), jnp.float32, ValueError, "6x6x256 feature map"),
    ],
)
def test_input_errors(name, shape, dtype, error, match):
    model = get_model(name)
    with pytest.raises(error, match=match):
        jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, dtype))


def test_min_sizes_agree_with_torch(tv_alexnet):
    """63 (alexnet) and 67 (alexnet_2012 conv stack) are the smallest sizes torch accepts."""
    with torch.no_grad():
        tv_alexnet(torch.zeros(1, 3, 63, 63))
        with pytest.raises(RuntimeError):
            tv_alexnet(torch.zeros(1, 3, 62, 62))
        features = torch_alexnet_2012().features
        features(torch.zeros(1, 3, 67, 67))
        with pytest.raises(RuntimeError):
            features(torch.zeros(1, 3, 66, 66))


def test_feature_maps_match_torchvision(tv_alexnet, alexnet_variables):
    """conv1..conv5 (after ReLU) and the pools, from torchvision's IntermediateLayerGetter."""
    names = {"1": "conv1", "2": "pool1", "4": "conv2", "5": "pool2", "7": "conv3", "9": "conv4",
             "11": "conv5", "12": "pool5"}
    getter = TorchGetter(tv_alexnet.features, names).eval()
    x = torch.randn(1, 3, 97, 131, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = getter(x)
    model = get_model("alexnet")
    assert model.feature_names == tuple(ref)
    out = jax.jit(lambda v, x: model.apply(v, x, method="feature_maps"))(
        alexnet_variables, nchw_to_nhwc(x))
    for k, r in ref.items():
        r = nchw_to_nhwc(r)
        assert out[k].shape == r.shape, k
        assert float(np.abs(np.asarray(out[k]) - r).max()) < 1e-4, k


def test_alexnet_2012_feature_maps_end_in_features():
    model = get_model("alexnet_2012")
    variables = variable_shapes(model)
    x = jax.ShapeDtypeStruct((1, 227, 227, 3), jnp.float32)
    maps = jax.eval_shape(lambda v, x: model.apply(v, x, method="feature_maps"), variables, x)
    assert set(maps) == set(model.feature_names)
    assert maps["norm1"].shape == maps["conv1"].shape == (1, 55, 55, 96)
    assert maps["pool5"].shape == (1, 6, 6, 256)
