"""Parity of :mod:`jaxvision.ops.roi_pool` with ``torchvision.ops.roi_pool``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

from jaxvision.ops import RoIPool, roi_pool
from tests.ops._tv import FAST, random_rois, to_nchw, to_nhwc

N, H, W, C, K, OUT = 2, 11, 14, 3, 24, (3, 4)


def _fwd(f, r, s):
    return roi_pool(f, r, OUT, s)  # spatial_scale traced: one compilation for all scales


_FWD = jax.jit(_fwd)
_GRAD = jax.jit(lambda f, r, s, g: jax.grad(lambda f: jnp.sum(_fwd(f, r, s) * g))(f))


@FAST
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1.0, 0.5, 1 / 16, 1 / 32]),
       quantize=st.booleans())
def test_matches_torchvision(seed, scale, quantize):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((N, H, W, C)).astype(np.float32)
    if quantize:  # many ties inside bins: the gradient must pick torch's argmax
        f = np.round(f).astype(np.float32)
    rois = random_rois(rng, K, N, H, W, scale)
    g = rng.standard_normal((K, *OUT, C)).astype(np.float32)
    out = np.asarray(_FWD(f, rois, jnp.float32(scale)))
    ft = to_nchw(f).requires_grad_()
    ref = torchvision.ops.roi_pool(ft, torch.tensor(rois), OUT, scale)
    np.testing.assert_allclose(out, to_nhwc(ref), atol=1e-5, rtol=0)
    ref.backward(to_nchw(g))
    gj = np.asarray(_GRAD(f, rois, jnp.float32(scale), g))
    np.testing.assert_allclose(gj, to_nhwc(ft.grad), atol=1e-4, rtol=0)


def test_rounding_half_away_from_zero_and_non_finite():
    f = np.random.default_rng(0).standard_normal((1, 8, 8, 1)).astype(np.float32)
    f[0, 2, 2, 0], f[0, 5, 5, 0] = np.nan, -np.inf
    f[0, 6:, 6:, 0] = -np.inf  # a bin with nothing that counts -> -FLT_MAX
    rois = np.array([[0, 0.5, 0.5, 2.5, 2.5], [0, -0.5, 1.5, 3.5, 4.5], [0, 1, 1, 6, 6],
                     [0, 6, 6, 7, 7], [0, 20, 20, 30, 30]], np.float32)
    out = np.asarray(roi_pool(f, rois, 2))
    ref = torchvision.ops.roi_pool(to_nchw(f), torch.tensor(rois), 2, 1.0)
    np.testing.assert_array_equal(out, to_nhwc(ref))


def test_vmap_over_images_and_module_form():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((3, 1, H, W, C)).astype(np.float32)
    rois = np.stack([random_rois(rng, 5, 1, H, W, 1.0) for _ in range(3)])
    out = jax.vmap(lambda f, r: roi_pool(f, r, 2, 1.0))(f, rois)
    for i in range(3):
        np.testing.assert_array_equal(out[i], RoIPool(2, 1.0)(f[i], rois[i]))


@pytest.mark.parametrize("features, rois, match", [
    (np.zeros((H, W, C), np.float32), np.zeros((1, 5), np.float32), "rank 4"),
    (np.zeros((N, H, W, C), np.int32), np.zeros((1, 5), np.float32), "floating"),
    (np.zeros((N, H, W, C), np.float32), np.zeros((1, 4), np.float32), "batch index"),
    (np.zeros((N, H, W, C), np.float32), np.zeros((1, 5), np.int32), "floating"),
])
def test_trace_time_errors(features, rois, match):
    with pytest.raises((ValueError, TypeError), match=match):
        jax.jit(lambda f, r: roi_pool(f, r, 2)).trace(features, rois)


# --- torchvision's own cases (test/test_ops.py: RoIOpTester, TestRoiPool) --------------------

TV_ROIS = [[0, 0, 0, 9, 9], [0, 0, 5, 4, 9], [0, 5, 5, 9, 9], [1, 0, 0, 9, 9]]
TV_GRAD_ROIS = [[0, 0, 0, 4, 4], [0, 0, 2, 3, 4], [0, 2, 2, 4, 4]]


def _tv_expected_roi_pool(x: np.ndarray, rois: np.ndarray, pool_h: int, pool_w: int,
                          spatial_scale: float = 1) -> np.ndarray:
    """torchvision's ``TestRoiPool.expected_fn`` in float64: ``x: [N, C, H, W]`` -> NCHW."""
    x = np.asarray(x, np.float64)
    out = np.zeros((len(rois), x.shape[1], pool_h, pool_w))

    def get_slice(k, block):
        return slice(int(np.floor(k * block)), int(np.ceil((k + 1) * block)))

    for roi_idx, roi in enumerate(np.asarray(rois, np.float64)):
        j_begin, i_begin, j_end, i_end = (int(round(v * spatial_scale)) for v in roi[1:])
        roi_x = x[int(roi[0]), :, i_begin:i_end + 1, j_begin:j_end + 1]
        bin_h, bin_w = roi_x.shape[-2] / pool_h, roi_x.shape[-1] / pool_w
        for i in range(pool_h):
            for j in range(pool_w):
                bin_x = roi_x[:, get_slice(i, bin_h), get_slice(j, bin_w)]
                if bin_x.size > 0:
                    out[roi_idx, :, i, j] = bin_x.reshape(x.shape[1], -1).max(axis=1)
    return out


