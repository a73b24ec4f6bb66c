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
