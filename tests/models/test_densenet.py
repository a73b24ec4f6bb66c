"""DenseNet against the installed torchvision: parameter counts of all variants, eval parity
at two sizes, training-mode BatchNorm statistics, the CIFAR DenseNet-BC (L=100, k=12)
against torchvision's DenseNet with the paper's CIFAR stem, memory_efficient, input errors.

densenet161/169/201 are checked by parameter count only (the code path is densenet121's with
another configuration; compiling each would cost ~30 s of CPU)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.densenet import DenseNet as TorchDenseNet

from jaxvision.models import get_model, list_models
from jaxvision.weights.convert import convert_state_dict, variable_shapes
from tests.torch_parity import (
    count_params,
    eval_parity,
    input_error_cases,
    max_rel_err,
    nchw_to_nhwc,
    realistic_batchnorm,
    torch_eval_logits,
    train_parity,
)

NAMES = ["densenet121", "densenet161", "densenet169", "densenet201"]


def torch_count(name: str, **kwargs) -> int:
    with torch.device("meta"):  # shapes only: no memory, no init time
        return sum(p.numel() for p in getattr(torchvision.models, name)(**kwargs).parameters())


def torch_densenet_bc_100_12(num_classes: int = 10) -> torch.nn.Module:
    """The paper's CIFAR DenseNet-BC (L=100, k=12) from torchvision's DenseNet class.

    torchvision's blocks, transitions and head are the paper's; only the stem differs: one
    3x3 conv to 2k channels, no BN/ReLU/pool (paper Sec. 3, "Implementation Details").
    """
    torch.manual_seed(0)
    m = TorchDenseNet(growth_rate=12, block_config=(16, 16, 16), num_init_features=24,
                      num_classes=num_classes)
    m.features.conv0 = torch.nn.Conv2d(3, 24, kernel_size=3, padding=1, bias=False)
    for name in ("norm0", "relu0", "pool0"):
        setattr(m.features, name, torch.nn.Identity())
    return realistic_batchnorm(m)


@functools.lru_cache(maxsize=1)
def tv_densenet121() -> torch.nn.Module:
    torch.manual_seed(0)
    return realistic_batchnorm(torchvision.models.densenet121())


@pytest.mark.parametrize("name", NAMES)
def test_param_count_matches_torchvision(name):
    assert name in list_models()
    assert count_params(variable_shapes(get_model(name))) == torch_count(name)
    assert count_params(variable_shapes(get_model(name, num_classes=10))) == torch_count(
        name, num_classes=10)


@pytest.mark.parametrize("hw", [(224, 224), (193, 257)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_densenet121_eval_logits_match_torchvision(hw):
    err, noise = eval_parity(get_model("densenet121"), tv_densenet121(), hw, batch=1)
    print(f"densenet121 {hw}: max|jax - torch| = {err:.3g}, torch noise {noise:.3g}")
    assert err <= max(1e-4, 10 * noise), (err, noise)


def test_densenet121_train_batchnorm_stats_match_torchvision():
    torch.manual_seed(0)
    tv = realistic_batchnorm(torchvision.models.densenet121())
    x = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(2))
    errs = train_parity(get_model("densenet121"), tv, x)
    assert errs["stats_moved"] > 1e-3  # the update happened for every BatchNorm
    assert errs["stats_abs"] < 1e-4
    assert errs["logits_abs"] < 1e-4


def test_densenet_bc_100_12_matches_paper_model():
    tv = torch_densenet_bc_100_12()
    model = get_model("densenet_bc_100_12")
    n = count_params(variable_shapes(model, (32, 32, 3)))
    assert n == sum(p.numel() for p in tv.parameters())
    assert 0.75e6 < n < 0.85e6  # the paper's "0.8M" (Table 2)
    # Eval parity on CIFAR-sized images, then one training-mode step.
    variables = convert_state_dict(model, tv.state_dict())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ref = torch_eval_logits(tv, x)
    out = np.asarray(jax.jit(lambda v, x: model.apply(v, x))(variables, nchw_to_nhwc(x)))
    assert out.shape == ref.shape == (2, 10)
    err = float(np.abs(out - ref).max())
    print(f"densenet_bc_100_12 32x32: {err:.3g} (logit scale {np.abs(ref).max():.3g})")
    assert err < 1e-4


def test_memory_efficient_changes_nothing_but_memory():
    """nn.remat'd dense layers: same variables, outputs, statistics and gradients."""
    small = dict(growth_rate=4, block_config=(2, 2), num_init_features=8, stem="cifar",
                 num_classes=3)
    plain = get_model("densenet_bc_100_12", **small)
    remat = get_model("densenet_bc_100_12", memory_efficient=True, **small)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 9, 11, 3)), jnp.float32)
    variables = plain.init(jax.random.key(0), x)
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(
        remat.init(jax.random.key(0), x))

    def loss(module, params, x):
        out, upd = module.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                x, train=True, mutable=["batch_stats"])
        return jnp.sum(out * jnp.arange(3.0)), upd

    results = [jax.jit(jax.grad(functools.partial(loss, m), argnums=(0, 1), has_aux=True))(
        variables["params"], x) for m in (plain, remat)]
    (g_plain, upd_plain), (g_remat, upd_remat) = results
    assert max_rel_err(g_remat, g_plain) < 1e-6
    assert max_rel_err(upd_remat, upd_plain) < 1e-6


