"""Parity of :mod:`jaxvision.ops.poolers` with ``torchvision.ops.MultiScaleRoIAlign``."""

from __future__ import annotations

from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from torchvision.ops.poolers import LevelMapper

from jaxvision.ops import MultiScaleRoIAlign, map_levels
from tests.ops._tv import FAST, to_nchw, to_nhwc

IMG, C, K = (128, 96), 3, 12
LEVELS = {"p2": (32, 24), "p3": (16, 12), "p4": (8, 6), "p5": (4, 3)}
# canonical_scale 16 maps this small image's boxes (2..128 px) across all four levels.
POOLER = MultiScaleRoIAlign(list(LEVELS), 3, 2, canonical_scale=16)


def _fwd(feats, boxes):
    return POOLER(feats, [boxes[0], boxes[1]], [IMG, (100, 90)])


_FWD = jax.jit(_fwd)
_GRAD = jax.jit(lambda feats, boxes, g: jax.grad(
    lambda feats: jnp.sum(_fwd(feats, boxes) * g))(feats))


@FAST
@given(seed=st.integers(0, 2**31 - 1))
def test_matches_torchvision(seed):
    rng = np.random.default_rng(seed)
    feats = {k: rng.standard_normal((2, *hw, C)).astype(np.float32) for k, hw in LEVELS.items()}
    side = np.exp(rng.uniform(np.log(2), np.log(128), (2, K, 2)))
    xy = rng.uniform(0, 96, (2, K, 2))
    boxes = np.concatenate([xy, xy + side], -1).astype(np.float32)
    g = rng.standard_normal((2 * K, 3, 3, C)).astype(np.float32)
    out = np.asarray(_FWD(feats, boxes))
    tv = torchvision.ops.MultiScaleRoIAlign(list(LEVELS), 3, 2, canonical_scale=16)
    tfeats = OrderedDict((k, to_nchw(v).requires_grad_()) for k, v in feats.items())
    ref = tv(tfeats, [torch.tensor(b) for b in boxes], [IMG, (100, 90)])
    np.testing.assert_allclose(out, to_nhwc(ref), atol=1e-4, rtol=0)
    ref.backward(to_nchw(g))
    grads = _GRAD(feats, boxes, g)
    for k in LEVELS:
        np.testing.assert_allclose(np.asarray(grads[k]), to_nhwc(tfeats[k].grad), atol=1e-4,
                                   rtol=0)


def test_level_mapping_matches_torchvision():
    rng = np.random.default_rng(0)
    side = np.exp(rng.uniform(np.log(8), np.log(2000), (500, 2)))
    boxes = np.concatenate([np.zeros_like(side), side], 1).astype(np.float32)
    ref = LevelMapper(2, 5)([torch.tensor(boxes)]).numpy()
    np.testing.assert_array_equal(np.asarray(jax.jit(map_levels, static_argnums=(1, 2))(
        boxes, 2, 5)), ref)


def test_single_level_and_scales():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((1, 16, 16, 2)).astype(np.float32)
    boxes = np.array([[1, 2, 30, 40], [10, 10, 12, 12]], np.float32)
    pooler = MultiScaleRoIAlign(["0"], (2, 3), -1)
    out = pooler({"0": f}, [boxes], [(64, 64)])
    ref = torchvision.ops.MultiScaleRoIAlign(["0"], (2, 3), -1)(
        {"0": to_nchw(f)}, [torch.tensor(boxes)], [(64, 64)])
    np.testing.assert_allclose(np.asarray(out), to_nhwc(ref), atol=1e-5)
    assert pooler.scales([f], [(64, 64)]) == [0.25]


def test_repr_matches_torchvision():
    # TestMultiScaleRoIAlign.test_msroialign_repr.
    expected = "MultiScaleRoIAlign(featmap_names=['0'], output_size=(7, 7), sampling_ratio=2)"
    assert repr(MultiScaleRoIAlign(["0"], (7, 7), 2)) == expected
    assert repr(torchvision.ops.MultiScaleRoIAlign(["0"], (7, 7), 2)) == expected


def test_x64_matches_torchvision_float64(x64):
    # Under jax_enable_x64 (the pooler used to crash there, even for float32, whose x64 run
    # test_roi_align covers): float64 features and boxes give torchvision's float64 pooling
    # and gradient.
    rng = np.random.default_rng(2)
    levels = {"p2": (8, 6), "p3": (4, 3)}
    feats = {k: rng.standard_normal((1, *hw, 2)) for k, hw in levels.items()}
    side = np.exp(rng.uniform(np.log(1), np.log(32), (6, 2)))
    xy = rng.uniform(0, 20, (6, 2))
    boxes = np.concatenate([xy, xy + side], -1)
    pooler = MultiScaleRoIAlign(list(levels), 2, 2, canonical_scale=8)
    g = rng.standard_normal((6, 2, 2, 2))

    def fwd(feats):
        return pooler(feats, [boxes], [(32, 24)])

    out, grads = jax.jit(lambda f, g: (fwd(f), jax.vjp(fwd, f)[1](g)[0]))(feats, g)
    assert out.dtype == np.float64
    tv = torchvision.ops.MultiScaleRoIAlign(list(levels), 2, 2, canonical_scale=8)
    tfeats = OrderedDict((k, to_nchw(v).requires_grad_()) for k, v in feats.items())
    ref = tv(tfeats, [torch.tensor(boxes)], [(32, 24)])
    ref.backward(to_nchw(g))
    np.testing.assert_allclose(np.asarray(out), to_nhwc(ref), atol=1e-12, rtol=0)
    for k in levels:
        np.testing.assert_allclose(np.asarray(grads[k]), to_nhwc(tfeats[k].grad), atol=1e-12,
                                   rtol=0)
