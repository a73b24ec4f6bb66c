"""Tests for jaxvision/models/cifar_resnet.py (He et al. 2016, section 4.2).

No torchvision counterpart: the reference is the paper's network written in plain PyTorch
(``tests/torch_reference.py``), converted weights, realistic BatchNorm statistics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxvision.models import get_model
from jaxvision.models.cifar_resnet import zero_pad_shortcut
from tests import torch_reference
from tests.torch_parity import count_params, eval_parity, realistic_batchnorm, train_parity

# The paper's table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M parameters.
PAPER = {"resnet20": (3, 0.27e6), "resnet32": (5, 0.46e6), "resnet44": (7, 0.66e6),
         "resnet56": (9, 0.85e6), "resnet110": (18, 1.7e6)}


@pytest.mark.parametrize("name", list(PAPER))
def test_param_counts_are_the_papers(name: str) -> None:
    n, paper = PAPER[name]
    variables = jax.eval_shape(get_model(name).init, jax.random.key(0),
                               jnp.zeros((1, 32, 32, 3)))
    ours = count_params(variables)
    ref = sum(p.numel() for p in torch_reference.CifarResNet(n).parameters())
    assert ours == ref
    assert abs(ours - paper) / paper < 0.03, (ours, paper)  # the paper rounds to 2 digits


@pytest.mark.parametrize("shortcut", ["A", "B"])
@pytest.mark.parametrize("hw", [(32, 32), (37, 29)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_eval_logits_match_the_torch_reference(shortcut: str, hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    tv = realistic_batchnorm(torch_reference.CifarResNet(3, shortcut=shortcut))
    err, noise = eval_parity(get_model("resnet20", shortcut=shortcut), tv, hw, batch=2)
    assert err <= max(1e-4, 10 * noise), (err, noise)


def test_train_step_matches_the_torch_reference() -> None:
    torch.manual_seed(0)
    tv = realistic_batchnorm(torch_reference.CifarResNet(3))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    errs = train_parity(get_model("resnet20"), tv, x, with_grads=True)
    assert errs["stats_moved"] > 1e-3
    assert errs["logits_abs"] < 1e-4 and errs["stats_abs"] < 1e-4
    assert errs["grad_params_rel"] < 1e-4 and errs["grad_input_rel"] < 1e-4


def test_option_a_shortcut_is_parameter_free_zero_padding() -> None:
    x = jnp.arange(2 * 5 * 5 * 3, dtype=jnp.float32).reshape(2, 5, 5, 3)
    y = zero_pad_shortcut(x, 8, 2)
    assert y.shape == (2, 3, 3, 8)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2])
    assert not np.any(y[..., 3:])
    with pytest.raises(ValueError, match="only add channels"):
        zero_pad_shortcut(x, 2, 1)
    with pytest.raises(ValueError, match="shortcut must be 'A'"):
        get_model("resnet20", shortcut="C").init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_input_errors_name_what_is_expected() -> None:
    model = get_model("resnet20")
    with pytest.raises(ValueError, match="3 input channels"):
        model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
    with pytest.raises(TypeError, match="floating-point"):
        model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.uint8))


def test_feature_maps_feed_the_head() -> None:
    model = get_model("resnet20")
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    maps = jax.jit(lambda v, x: model.apply(v, x, method="feature_maps"))(variables, x)
    assert model.feature_names == ("conv1", "bn1", "relu", "stem", "layer1", "layer2", "layer3")
    assert {k: v.shape[1:] for k, v in maps.items() if k.startswith("layer")} == {
        "layer1": (32, 32, 16), "layer2": (16, 16, 32), "layer3": (8, 8, 64)}
    fc = variables["params"]["fc"]
    logits = jnp.mean(maps["layer3"], axis=(1, 2)) @ fc["kernel"] + fc["bias"]
    np.testing.assert_allclose(np.asarray(jax.jit(model.apply)(variables, x)),
                               np.asarray(logits), rtol=1e-5, atol=1e-5)
