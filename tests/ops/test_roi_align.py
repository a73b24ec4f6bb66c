"""Parity of :mod:`jaxvision.ops.roi_align` with ``torchvision.ops.roi_align``."""

from __future__ import annotations

from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from jaxvision.ops import RoIAlign, roi_align
from tests.ops._tv import FAST, random_rois, to_nchw, to_nhwc

N, H, W, C, K, OUT = 2, 11, 14, 3, 24, (3, 4)


@cache
def _fns(sampling_ratio: int, aligned: bool):
    # spatial_scale is traced, so one compilation serves every scale.
    def fwd(f, r, s):
        return roi_align(f, r, OUT, s, sampling_ratio, aligned)

    def grad(f, r, s, g):
        return jax.grad(lambda f: jnp.sum(fwd(f, r, s) * g))(f)

    return jax.jit(fwd), jax.jit(grad)


@FAST
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1.0, 1 / 16, 1 / 32]),
       sampling_ratio=st.sampled_from([-1, 0, 1, 2]), aligned=st.booleans())
def test_matches_torchvision(seed, scale, sampling_ratio, aligned):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((N, H, W, C)).astype(np.float32)
    rois = random_rois(rng, K, N, H, W, scale, inverted=not (aligned and sampling_ratio <= 0))
    g = rng.standard_normal((K, *OUT, C)).astype(np.float32)
    fwd, grad = _fns(sampling_ratio, aligned)
    out = np.asarray(fwd(f, rois, jnp.float32(scale)))
    ft = to_nchw(f).requires_grad_()
    ref = torchvision.ops.roi_align(ft, torch.tensor(rois), OUT, scale, sampling_ratio, aligned)
    np.testing.assert_allclose(out, to_nhwc(ref), atol=1e-4, rtol=0)
    ref.backward(to_nchw(g))
    gj = np.asarray(grad(f, rois, jnp.float32(scale), g))
    np.testing.assert_allclose(gj, to_nhwc(ft.grad), atol=1e-4, rtol=0)


# A map large enough that bins keep bands narrower than their RoI's window (on the 11 x 14 map
# above every band is the whole window), so band placement and clamping are exercised.
BIG_HW, BIG_OUT = (40, 56), (7, 5)


@cache
def _big_fns(sampling_ratio: int, aligned: bool):
    def fwd(f, r, s):
        return roi_align(f, r, BIG_OUT, s, sampling_ratio, aligned)

    def grad(f, r, s, g):
        return jax.grad(lambda f: jnp.sum(fwd(f, r, s) * g))(f)

    return jax.jit(fwd), jax.jit(grad)


@settings(FAST, max_examples=8)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1.0, 1 / 16]),
       sampling_ratio=st.sampled_from([-1, 2]), aligned=st.booleans())
def test_matches_torchvision_narrow_bands(seed, scale, sampling_ratio, aligned):
    rng = np.random.default_rng(seed)
    h, w = BIG_HW
    f = rng.standard_normal((N, h, w, C)).astype(np.float32)
    # Mostly RoIs inside the map, of every size (each branch of the ladder), plus the
    # adversarial mix (huge, outside, degenerate, inverted) of random_rois.
    k = 48
    side = np.exp(rng.uniform(np.log(0.5), np.log([w, h]), (k, 2)))
    x1, y1 = rng.uniform(-2, w - side[:, 0] + 2), rng.uniform(-2, h - side[:, 1] + 2)
    inside = np.stack([rng.integers(0, N, k), x1, y1, x1 + side[:, 0], y1 + side[:, 1]], 1)
    inside[:, 1:] /= scale
    rois = np.concatenate([inside.astype(np.float32),
                           random_rois(rng, 16, N, h, w, scale,
                                       inverted=not (aligned and sampling_ratio <= 0))])
    g = rng.standard_normal((len(rois), *BIG_OUT, C)).astype(np.float32)
    fwd, grad = _big_fns(sampling_ratio, aligned)
    out = np.asarray(fwd(f, rois, jnp.float32(scale)))
    ft = to_nchw(f).requires_grad_()
    ref = torchvision.ops.roi_align(ft, torch.tensor(rois), BIG_OUT, scale, sampling_ratio,
                                    aligned)
    np.testing.assert_allclose(out, to_nhwc(ref), atol=1e-4, rtol=0)
    ref.backward(to_nchw(g))
    gj = np.asarray(grad(f, rois, jnp.float32(scale), g))
    np.testing.assert_allclose(gj, to_nhwc(ft.grad), atol=1e-4, rtol=0)


def test_exact_multiples_of_output_size():
    # ceil(21 / 7) must be 3 (XLA's reciprocal rewrite of a division made it 4).
    f = np.random.default_rng(0).standard_normal((1, 30, 30, 2)).astype(np.float32)
    rois = np.array([[0, 0, 0, 21, 21], [0, 1, 1, 15, 15], [0, 2, 3, 9, 17]], np.float32)
    out = jax.jit(roi_align, static_argnums=(2, 3, 4, 5))(f, rois, 7, 1.0, -1, False)
    ref = torchvision.ops.roi_align(to_nchw(f), torch.tensor(rois), 7, 1.0, -1, False)
    np.testing.assert_allclose(np.asarray(out), to_nhwc(ref), atol=1e-5, rtol=0)


