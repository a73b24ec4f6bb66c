"""Tests for jaxvision/models/layers.py additions: FrozenBatchNorm and torch_linear_init,
against torchvision's FrozenBatchNorm2d and torch.nn.Linear."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from jaxvision.models import layers
from jaxvision.weights.convert import torch_to_flax
from tests.torch_parity import nchw_to_nhwc, realistic_batchnorm


def _frozen_pair(c: int, seed: int = 0) -> tuple[FrozenBatchNorm2d, dict]:
    """A torch FrozenBatchNorm2d with trained-like buffers, and our converted variables."""
    bn = realistic_batchnorm(torch.nn.BatchNorm2d(c), seed)
    frozen = FrozenBatchNorm2d(c)
    frozen.load_state_dict(bn.state_dict())  # drops num_batches_tracked, as torchvision does
    template = jax.eval_shape(layers.FrozenBatchNorm().init, jax.random.key(0),
                              jnp.zeros((1, 2, 2, c)))
    return frozen, torch_to_flax(template, frozen.state_dict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frozen_batchnorm_matches_torchvision(dtype: torch.dtype) -> None:
    frozen, variables = _frozen_pair(6)
    x = torch.randn(3, 6, 5, 7, generator=torch.Generator().manual_seed(1), dtype=dtype)
    ref = nchw_to_nhwc(frozen.to(dtype)(x))
    with jax.enable_x64(dtype == torch.float64):
        jdt = jnp.float64 if dtype == torch.float64 else jnp.float32
        module = layers.FrozenBatchNorm(dtype=jdt, param_dtype=jdt)
        out = module.apply(variables, jnp.asarray(nchw_to_nhwc(x)))
        assert out.dtype == jdt
        np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-6 if jdt == jnp.float32
                                   else 1e-13, atol=1e-6 if jdt == jnp.float32 else 1e-13)


def test_frozen_batchnorm_is_fixed_and_passes_input_gradients() -> None:
    """No statistic moves and no gradient reaches the affine; the input gradient is torch's."""
    frozen, variables = _frozen_pair(4)
    x = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(2), requires_grad=True)
    cot = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(3))
    (frozen(x) * cot).sum().backward()

    def loss(params, x):
        out, upd = layers.FrozenBatchNorm().apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, x,
            mutable=["batch_stats"])
        return jnp.sum(out * nchw_to_nhwc(cot)), upd

    (_, upd), (g_params, g_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        variables["params"], jnp.asarray(nchw_to_nhwc(x.detach())))
    np.testing.assert_allclose(np.asarray(g_x), nchw_to_nhwc(x.grad), rtol=1e-5, atol=1e-6)
    assert all(not np.any(np.asarray(g)) for g in jax.tree_util.tree_leaves(g_params))
    for k in ("mean", "var"):
        np.testing.assert_array_equal(np.asarray(upd["batch_stats"][k]),
                                      variables["batch_stats"][k])


def test_torch_linear_init_is_torchs_uniform_bound() -> None:
    fan_in = 50
    kernel_init, bias_init = layers.torch_linear_init(fan_in)
    dense = nn.Dense(2000, kernel_init=kernel_init, bias_init=bias_init)
    p = dense.init(jax.random.key(0), jnp.zeros((1, fan_in)))["params"]
    bound = 1 / np.sqrt(fan_in)  # torch.nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for leaf in (p["kernel"], p["bias"]):
        a = np.abs(np.asarray(leaf))
        assert a.max() <= bound and a.max() > 0.95 * bound
    with torch.no_grad():
        ref = torch.nn.Linear(fan_in, 2000).weight.abs()
    assert abs(float(ref.max()) - bound) < 0.05 * bound
