"""Parity of :mod:`jaxvision.models.upsample` with ``torch.nn.ConvTranspose2d`` and
``torch.nn.MaxUnpool2d`` (forward and backward), and the FCN bilinear init."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxvision.models.upsample import ConvTranspose2d, MaxUnpool2d, bilinear_transpose_init
from jaxvision.ops import max_pool_with_argmax
from jaxvision.weights.convert import convert_state_dict
from tests.ops._tv import to_nchw, to_nhwc


@st.composite
def _configs(draw):
    g = draw(st.sampled_from([1, 2, 3]))
    cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    op = tuple(draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d, strict=True))
    hw = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    return g, cin, cout, k, s, d, p, op, hw


@settings(max_examples=20, deadline=None, derandomize=True)
@given(cfg=_configs(), bias=st.booleans())
def test_conv_transpose_matches_torch(cfg, bias):
    g, cin, cout, k, s, d, p, op, hw = cfg
    out_h = [(n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
             for n, ki, si, pi, oi, di in zip(hw, k, s, p, op, d, strict=True)]
    torch.manual_seed(0)
    tm = torch.nn.ConvTranspose2d(cin, cout, k, s, p, op, groups=g, bias=bias, dilation=d)
    rng = np.random.default_rng(sum(hw) + cin)
    x = rng.standard_normal((2, *hw, cin)).astype(np.float32)
    layer = ConvTranspose2d(cout, k, s, p, op, d, g, use_bias=bias,
                            precision=jax.lax.Precision.HIGHEST)
    if min(out_h) < 1:  # torch returns an empty tensor; we refuse it
        with pytest.raises(ValueError, match="empty output"):
            layer.init(jax.random.key(0), x)
        return
    variables = _convert(layer, tm, x)
    xt = to_nchw(x).requires_grad_()
    yt = tm(xt)
    gy = rng.standard_normal(yt.shape).astype(np.float32)
    (yt * torch.tensor(gy)).sum().backward()
    y, vjp = jax.vjp(lambda v, x: layer.apply(v, x), variables, x)
    np.testing.assert_allclose(np.asarray(y), to_nhwc(yt), atol=1e-5, rtol=1e-5)
    gv, gx = vjp(jnp.asarray(to_nhwc(torch.tensor(gy))))
    np.testing.assert_allclose(np.asarray(gx), to_nhwc(xt.grad), atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gv["params"]["kernel"]),
                               tm.weight.grad.numpy().transpose(2, 3, 1, 0),
                               atol=1e-4, rtol=1e-5)
    if bias:
        np.testing.assert_allclose(np.asarray(gv["params"]["bias"]), tm.bias.grad.numpy(),
                                   atol=1e-4, rtol=1e-5)


def _convert(layer, tm, x):
    """The converter's generic rule (4-D weight transposed (2, 3, 1, 0)) fits the layout."""
    shapes = jax.eval_shape(layer.init, jax.random.key(0), x)
    params = {"kernel": tm.weight.detach().numpy().transpose(2, 3, 1, 0)}
    if tm.bias is not None:
        params["bias"] = tm.bias.detach().numpy()
    assert params["kernel"].shape == shapes["params"]["kernel"].shape
    return {"params": params}


def test_converter_maps_torch_weight():
    import flax.linen as nn

    tm = torch.nn.ConvTranspose2d(4, 6, 3, 2, 1, 1, groups=2)
    x = np.random.default_rng(0).standard_normal((1, 5, 4, 4)).astype(np.float32)

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.up = tm

    class Net(nn.Module):
        default_input_shape = (5, 4, 4)

        @nn.compact
        def __call__(self, x, train=False):
            return ConvTranspose2d(6, 3, 2, 1, 1, groups=2, name="up",
                                   precision=jax.lax.Precision.HIGHEST)(x)

    variables = convert_state_dict(Net(), Wrap().state_dict())
    y = Net().apply(variables, x)
    np.testing.assert_allclose(np.asarray(y), to_nhwc(tm(to_nchw(x))), atol=1e-5)


@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (16, 8, 4), (4, 2, 0)])
def test_bilinear_init_is_bilinear_upsampling(k, s, p):
    """Away from the border, the FCN init upsamples a linear ramp to a linear ramp, and its
    kernel is torch's ``F.interpolate(bilinear, align_corners=False)`` stencil."""
    layer = ConvTranspose2d(2, k, s, p, use_bias=False, kernel_init=bilinear_transpose_init)
    h = 6
    ramp = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None, None], (h, h, 2))[None]
    v = layer.init(jax.random.key(0), ramp)
    kernel = np.asarray(v["params"]["kernel"])
    assert kernel[:, :, 0, 1].max() == 0 and kernel[:, :, 1, 0].max() == 0
    y = np.asarray(layer.apply(v, ramp))[0, :, :, 0]
    inner = y[k:-k, k:-k]
    np.testing.assert_allclose(np.diff(inner, axis=0), 1.0 / s, atol=1e-5)
    if p == s // 2:  # FCN's padded layers: exactly bilinear interpolation (half-pixel grid)
        x = np.random.default_rng(0).standard_normal((1, h, h, 2)).astype(np.float32)
        yb = np.asarray(layer.apply(v, x))
        ref = to_nhwc(F.interpolate(to_nchw(x), scale_factor=s, mode="bilinear",
                                    align_corners=False))
        np.testing.assert_allclose(yb[:, s:-s, s:-s], ref[:, s:-s, s:-s], atol=1e-5)


def test_max_unpool_layer_matches_torch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 9, 3)).astype(np.float32)
    v, i = jax.jit(lambda x: max_pool_with_argmax(x, 2, 2, ceil_mode=True))(x)
    out = MaxUnpool2d().apply({}, v, i, (7, 9))
    vt, it = F.max_pool2d(to_nchw(x), 2, 2, ceil_mode=True, return_indices=True)
    ref = torch.nn.MaxUnpool2d(2, 2)(vt, it, output_size=(7, 9))
    np.testing.assert_array_equal(np.asarray(out), to_nhwc(ref))
    # torch's default output size, (h - 1) * stride - 2 * padding + kernel_size
    v, i = jax.jit(lambda x: max_pool_with_argmax(x, 3, 2, 1))(x)
    vt, it = F.max_pool2d(to_nchw(x), 3, 2, 1, return_indices=True)
    out = MaxUnpool2d(3, 2, 1).apply({}, v, i)
    np.testing.assert_array_equal(np.asarray(out), to_nhwc(torch.nn.MaxUnpool2d(3, 2, 1)(vt, it)))