def test_vmap_over_images_and_module_form():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((3, 1, H, W, C)).astype(np.float32)
    rois = np.stack([random_rois(rng, 5, 1, H, W, 1.0) for _ in range(3)])
    out = jax.vmap(lambda f, r: roi_align(f, r, 2, 1.0, 2, True))(f, rois)
    for i in range(3):
        np.testing.assert_allclose(out[i], RoIAlign(2, 1.0, 2, True)(f[i], rois[i]), atol=1e-6)


@pytest.mark.parametrize("features, rois, match", [
    (np.zeros((H, W, C), np.float32), np.zeros((1, 5), np.float32), "rank 4"),
    (np.zeros((N, H, W, C), np.int32), np.zeros((1, 5), np.float32), "floating"),
    (np.zeros((N, H, W, C), np.float32), np.zeros((1, 4), np.float32), "batch index"),
    (np.zeros((N, H, W, C), np.float32), np.zeros((5,), np.float32), "rank 2"),
])
def test_trace_time_errors(features, rois, match):
    with pytest.raises((ValueError, TypeError), match=match):
        jax.jit(lambda f, r: roi_align(f, r, 2)).trace(features, rois)


# --- torchvision's own cases (test/test_ops.py: RoIOpTester, TestRoIAlign) -------------------

# test_forward's RoIs on a 10 x 10 map, (batch_index, x1, y1, x2, y2).
TV_ROIS = [[0, 0, 0, 9, 9], [0, 0, 5, 4, 9], [0, 5, 5, 9, 9], [1, 0, 0, 9, 9]]
# test_backward's RoIs on a 5 x 5 map.
TV_GRAD_ROIS = [[0, 0, 0, 4, 4], [0, 0, 2, 3, 4], [0, 2, 2, 4, 4]]


def _tv_bilinear(data: np.ndarray, y: float, x: float) -> np.ndarray:
    """torchvision's test ``bilinear_interpolate(..., snap_border=True)`` on ``data: [C, H, W]``
    (all channels at once)."""
    _, height, width = data.shape
    if -1 < y <= 0:
        y = 0
    elif height - 1 <= y < height:
        y = height - 1
    if -1 < x <= 0:
        x = 0
    elif width - 1 <= x < width:
        x = width - 1
    y_low, x_low = int(np.floor(y)), int(np.floor(x))
    wy_h, wx_h = y - y_low, x - x_low
    val = np.zeros(data.shape[0])
    for wx, xp in ((1 - wx_h, x_low), (wx_h, x_low + 1)):
        for wy, yp in ((1 - wy_h, y_low), (wy_h, y_low + 1)):
            if 0 <= yp < height and 0 <= xp < width:
                val = val + wx * wy * data[:, yp, xp]
    return val


def _tv_expected_roi_align(x: np.ndarray, rois: np.ndarray, pool_h: int, pool_w: int,
                           spatial_scale: float = 1, sampling_ratio: int = -1,
                           aligned: bool = False) -> np.ndarray:
    """torchvision's ``TestRoIAlign.expected_fn`` in float64: ``x: [N, C, H, W]`` -> NCHW."""
    x = np.asarray(x, np.float64)
    out = np.zeros((len(rois), x.shape[1], pool_h, pool_w))
    offset = 0.5 if aligned else 0.0
    for r, roi in enumerate(np.asarray(rois, np.float64)):
        data = x[int(roi[0])]
        j_begin, i_begin, j_end, i_end = (v * spatial_scale - offset for v in roi[1:])
        bin_h, bin_w = (i_end - i_begin) / pool_h, (j_end - j_begin) / pool_w
        for i in range(pool_h):
            start_h = i_begin + i * bin_h
            grid_h = sampling_ratio if sampling_ratio > 0 else int(np.ceil(bin_h))
            for j in range(pool_w):
                start_w = j_begin + j * bin_w
                grid_w = sampling_ratio if sampling_ratio > 0 else int(np.ceil(bin_w))
                val = np.zeros(x.shape[1])
                for iy in range(grid_h):
                    y = start_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        val = val + _tv_bilinear(data, y, start_w + (ix + 0.5) * bin_w / grid_w)
                out[r, :, i, j] = val / (grid_h * grid_w)
    return out


