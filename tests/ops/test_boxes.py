"""Parity of :mod:`jaxvision.ops.boxes` with ``torchvision.ops`` and its ``BoxCoder``."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder as TVBoxCoder

from jaxvision.ops import (
    BoxCoder,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    generalized_box_iou,
    remove_small_boxes,
)
from tests.ops._tv import FAST

K = 40


def _boxes(rng: np.random.Generator, k: int = K) -> np.ndarray:
    """Mixed boxes: ordinary, degenerate (zero width/height), inverted, duplicated."""
    xy = rng.uniform(-20, 100, (k, 2))
    wh = rng.uniform(0, 60, (k, 2))
    kind = rng.integers(0, 4, k)
    wh[kind == 1, 0] = 0
    wh[kind == 2] *= -1
    b = np.concatenate([xy, xy + wh], 1)
    b[kind == 3] = b[0]
    return b.astype(np.float32)


_PAIR = jax.jit(lambda a, b: (box_iou(a, b), generalized_box_iou(a, b)))
_PAIR_GRAD = jax.jit(lambda a, b, g: jax.grad(
    lambda a: jnp.sum(jnp.nan_to_num(box_iou(a, b) * g + generalized_box_iou(a, b) * g)))(a))


@FAST
@given(seed=st.integers(0, 2**31 - 1))
def test_iou_giou_match_torchvision(seed):
    rng = np.random.default_rng(seed)
    a, b = _boxes(rng), _boxes(rng, K // 2)
    a[:, 2:] = np.maximum(a[:, 2:], a[:, :2] + 0.5)  # GIoU needs well-formed boxes
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.5)
    g = rng.standard_normal((K, K // 2)).astype(np.float32)
    iou, giou = _PAIR(a, b)
    at = torch.tensor(a, requires_grad=True)
    ref_iou = torchvision.ops.box_iou(at, torch.tensor(b))
    ref_giou = torchvision.ops.generalized_box_iou(at, torch.tensor(b))
    np.testing.assert_allclose(np.asarray(iou), ref_iou.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(np.asarray(giou), ref_giou.detach().numpy(), atol=1e-5)
    torch.nan_to_num(ref_iou * torch.tensor(g) + ref_giou * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(np.asarray(_PAIR_GRAD(a, b, g)), at.grad.numpy(), atol=1e-4)


@FAST
@given(seed=st.integers(0, 2**31 - 1))
def test_elementwise_ops_match_torchvision(seed):
    rng = np.random.default_rng(seed)
    b = _boxes(rng)
    bt = torch.tensor(b)
    np.testing.assert_allclose(np.asarray(box_area(b)), torchvision.ops.box_area(bt).numpy(),
                               atol=1e-5, rtol=1e-6)
    for i, o in itertools.permutations(["xyxy", "xywh", "cxcywh"], 2):
        np.testing.assert_allclose(np.asarray(box_convert(b, i, o)),
                                   torchvision.ops.box_convert(bt, i, o).numpy(), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(clip_boxes_to_image(b, (50, 70))),
                                  torchvision.ops.clip_boxes_to_image(bt, (50, 70)).numpy())
    keep = np.asarray(remove_small_boxes(b, 3.0))
    np.testing.assert_array_equal(np.nonzero(keep)[0],
                                  torchvision.ops.remove_small_boxes(bt, 3.0).numpy())
    # NaN (0 / 0 for two empty boxes) in the same places.
    np.testing.assert_allclose(np.asarray(box_iou(b, b)),
                               torchvision.ops.box_iou(bt, bt).numpy(), atol=1e-5)


@FAST
@given(seed=st.integers(0, 2**31 - 1), weights=st.sampled_from([(10., 10., 5., 5.),
                                                                (1., 1., 1., 1.)]))
def test_box_coder_matches_torchvision(seed, weights):
    rng = np.random.default_rng(seed)
    prop = _boxes(rng)
    prop[:, 2:] = prop[:, :2] + np.abs(prop[:, 2:] - prop[:, :2]) + 1
    ref = _boxes(rng)
    ref[:, 2:] = ref[:, :2] + np.abs(ref[:, 2:] - ref[:, :2]) + 1
    codes = (rng.standard_normal((K, 8)) * 8).astype(np.float32)  # some hit the clamp
    tv, ours = TVBoxCoder(weights), BoxCoder(weights)
    np.testing.assert_allclose(np.asarray(jax.jit(ours.encode_single)(ref, prop)),
                               tv.encode_single(torch.tensor(ref), torch.tensor(prop)).numpy(),
                               atol=1e-5, rtol=1e-5)
    dec = tv.decode_single(torch.tensor(codes), torch.tensor(prop)).numpy()
    np.testing.assert_allclose(np.asarray(jax.jit(ours.decode_single)(codes, prop)), dec,
                               rtol=1e-6, atol=1e-3)  # coordinates up to ~1e5 after exp
    np.testing.assert_allclose(np.asarray(ours.decode(codes[None], prop[None]))[0],
                               dec.reshape(K, 2, 4), rtol=1e-6, atol=1e-3)


def test_vmap_and_errors():
    rng = np.random.default_rng(0)
    a = np.stack([_boxes(rng, 6) for _ in range(3)])
    np.testing.assert_allclose(jax.vmap(box_iou)(a, a), box_iou(a, a), atol=0)
    with pytest.raises(ValueError, match="last axis"):
        box_iou(np.zeros((3, 5), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="floating"):
        box_area(np.zeros((3, 4), np.int32))
    with pytest.raises(ValueError, match="format"):
        box_convert(a, "xyxy", "yxyx")
    with pytest.raises(ValueError, match="rank"):
        jax.jit(BoxCoder((1, 1, 1, 1)).encode_single).trace(a, a)