_TV_FWD = jax.jit(roi_pool, static_argnums=(2, 3))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_torchvision_forward_case(dtype, x64):
    # RoIOpTester.test_forward: torch.rand(2, 50, 10, 10), pool 5; tol 1e-5 (4e-3 for
    # float16) against the float64 reference. float64 runs under jax_enable_x64.
    torch.manual_seed(0)
    x = torch.rand(2, 50, 10, 10, dtype=torch.float64).to(getattr(torch, dtype))
    rois = np.asarray(TV_ROIS, np.dtype(dtype))
    y = _TV_FWD(to_nhwc(x), rois, (5, 5), 1.0)
    assert y.dtype == np.dtype(dtype)
    expected = _tv_expected_roi_pool(x.double().numpy(), rois, 5, 5)
    tol = 4e-3 if dtype == "float16" else 1e-5
    np.testing.assert_allclose(np.asarray(y, np.float64), to_nhwc(torch.tensor(expected)),
                               atol=tol, rtol=tol)
    ref = torchvision.ops.roi_pool(x, torch.tensor(rois), 5, 1.0)  # max: exact in any dtype
    np.testing.assert_array_equal(np.asarray(y), to_nhwc(ref))


def test_torchvision_backward_case(x64):
    # RoIOpTester.test_backward (seeds 0..9): gradcheck in float64 of pool 2 on
    # torch.rand(1, 8, 5, 5): jax's numerical check plus equality with torch's gradient.
    rois = np.asarray(TV_GRAD_ROIS, np.float64)
    f = jax.jit(lambda x: roi_pool(x, rois, 2, 1.0))
    vjp = jax.jit(lambda x, g: jax.vjp(f, x)[1](g)[0])
    for seed in range(10):
        torch.manual_seed(seed)
        xt = torch.rand(1, 8, 5, 5, dtype=torch.float64, requires_grad=True)
        x = to_nhwc(xt)
        check_grads(f, (x,), order=1, modes=["rev"])
        g = np.random.default_rng(seed).standard_normal((3, 2, 2, 8))
        ref = torchvision.ops.roi_pool(xt, torch.tensor(rois), 2, 1.0)
        ref.backward(to_nchw(g))
        np.testing.assert_array_equal(np.asarray(f(x)), to_nhwc(ref))
        np.testing.assert_allclose(np.asarray(vjp(x, g)), to_nhwc(xt.grad), atol=1e-15, rtol=0)


def test_boxes_shape():
    # _helper_boxes_shape: [K, 4] boxes (no batch index) are refused.
    a = np.linspace(1, 64, 64, dtype=np.float32).reshape(1, 8, 8, 1)
    with pytest.raises(ValueError, match="batch index"):
        roi_pool(a, np.asarray([[0, 0, 3, 3]], np.float32), (2, 2))


def test_x64_float64_and_float32(x64):
    # Under jax_enable_x64 (used to crash even for float32): float64 equals torch's float64
    # (scale products and bin bounds in float64, as torch's kernel computes them), float32
    # stays float32; under vmap too.
    rng = np.random.default_rng(5)
    f = rng.standard_normal((N, H, W, C))
    rois = random_rois(rng, K, N, H, W, 1 / 16).astype(np.float64)
    g = rng.standard_normal((K, *OUT, C))

    def fwd(f):
        return roi_pool(f, rois, OUT, 1 / 16)

    out, grad = jax.jit(lambda f, g: (fwd(f), jax.vjp(fwd, f)[1](g)[0]))(f, g)
    assert out.dtype == grad.dtype == np.float64
    ft = to_nchw(f).requires_grad_()
    ref = torchvision.ops.roi_pool(ft, torch.tensor(rois), OUT, 1 / 16)
    ref.backward(to_nchw(g))
    np.testing.assert_array_equal(np.asarray(out), to_nhwc(ref))
    np.testing.assert_allclose(np.asarray(grad), to_nhwc(ft.grad), atol=1e-12, rtol=0)
    f32 = f.astype(np.float32)[:, None]
    r32 = np.stack([rois[:8], rois[8:16]]).astype(np.float32)
    r32[..., 0] = 0  # one image per vmapped map
    out32 = jax.jit(jax.vmap(lambda f, r: roi_pool(f, r, 2, 1 / 16)))(f32, r32)
    assert out32.dtype == np.float32
    for i in range(2):
        ref32 = torchvision.ops.roi_pool(to_nchw(f32[i]), torch.tensor(r32[i]), 2, 1 / 16)
        np.testing.assert_array_equal(np.asarray(out32[i]), to_nhwc(ref32))