_TV_FWD = jax.jit(roi_align, static_argnums=(2, 3, 4, 5))


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_torchvision_forward_case(dtype, aligned, x64):
    # RoIOpTester.test_forward: torch.rand(2, 50, 10, 10), pool 5, adaptive sampling; tol 1e-5
    # (4e-3 for float16) against the float64 reference. float64 runs under jax_enable_x64.
    torch.manual_seed(0)
    x = torch.rand(2, 50, 10, 10, dtype=torch.float64).to(getattr(torch, dtype))
    rois = np.asarray(TV_ROIS, np.dtype(dtype))
    y = _TV_FWD(to_nhwc(x), rois, (5, 5), 1.0, -1, aligned)
    assert y.dtype == np.dtype(dtype)
    expected = _tv_expected_roi_align(x.double().numpy(), rois, 5, 5, aligned=aligned)
    tol = 4e-3 if dtype == "float16" else 1e-5
    np.testing.assert_allclose(np.asarray(y, np.float64), to_nhwc(torch.tensor(expected)),
                               atol=tol, rtol=tol)
    # And the installed torchvision, on the same input and dtype (half runs in float32 there).
    t = x if dtype != "float16" else x.float()
    ref = torchvision.ops.roi_align(t, torch.tensor(rois.astype(t.numpy().dtype)), 5, 1.0, -1,
                                    aligned)
    atol = 1e-3 if dtype == "float16" else (1e-15 if dtype == "float64" else 1e-6)
    np.testing.assert_allclose(np.asarray(y, np.float64), to_nhwc(ref).astype(np.float64),
                               atol=atol, rtol=0)


def test_torchvision_backward_case(x64):
    # RoIOpTester.test_backward (seeds 0..9): gradcheck in float64 of sampling_ratio=1, pool 2
    # on torch.rand(1, 8, 5, 5); here jax's numerical gradient check plus equality with
    # torch's float64 gradient.
    rois = np.asarray(TV_GRAD_ROIS, np.float64)
    f = jax.jit(lambda x: roi_align(x, rois, 2, 1.0, 1))
    vjp = jax.jit(lambda x, g: jax.vjp(f, x)[1](g)[0])
    for seed in range(10):
        torch.manual_seed(seed)
        xt = torch.rand(1, 8, 5, 5, dtype=torch.float64, requires_grad=True)
        x = to_nhwc(xt)
        check_grads(f, (x,), order=1, modes=["rev"])
        g = np.random.default_rng(seed).standard_normal((3, 2, 2, 8))
        ref = torchvision.ops.roi_align(xt, torch.tensor(rois), 2, 1.0, 1)
        ref.backward(to_nchw(g))
        np.testing.assert_allclose(np.asarray(f(x)), to_nhwc(ref), atol=1e-15, rtol=0)
        np.testing.assert_allclose(np.asarray(vjp(x, g)), to_nhwc(xt.grad), atol=1e-15, rtol=0)


def test_boxes_shape():
    # _helper_boxes_shape: [K, 4] boxes (no batch index) are refused.
    a = np.linspace(1, 64, 64, dtype=np.float32).reshape(1, 8, 8, 1)
    with pytest.raises(ValueError, match="batch index"):
        roi_align(a, np.asarray([[0, 0, 3, 3]], np.float32), (2, 2))


# --- float64 and float32 under jax_enable_x64 (they used to crash: int32/int64 slice starts) --


def test_x64_matches_torchvision_float64(x64):
    sampling_ratio, aligned = -1, False
    rng = np.random.default_rng(3)
    f = rng.standard_normal((N, H, W, C))
    rois = random_rois(rng, K, N, H, W, 1.0, inverted=not aligned).astype(np.float64)
    g = rng.standard_normal((K, *OUT, C))

    def fwd(f):
        return roi_align(f, rois, OUT, 1.0, sampling_ratio, aligned)

    out, grad = jax.jit(lambda f, g: (fwd(f), jax.vjp(fwd, f)[1](g)[0]))(f, g)
    assert out.dtype == grad.dtype == np.float64
    ft = to_nchw(f).requires_grad_()
    ref = torchvision.ops.roi_align(ft, torch.tensor(rois), OUT, 1.0, sampling_ratio, aligned)
    ref.backward(to_nchw(g))
    np.testing.assert_allclose(np.asarray(out), to_nhwc(ref), atol=1e-12, rtol=0)
    np.testing.assert_allclose(np.asarray(grad), to_nhwc(ft.grad), atol=1e-12, rtol=0)


def test_x64_float32_and_vmap(x64):
    rng = np.random.default_rng(4)
    f = rng.standard_normal((2, 1, H, W, C)).astype(np.float32)
    rois = np.stack([random_rois(rng, 5, 1, H, W, 1.0) for _ in range(2)])
    out = jax.jit(jax.vmap(lambda f, r: roi_align(f, r, 2, 1.0, 2, False)))(f, rois)
    assert out.dtype == np.float32
    for i in range(2):
        ref = torchvision.ops.roi_align(to_nchw(f[i]), torch.tensor(rois[i]), 2, 1.0, 2, False)
        np.testing.assert_allclose(np.asarray(out[i]), to_nhwc(ref), atol=1e-5, rtol=0)
