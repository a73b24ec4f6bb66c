"""VGG against the installed torchvision: parameter counts of all eight variants, eval parity
(vgg11 at two sizes, vgg16_bn at 224), training-mode BatchNorm statistics, input errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import vgg as tv_vgg_module

from jaxvision.models import get_model, list_models
from jaxvision.models.backbone import IntermediateLayerGetter
from jaxvision.ops import max_unpool
from jaxvision.weights.convert import convert_state_dict, variable_shapes
from tests.torch_parity import (
    count_params,
    eval_parity,
    input_error_cases,
    nchw_to_nhwc,
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


def _torch_vgg_maps(features: torch.nn.Sequential, x: torch.Tensor) -> dict[str, np.ndarray]:
    """conv{s}_{k} (after ReLU), pool{s} and pool{s}_indices from torch's own layers."""
    out, stage, k = {}, 1, 1
    with torch.no_grad():
        for m in features:
            if isinstance(m, torch.nn.MaxPool2d):
                x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
                out[f"pool{stage}"], out[f"pool{stage}_indices"] = x, idx
                stage, k = stage + 1, 1
                continue
            x = m(x)
            if isinstance(m, torch.nn.ReLU):
                out[f"conv{stage}_{k}"] = x
                k += 1
    return {name: nchw_to_nhwc(v) for name, v in out.items()}


@pytest.mark.parametrize("name", ["vgg16", "vgg11_bn"])
def test_feature_maps_and_pool_indices_match_torch(name):
    """Every named map at an odd size, and SegNet's argmax indices exactly torch's
    ``max_pool2d(return_indices=True)`` (flat ``row * W + col`` of the map before the pool)."""
    torch.manual_seed(0)
    # torchvision's own conv stack (the classifier's 120M weights are not needed here)
    cfg = {"vgg16": "D", "vgg11_bn": "A"}[name]
    features = realistic_batchnorm(tv_vgg_module.make_layers(
        tv_vgg_module.cfgs[cfg], batch_norm=name.endswith("_bn"))).eval()
    x = torch.randn(1, 3, 37, 45, generator=torch.Generator().manual_seed(3))
    ref = _torch_vgg_maps(features, x)
    model = get_model(name, pool_indices=True)
    getter = IntermediateLayerGetter(model, model.feature_names)
    sd = {f"features.{k}": v for k, v in features.state_dict().items()}
    variables = convert_state_dict(getter, sd)  # strict: the conv stack and nothing else
    out = jax.jit(getter.apply)(variables, jnp.asarray(nchw_to_nhwc(x)))
    assert set(out) == set(ref) and len(model.feature_names) == len(ref)
    if name == "vgg16":
        assert out["conv5_3"].shape == (1, 2, 2, 512) and out["pool4"].shape == (1, 2, 2, 512)
    for k, r in ref.items():
        if k.endswith("_indices"):
            assert out[k].dtype == jnp.int32
            np.testing.assert_array_equal(np.asarray(out[k]), r, err_msg=k)
        else:
            scale = max(float(np.abs(r).max()), 1.0)
            assert float(np.abs(np.asarray(out[k]) - r).max()) < 1e-5 * scale, k
    # SegNet's decoder step: unpooling pool5 with its indices is torch's max_unpool2d
    before = [k for k in ref if k.startswith("conv5_")][-1]
    unpooled = max_unpool(out["pool5"], out["pool5_indices"], out[before].shape[1:3])
    ref_unpool = F.max_unpool2d(torch.from_numpy(ref["pool5"]).permute(0, 3, 1, 2),
                                torch.from_numpy(ref["pool5_indices"]).permute(0, 3, 1, 2),
                                2, 2, output_size=ref[before].shape[1:3])
    np.testing.assert_allclose(np.asarray(unpooled), nchw_to_nhwc(ref_unpool), rtol=1e-5,
                               atol=1e-5)


def test_features_is_the_last_pool():
    model = get_model("vgg11")
    variables = variable_shapes(model, (64, 64, 3))
    x = jax.ShapeDtypeStruct((1, 64, 80, 3), jnp.float32)
    conv_stack = jax.eval_shape(lambda v, x: model.apply(v, x, method="features"), variables, x)
    maps = jax.eval_shape(lambda v, x: model.apply(v, x, method="feature_maps"), variables, x)
    assert conv_stack.shape == maps["pool5"].shape == (1, 2, 2, 512)
    assert model.feature_names[:4] == ("conv1_1", "pool1", "conv2_1", "pool2")