def test_dropout_only_in_training():
    model = get_model("densenet_bc_100_12", drop_rate=0.5, growth_rate=4,
                      block_config=(2, 2), num_init_features=8)
    x = jnp.ones((2, 8, 8, 3))
    variables = model.init(jax.random.key(0), x)
    evaluate = jax.jit(lambda v, x: model.apply(v, x))
    np.testing.assert_array_equal(evaluate(variables, x), evaluate(variables, x))
    step = jax.jit(lambda v, x, k: model.apply(v, x, train=True, mutable=["batch_stats"],
                                               rngs={"dropout": k})[0])

    def train(seed: int) -> np.ndarray:
        return np.asarray(step(variables, x, jax.random.key(seed)))

    assert not np.allclose(train(1), train(2))


def test_min_size_is_torchvisions():
    """29x29 is the smallest input torchvision's DenseNet runs on (three 2x2 pools)."""
    tv = torchvision.models.densenet121().eval()
    with torch.no_grad():
        tv(torch.zeros(1, 3, 29, 29))
        with pytest.raises(RuntimeError):
            tv(torch.zeros(1, 3, 28, 29))
    model = get_model("densenet121")
    assert model.min_input_size == 29
    out = jax.eval_shape(model.init_with_output, jax.random.key(0), jnp.zeros((1, 29, 29, 3)))
    assert out[0].shape == (1, 1000)
    with pytest.raises(ValueError, match="at least 29x29"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 29, 28, 3)))
    # The CIFAR stem keeps the size: 4x4 is enough for its two transitions.
    cifar = get_model("densenet_bc_100_12")
    jax.eval_shape(cifar.init, jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match="at least 4x4"):
        jax.eval_shape(cifar.init, jax.random.key(0), jnp.zeros((1, 3, 4, 3)))


def test_num_classes_and_dtypes():
    x = jnp.zeros((2, 32, 32, 3))
    model = get_model("densenet121", num_classes=7, dtype=jnp.bfloat16)
    out, variables = jax.eval_shape(model.init_with_output, jax.random.key(0), x)
    assert out.shape == (2, 7) and out.dtype == jnp.bfloat16
    assert {v.dtype for v in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    model = get_model("densenet121", param_dtype=jnp.bfloat16)
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    assert {v.dtype for v in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.bfloat16)}


def test_bad_stem_is_rejected():
    with pytest.raises(ValueError, match="stem must be"):
        jax.eval_shape(get_model("densenet121", stem="tiny").init, jax.random.key(0),
                       jnp.zeros((1, 64, 64, 3)))


@pytest.mark.parametrize(("x", "exc", "match"), input_error_cases(224, 16, "at least 29x29"))
def test_input_errors(x, exc, match):
    with pytest.raises(exc, match=match):
        jax.eval_shape(get_model("densenet121").init, jax.random.key(0), x)
