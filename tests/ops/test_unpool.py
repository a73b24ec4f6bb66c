"""Parity of :mod:`jaxvision.ops.unpool` with torch's max pooling and unpooling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from jaxvision.ops import max_pool_with_argmax, max_unpool, unpool_bed_of_nails, unpool_nearest
from tests.ops._tv import FAST, to_nchw, to_nhwc

SHAPE = (2, 9, 11, 3)
CONFIGS = [(2, 2, 0, False), (2, 2, 0, True), (3, 2, 1, True), (3, 1, 1, False), (3, 2, 0, True)]


def _roundtrip(cfg):
    k, s, p, cm = cfg

    def f(x, g):
        v, i = max_pool_with_argmax(x, k, s, p, cm)
        loss = lambda x: jnp.sum(max_unpool(*max_pool_with_argmax(x, k, s, p, cm),  # noqa: E731
                                            SHAPE[1:3]) * g)
        return v, i, max_unpool(v, i, SHAPE[1:3]), jax.grad(loss)(x)

    return jax.jit(f)


_FNS = {cfg: _roundtrip(cfg) for cfg in CONFIGS}


@FAST
@given(seed=st.integers(0, 2**31 - 1), cfg=st.sampled_from(CONFIGS), ties=st.booleans())
def test_pool_unpool_matches_torch(seed, cfg, ties):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    if ties:  # equal values in windows; overlapping windows (stride 1) share indices
        x = np.round(x).astype(np.float32)
    g = rng.standard_normal(SHAPE).astype(np.float32)
    k, s, p, cm = cfg
    xt = to_nchw(x).requires_grad_()
    v, i = F.max_pool2d(xt, k, s, p, ceil_mode=cm, return_indices=True)
    u = F.max_unpool2d(v, i, k, s, p, output_size=SHAPE[1:3])
    (u * to_nchw(g)).sum().backward()
    vj, ij, uj, gj = _FNS[cfg](x, g)
    np.testing.assert_array_equal(np.asarray(vj), to_nhwc(v))
    np.testing.assert_array_equal(np.asarray(ij), to_nhwc(i))
    np.testing.assert_array_equal(np.asarray(uj), to_nhwc(u))
    np.testing.assert_allclose(np.asarray(gj), to_nhwc(xt.grad), atol=1e-6)


def test_max_pool_gradient_and_nan():
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal(SHAPE)).astype(np.float32)
    x[0, 1, 1, 0] = x[0, 0, 1, 0] = np.nan
    xt = to_nchw(x).requires_grad_()
    v, i = F.max_pool2d(xt, 3, 2, 1, return_indices=True)
    g = rng.standard_normal(v.shape).astype(np.float32)
    (v * torch.tensor(g)).sum().backward()
    vj, ij = max_pool_with_argmax(x, 3, 2, 1)
    np.testing.assert_array_equal(np.asarray(ij), to_nhwc(i))
    np.testing.assert_array_equal(np.asarray(vj), to_nhwc(v))
    gj = jax.grad(lambda x: jnp.sum(max_pool_with_argmax(x, 3, 2, 1)[0]
                                     * to_nhwc(torch.tensor(g))))(x)
    ref = xt.grad.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.nan_to_num(np.asarray(gj)), np.nan_to_num(ref), atol=1e-6)


@pytest.mark.parametrize("factor", [2, 3, (2, 3)])
def test_nearest_and_bed_of_nails(factor):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    fh, fw = (factor, factor) if isinstance(factor, int) else factor
    ref = F.interpolate(to_nchw(x), scale_factor=(fh, fw), mode="nearest")
    np.testing.assert_array_equal(np.asarray(unpool_nearest(x, factor)), to_nhwc(ref))
    # Bed of nails = max_unpool2d with every index on its block's top-left corner.
    rows = np.arange(4)[:, None] * fh
    cols = np.arange(5)[None, :] * fw
    idx = torch.tensor(np.broadcast_to(rows * (5 * fw) + cols, (2, 3, 4, 5)).copy())
    ref = F.max_unpool2d(to_nchw(x), idx, (fh, fw), output_size=(4 * fh, 5 * fw))
    np.testing.assert_array_equal(np.asarray(unpool_bed_of_nails(x, factor)), to_nhwc(ref))


def test_vmap_and_errors():
    x = np.random.default_rng(0).standard_normal((4, *SHAPE)).astype(np.float32)
    v, i = jax.vmap(lambda x: max_pool_with_argmax(x, 2))(x)
    u = jax.vmap(lambda v, i: max_unpool(v, i, SHAPE[1:3]))(v, i)
    np.testing.assert_array_equal(u[1], max_unpool(*max_pool_with_argmax(x[1], 2), SHAPE[1:3]))
    with pytest.raises(ValueError, match="rank 4"):
        max_pool_with_argmax(x[0, 0], 2)
    with pytest.raises(TypeError, match="floating"):
        max_pool_with_argmax(x[0].astype(np.int32), 2)
    with pytest.raises(TypeError, match="integer"):
        max_unpool(v[0], v[0], SHAPE[1:3])
    with pytest.raises(ValueError, match="half the kernel"):
        max_pool_with_argmax(x[0], 2, padding=2)


def test_out_of_range_indices_raise_like_torch():
    x = np.ones((1, 2, 2, 1), np.float32)
    for bad in (16, -1):
        idx = np.array([0, 1, 4, bad], np.int32).reshape(1, 2, 2, 1)
        with pytest.raises(RuntimeError, match="invalid max index"):
            F.max_unpool2d(to_nchw(x), to_nchw(idx).long(), 2, output_size=(4, 4))
        with pytest.raises(ValueError, match="invalid max index"):
            max_unpool(x, idx, (4, 4))
        # Traced indices cannot raise: the out-of-range value is dropped (documented).
        out = jax.jit(lambda x, i: max_unpool(x, i, (4, 4)))(x, idx)
        assert float(out.sum()) == 3.0
