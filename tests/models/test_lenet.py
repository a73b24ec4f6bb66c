"""LeNet-5: parameter count, parity with the same network written in torch, input errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

from jaxvision.models import get_model
from tests.torch_parity import converted, count_params, nchw_to_nhwc


def torch_lenet5(activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """LeNet-5 as a PyTorch user writes it; its state_dict keys are our module names."""
    model = nn.Module()
    model.features = nn.Sequential(
        nn.Conv2d(1, 6, 5), activation(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), activation(), nn.MaxPool2d(2))
    model.classifier = nn.Sequential(
        nn.Linear(256, 120), activation(), nn.Linear(120, 84), activation(), nn.Linear(84, 10))
    model.forward = lambda x: model.classifier(torch.flatten(model.features(x), 1))
    return model


def test_param_count_is_44426():
    model = get_model("lenet5")
    variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    assert count_params(variables) == 44_426
    assert count_params(variables) == sum(p.numel() for p in torch_lenet5().parameters())


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_matches_torch(activation):
    torch.manual_seed(0)
    tm = torch_lenet5(nn.ReLU if activation == "relu" else nn.Tanh)
    model = get_model("lenet5", activation=activation)
    variables = converted(model, tm)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = tm.forward(x).numpy()
    out = jax.jit(lambda v, x: model.apply(v, x))(variables, nchw_to_nhwc(x))
    assert out.shape == (4, 10) and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, rtol=0)


def test_features_method_and_flatten_shape():
    model = get_model("lenet5")
    variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    fmap = model.apply(variables, jnp.zeros((2, 28, 28, 1)), method="features")
    c, h, w = model.torch_flatten_shapes[model.dense_names[0]]
    assert fmap.shape == (2, h, w, c)
    # The conv stack alone runs on larger images (for a convolutionized classifier).
    assert model.apply(variables, jnp.zeros((1, 40, 44, 1)), method="features").shape == (
        1, 7, 8, 16)


def test_bfloat16_compute():
    model = get_model("lenet5", dtype=jnp.bfloat16)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    assert jax.tree_util.tree_leaves(variables)[0].dtype == jnp.float32
    assert model.apply(variables, jnp.ones((1, 28, 28, 1))).dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "x, error, match",
    [
        (jnp.zeros((28, 28, 1)), ValueError, "rank 4"),
        (jnp.zeros((1, 28, 28, 3)), ValueError, "1 input channels"),
        (jnp.zeros((1, 1, 28, 28)), ValueError, "NCHW"),
        (jnp.zeros((1, 28, 28, 1), jnp.uint8), TypeError, "floating-point"),
        (jnp.zeros((1, 12, 12, 1)), ValueError, "at least 16x16"),
        (jnp.zeros((1, 32, 32, 1)), ValueError, "28x28 input"),
    ],
)
def test_input_errors(x, error, match):
    model = get_model("lenet5")
    with pytest.raises(error, match=match):
        model.init(jax.random.key(0), x)


def test_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        get_model("lenet5", activation="gelu").init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
