"""Tests for jaxvision/models/wide_resnet.py (Zagoruyko & Komodakis 2016).

The reference is the paper's pre-activation WRN in plain PyTorch (``tests/torch_reference.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxvision.models import get_model
from jaxvision.models.wide_resnet import WideResNet
from tests import torch_reference
from tests.torch_parity import count_params, eval_parity, realistic_batchnorm, train_parity


@pytest.mark.parametrize(("num_classes", "paper"), [(10, 36.5e6), (100, 36.5e6)])
def test_wrn28_10_param_count(num_classes: int, paper: float) -> None:
    variables = jax.eval_shape(get_model("wrn28_10", num_classes=num_classes).init,
                               jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    ours = count_params(variables)
    ref = sum(p.numel() for p in torch_reference.WideResNet(28, 10, num_classes).parameters())
    assert ours == ref
    assert abs(ours - paper) / paper < 0.01, ours


@pytest.mark.parametrize("hw", [(32, 32), (35, 27)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_eval_logits_match_the_torch_reference(hw: tuple[int, int]) -> None:
    # WRN-16-2: the same blocks as WRN-28-10 (first-block projections, pre-activation
    # shortcut from the activated input), small enough to compare quickly.
    torch.manual_seed(0)
    tv = realistic_batchnorm(torch_reference.WideResNet(16, 2))
    err, noise = eval_parity(WideResNet(depth=16, widen_factor=2), tv, hw, batch=2)
    assert err <= max(1e-4, 10 * noise), (err, noise)


def test_train_step_matches_the_torch_reference() -> None:
    torch.manual_seed(0)
    tv = realistic_batchnorm(torch_reference.WideResNet(10, 2))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    errs = train_parity(WideResNet(depth=10, widen_factor=2), tv, x, with_grads=False)
    assert errs["stats_moved"] > 1e-3
    assert errs["logits_abs"] < 1e-4 and errs["stats_abs"] < 1e-4


def test_gradients_match_the_torch_reference() -> None:
    """In float64 (see tests/models/test_resnet.py: test_resnet18_gradients_match_torch):
    float32 gradients through near-constant train-mode BatchNorm channels are too
    ill-conditioned to compare at 1e-4."""
    torch.manual_seed(0)
    tv = realistic_batchnorm(torch_reference.WideResNet(10, 2)).double()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    model = WideResNet(depth=10, widen_factor=2, dtype=jnp.float64, param_dtype=jnp.float64)
    errs = train_parity(model, tv, x, with_grads=True)
    assert errs["logits_abs"] < 1e-8
    assert errs["grad_params_rel"] < 1e-10 and errs["grad_input_rel"] < 1e-10


@pytest.mark.parametrize("depth", [8, 27])
def test_bad_depth_is_refused(depth: int) -> None:
    with pytest.raises(ValueError, match="6N \\+ 4"):
        WideResNet(depth=depth).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_dropout_only_in_training() -> None:
    model = WideResNet(depth=10, widen_factor=1, dropout_rate=0.3)
    x = jnp.ones((2, 32, 32, 3))
    variables = model.init(jax.random.key(0), x)
    a = model.apply(variables, x)
    assert jnp.array_equal(a, model.apply(variables, x))
    b, _ = model.apply(variables, x, train=True, mutable=["batch_stats"],
                       rngs={"dropout": jax.random.key(1)})
    c, _ = model.apply(variables, x, train=True, mutable=["batch_stats"],
                       rngs={"dropout": jax.random.key(2)})
    assert not jnp.allclose(b, c)


def test_feature_maps_feed_the_head() -> None:
    model = get_model("wrn28_10", depth=10, widen_factor=2)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    maps = jax.jit(lambda v, x: model.apply(v, x, method="feature_maps"))(variables, x)
    assert model.feature_names == ("conv1", "stem", "layer1", "layer2", "layer3", "final")
    assert maps["layer3"].shape == maps["final"].shape == (2, 8, 8, 128)
    assert float(jnp.min(maps["final"])) >= 0.0  # after the final BN + ReLU
    fc = variables["params"]["fc"]
    logits = jnp.mean(maps["final"], axis=(1, 2)) @ fc["kernel"] + fc["bias"]
    np.testing.assert_allclose(np.asarray(jax.jit(model.apply)(variables, x)),
                               np.asarray(logits), rtol=1e-5, atol=1e-5)
