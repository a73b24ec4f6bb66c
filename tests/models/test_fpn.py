"""Tests for jaxvision/models/fpn.py against torchvision.ops.FeaturePyramidNetwork."""

from __future__ import annotations

from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import FeaturePyramidNetwork as TorchFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool as TorchLastLevelMaxPool

from jaxvision.models.fpn import FeaturePyramidNetwork, LastLevelMaxPool, upsample_nearest
from jaxvision.weights.convert import torch_to_flax
from tests.torch_parity import nchw_to_nhwc

# Odd sizes whose ratios are not 2: the top-down path must use torch's nearest index rule.
LEVELS = OrderedDict([("feat0", (8, 49, 66)), ("feat1", (16, 25, 33)), ("feat2", (24, 13, 17)),
                      ("feat3", (32, 4, 5))])


@pytest.mark.parametrize(("src", "dst"), [
    ((5, 7), (5, 7)), ((4, 5), (8, 10)), ((4, 5), (7, 9)), ((13, 17), (25, 33)),
    ((7, 9), (49, 66)), ((3, 3), (100, 41)), ((9, 11), (4, 5)),
])
def test_upsample_nearest_matches_torch_interpolate(src, dst) -> None:
    x = torch.randn(2, 3, *src, generator=torch.Generator().manual_seed(0))
    ref = nchw_to_nhwc(F.interpolate(x, size=dst, mode="nearest"))
    out = np.asarray(upsample_nearest(jnp.asarray(nchw_to_nhwc(x)), dst))
    np.testing.assert_array_equal(out, ref)


def _torch_fpn(extra: bool, out_channels: int = 12) -> TorchFPN:
    torch.manual_seed(0)
    fpn = TorchFPN([c for c, _, _ in LEVELS.values()], out_channels,
                   extra_blocks=TorchLastLevelMaxPool() if extra else None)
    with torch.no_grad():  # torchvision zeroes the biases: random ones catch a dropped bias
        for name, p in fpn.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
    return fpn.eval()


@pytest.mark.parametrize("extra", [True, False], ids=["last_level_max_pool", "no_extra"])
def test_fpn_matches_torchvision(extra: bool) -> None:
    tv = _torch_fpn(extra)
    g = torch.Generator().manual_seed(1)
    x = OrderedDict((k, torch.randn(2, c, h, w, generator=g)) for k, (c, h, w) in LEVELS.items())
    with torch.no_grad():
        ref = tv(x)
    fpn = FeaturePyramidNetwork(12, extra_blocks=LastLevelMaxPool() if extra else None)
    ours_in = {k: jnp.asarray(nchw_to_nhwc(v)) for k, v in x.items()}
    template = jax.eval_shape(fpn.init, jax.random.key(0), ours_in)
    # strict: every torchvision key (inner_blocks.i.0.weight, ...) has its variable and back.
    variables = torch_to_flax(template, tv.state_dict())
    out = fpn.apply(variables, ours_in)
    assert list(out) == list(ref) == list(LEVELS) + (["pool"] if extra else [])
    for k, r in ref.items():
        r = nchw_to_nhwc(r)
        assert out[k].shape == r.shape
        err = float(np.abs(np.asarray(out[k]) - r).max())
        assert err < 1e-4, (k, err, float(np.abs(r).max()))
    if extra:
        assert out["pool"].shape == (2, 2, 3, 12)


def test_fpn_init_is_torchvisions() -> None:
    """kaiming_uniform_(a=1): U(+-sqrt(3 / fan_in)); zero biases."""
    fpn = FeaturePyramidNetwork(64)
    x = {"a": jnp.zeros((1, 8, 8, 300)), "b": jnp.zeros((1, 4, 4, 10))}
    params = fpn.init(jax.random.key(0), x)["params"]
    k = np.asarray(params["inner_blocks.0.0"]["kernel"])
    bound = np.sqrt(3 / 300)
    assert np.abs(k).max() <= bound and np.abs(k).max() > 0.95 * bound
    assert abs(float(k.std()) - bound / np.sqrt(3)) < 0.05 * bound
    assert not np.any(np.asarray(params["layer_blocks.1.0"]["bias"]))


def test_fpn_refuses_levels_out_of_order() -> None:
    fpn = FeaturePyramidNetwork(8)
    x = {"coarse": jnp.zeros((1, 4, 4, 3)), "fine": jnp.zeros((1, 8, 8, 3))}
    with pytest.raises(ValueError, match="finest to the coarsest.*'coarse'"):
        fpn.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="at least one feature map"):
        fpn.init(jax.random.key(0), {})
