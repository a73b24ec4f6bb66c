"""VGG against the installed torchvision: parameter counts of all eight variants, eval parity
(vgg11 at two sizes, vgg16_bn at 224), training-mode BatchNorm statistics, input errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import pytest
import torch
import torchvision

from jaxvision.models import get_model, list_models
from jaxvision.weights.convert import variable_shapes
from tests.torch_parity import (
    count_params,
    eval_parity,
    input_error_cases,
    realistic_batchnorm,
    train_parity,
)

NAMES = [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]


@functools.lru_cache(maxsize=1)  # one ~0.5 GB model at a time
def tv_vgg(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return realistic_batchnorm(getattr(torchvision.models, name)())


@pytest.mark.parametrize("name", NAMES)
def test_param_count_matches_torchvision(name):
    assert name in list_models()
    for num_classes in (1000, 10):
        with torch.device("meta"):  # shapes only: no memory, no init time
            tv = getattr(torchvision.models, name)(num_classes=num_classes)
        model = get_model(name, num_classes=num_classes)
        assert count_params(variable_shapes(model)) == sum(p.numel() for p in tv.parameters())


@pytest.mark.parametrize(("name", "hw"), [
    ("vgg11", (224, 224)), ("vgg11", (193, 257)), ("vgg16_bn", (224, 224)),
], ids=lambda v: v if isinstance(v, str) else f"{v[0]}x{v[1]}")
def test_eval_logits_match_torchvision(name, hw):
    tv = tv_vgg(name)
    err, noise = eval_parity(get_model(name), tv, hw, batch=1)
    print(f"{name} {hw}: max|jax - torch| = {err:.3g}, torch noise {noise:.3g}")
    assert err <= max(1e-4, 10 * noise), (err, noise)


def test_vgg11_bn_train_step_matches_torchvision():
    """Train-mode logits, updated BatchNorm statistics, and gradients (params and input)."""
    torch.manual_seed(0)
    tv = realistic_batchnorm(torchvision.models.vgg11_bn(dropout=0.0))
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    errs = train_parity(get_model("vgg11_bn", dropout=0.0), tv, x, with_grads=True)
    assert errs["stats_moved"] > 1e-3  # every BatchNorm was updated
    assert errs["stats_abs"] < 1e-4
    assert errs["logits_abs"] < 1e-4
    assert errs["grad_input_rel"] < 1e-4
    assert errs["grad_params_rel"] < 1e-4


def test_min_size_is_torchvisions():
    """32x32 is the smallest input torchvision's VGG runs on (five 2x2 pools)."""
    with torch.no_grad():
        tv = torchvision.models.vgg11().eval()
        tv(torch.zeros(1, 3, 32, 32))
        with pytest.raises(RuntimeError):
            tv(torch.zeros(1, 3, 31, 32))
    model = get_model("vgg11")
    out = jax.eval_shape(model.init_with_output, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert out[0].shape == (1, 1000)
    with pytest.raises(ValueError, match="at least 32x32"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 31, 32, 3)))


def test_num_classes_and_dtypes():
    x = jnp.zeros((2, 32, 32, 3))
    model = get_model("vgg13_bn", num_classes=7, dtype=jnp.bfloat16)
    out, variables = jax.eval_shape(model.init_with_output, jax.random.key(0), x)
    assert out.shape == (2, 7) and out.dtype == jnp.bfloat16
    assert {v.dtype for v in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    params = jax.eval_shape(get_model("vgg13", param_dtype=jnp.bfloat16).init,
                            jax.random.key(0), x)["params"]
    assert {v.dtype for v in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.bfloat16)}


@pytest.mark.parametrize(("x", "exc", "match"), input_error_cases(224, 16, "at least 32x32"))
def test_input_errors(x, exc, match):
    with pytest.raises(exc, match=match):
        jax.eval_shape(get_model("vgg16").init, jax.random.key(0), x)
