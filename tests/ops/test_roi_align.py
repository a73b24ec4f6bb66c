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
