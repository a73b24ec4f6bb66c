"""Parity of :mod:`jaxvision.ops.boxes` with ``torchvision.ops`` and its ``BoxCoder``."""

from __future__ import annotations

import functools
import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from absl.testing import parameterized
from hypothesis import given
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder as TVBoxCoder

from jaxvision.ops import (
    BoxCoder,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    complete_box_iou,
    distance_box_iou,
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
        box_area(np.zeros((3, 4), bool))
    with pytest.raises(TypeError, match="floating"):
        box_convert(np.zeros((3, 4), np.int32), "xyxy", "xywh")
    with pytest.raises(ValueError, match="format"):
        box_convert(a, "xyxy", "yxyx")
    with pytest.raises(ValueError, match="rank"):
        jax.jit(BoxCoder((1, 1, 1, 1)).encode_single).trace(a, a)


# --- torchvision's own cases (test/test_ops.py: TestBoxConvert, TestBoxArea, TestBoxIou,
# TestGeneralizedBoxIou, TestDistanceBoxIoU, TestCompleteBoxIou), jitted and not -------------

CONVERT_XYXY = [[0, 0, 100, 100], [0, 0, 0, 0], [10, 15, 30, 35], [23, 35, 93, 95]]
CONVERT_XYWH = [[0, 0, 100, 100], [0, 0, 0, 0], [10, 15, 20, 20], [23, 35, 70, 60]]
CONVERT_CXCYWH = [[50, 50, 100, 100], [0, 0, 0, 0], [20, 25, 20, 20], [58, 65, 70, 60]]
INT_BOXES = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300], [0, 0, 25, 25]]
INT_BOXES2 = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300]]
FLOAT_BOXES = [[285.3538, 185.5758, 1193.5110, 851.4551],
               [285.1472, 188.7374, 1192.4984, 851.0669],
               [279.2440, 197.9812, 1189.4746, 849.2019]]
FLOAT_EXPECTED = [[1.0, 0.9933, 0.9673], [0.9933, 1.0, 0.9737], [0.9673, 0.9737, 1.0]]
IOU_FNS = {"box_iou": box_iou, "generalized_box_iou": generalized_box_iou,
           "distance_box_iou": distance_box_iou, "complete_box_iou": complete_box_iou}
INT_EXPECTED = {
    "box_iou": [[1.0, 0.25, 0.0], [0.25, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0625, 0.25, 0.0]],
    "generalized_box_iou": [[1.0, 0.25, -0.7778], [0.25, 1.0, -0.8611],
                            [-0.7778, -0.8611, 1.0], [0.0625, 0.25, -0.8819]],
    "distance_box_iou": [[1.0000, 0.1875, -0.4444], [0.1875, 1.0000, -0.5625],
                         [-0.4444, -0.5625, 1.0000], [-0.0781, 0.1875, -0.6267]],
    "complete_box_iou": [[1.0000, 0.1875, -0.4444], [0.1875, 1.0000, -0.5625],
                         [-0.4444, -0.5625, 1.0000], [-0.0781, 0.1875, -0.6267]],
}


class TorchvisionBoxCases(chex.TestCase):
    """torchvision's fixed box-op cases; int64 and float64 under ``jax_enable_x64``."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(
        ("xyxy", "xyxy", CONVERT_XYXY, CONVERT_XYXY),  # test_bbox_same
        ("xywh", "xywh", CONVERT_XYXY, CONVERT_XYXY),
        ("cxcywh", "cxcywh", CONVERT_XYXY, CONVERT_XYXY),
        ("xyxy", "xywh", CONVERT_XYXY, CONVERT_XYWH),  # test_bbox_xyxy_xywh
        ("xywh", "xyxy", CONVERT_XYWH, CONVERT_XYXY),
        ("xyxy", "cxcywh", CONVERT_XYXY, CONVERT_CXCYWH),  # test_bbox_xyxy_cxcywh
        ("cxcywh", "xyxy", CONVERT_CXCYWH, CONVERT_XYXY),
        ("xywh", "cxcywh", CONVERT_XYWH, CONVERT_CXCYWH),  # test_bbox_xywh_cxcywh
        ("cxcywh", "xywh", CONVERT_CXCYWH, CONVERT_XYWH),
    )
    def test_box_convert(self, in_fmt, out_fmt, boxes, expected):
        fn = self.variant(functools.partial(box_convert, in_fmt=in_fmt, out_fmt=out_fmt))
        out = fn(np.asarray(boxes, np.float32))
        chex.assert_shape(out, (4, 4))
        np.testing.assert_array_equal(np.asarray(out), np.asarray(expected, np.float32))

    @parameterized.product(in_fmt=["xwyh", "cxwyh"], out_fmt=["xwcx", "xhwcy"])
    def test_box_convert_invalid(self, in_fmt, out_fmt):
        with pytest.raises(ValueError, match="format"):
            box_convert(np.asarray(CONVERT_XYWH, np.float32), in_fmt, out_fmt)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters("int8", "int16", "int32", "int64")
    def test_box_area_int(self, dtype):
        with jax.enable_x64(True):
            out = self.variant(box_area)(jnp.asarray([[0, 0, 100, 100], [0, 0, 0, 0]], dtype))
            assert jnp.issubdtype(out.dtype, jnp.integer)
            np.testing.assert_array_equal(np.asarray(out), [10000, 0])

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters("float32", "float64")
    def test_box_area_float(self, dtype):
        with jax.enable_x64(True):
            out = self.variant(box_area)(jnp.asarray(FLOAT_BOXES, dtype))
            assert out.dtype == np.dtype(dtype)
            # torchvision's expected values, as a tensor of the boxes' dtype.
            expected = np.asarray([604723.0806, 600965.4666, 592761.0085], dtype)
            np.testing.assert_allclose(np.asarray(out), expected, atol=1e-4, rtol=0)
            ref = torchvision.ops.box_area(torch.tensor(FLOAT_BOXES, dtype=getattr(torch, dtype)))
            np.testing.assert_array_equal(np.asarray(out), ref.numpy())

    @chex.variants(with_jit=True, without_jit=True)
    def test_box_area_float16(self):
        boxes = [[2.825, 1.8625, 3.90, 4.85], [2.825, 4.875, 19.20, 5.10],
                 [2.925, 1.80, 8.90, 4.90]]
        out = self.variant(box_area)(jnp.asarray(boxes, jnp.float16))
        np.testing.assert_allclose(np.asarray(out, np.float64), [3.2170, 3.7108, 18.5071],
                                   atol=0.01, rtol=0)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(name=list(IOU_FNS), dtype=["int16", "int32", "int64"])
    def test_iou_int(self, name, dtype):
        with jax.enable_x64(True):
            out = self.variant(IOU_FNS[name])(jnp.asarray(INT_BOXES, dtype),
                                              jnp.asarray(INT_BOXES2, dtype))
            np.testing.assert_allclose(np.asarray(out, np.float64), INT_EXPECTED[name],
                                       atol=1e-4, rtol=0)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(name=list(IOU_FNS), dtype=["float16", "float32", "float64"])
    def test_iou_float(self, name, dtype):
        with jax.enable_x64(True):
            boxes = jnp.asarray(FLOAT_BOXES, dtype)
            out = self.variant(IOU_FNS[name])(boxes, boxes)
            atol = 0.002 if dtype == "float16" else 1e-3
            np.testing.assert_allclose(np.asarray(out, np.float64), FLOAT_EXPECTED, atol=atol,
                                       rtol=0)
            if dtype != "float16":  # and the installed torchvision, in the same dtype
                tb = torch.tensor(FLOAT_BOXES, dtype=getattr(torch, dtype))
                ref = getattr(torchvision.ops, name)(tb, tb).numpy()
                assert out.dtype == ref.dtype
                np.testing.assert_allclose(np.asarray(out), ref, rtol=0,
                                           atol=1e-6 if dtype == "float32" else 1e-15)

    @parameterized.parameters(*IOU_FNS)
    def test_iou_cartesian(self, name):
        # _run_cartesian_test: the [N, M] matrix equals the pairs computed one by one.
        torch.manual_seed(0)
        xy1 = torch.rand(12, 2)
        boxes = torch.cat([xy1, xy1 + torch.rand(12, 2)], dim=-1).numpy()
        b1, b2 = boxes[:5], boxes[5:]
        fn = IOU_FNS[name]
        one_by_one = [[float(fn(b1[i:i + 1], b2[j:j + 1])[0, 0]) for j in range(7)]
                      for i in range(5)]
        np.testing.assert_allclose(np.asarray(fn(b1, b2)), one_by_one, atol=1e-6, rtol=0)


# --- gradients at clamp bounds: torch.clamp passes the gradient strictly inside its bounds --


def test_touching_boxes_gradients_match_torchvision():
    # Intersections of exactly 0 width (touching boxes) and corners on the image border:
    # torch.clamp gives gradient 0 there (jnp.clip splits it, jnp.where(x >= 0) passed it).
    a = np.array([[0, 0, 1, 1], [0, 0, 2, 2], [1, 1, 3, 3]], np.float32)
    c = np.array([[1, 0, 2, 1], [0, 2, 2, 3], [2, 2, 3, 5]], np.float32)
    for name, fn in IOU_FNS.items():
        at = torch.tensor(a, requires_grad=True)
        getattr(torchvision.ops, name)(at, torch.tensor(c)).sum().backward()
        g = jax.grad(lambda a, fn=fn: fn(a, c).sum())(a)
        np.testing.assert_allclose(np.asarray(g), at.grad.numpy(), atol=1e-6, err_msg=name)
    at = torch.tensor(a, requires_grad=True)
    torchvision.ops.clip_boxes_to_image(at, (3, 2)).sum().backward()
    g = jax.grad(lambda a: clip_boxes_to_image(a, (3, 2)).sum())(a)
    np.testing.assert_array_equal(np.asarray(g), at.grad.numpy())


# --- BoxCoder --------------------------------------------------------------------------------


def test_box_coder_roundtrip():
    # As torchvision's test_box_linear_coder does for BoxLinearCoder: decoding the encoded
    # boxes gives them back.
    torch.manual_seed(0)
    boxes = (torch.rand(10, 4) * 50).clamp(min=1.0)
    boxes[:, 2:] += boxes[:, :2]
    proposals = torch.tensor([0, 0, 101, 101] * 10).reshape(10, 4).float().numpy()
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    codes = coder.encode_single(boxes.numpy(), proposals)
    np.testing.assert_allclose(np.asarray(coder.decode_single(codes, proposals)),
                               boxes.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder_gradient_at_clip_value(weights):
    # dw, dh exactly at log(1000 / 16) (in float32), just below and just above it: torch.clamp
    # passes the gradient only strictly below its bound (we passed it at the bound: 49.0
    # where torch gives 0).
    clip = np.float32(math.log(1000.0 / 16))
    values = np.array([np.nextafter(clip, np.float32(0)), clip, np.nextafter(clip, 9)],
                      np.float32) * np.float32(weights[2])
    codes = np.zeros((3, 4), np.float32)
    codes[:, 2] = values
    codes[:, 3] = values * np.float32(weights[3] / weights[2])
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]], np.float32)
    g = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    ct = torch.tensor(codes, requires_grad=True)
    ref = TVBoxCoder(weights).decode_single(ct, torch.tensor(boxes))
    ref.backward(torch.tensor(g))
    coder = BoxCoder(weights)
    out, vjp = jax.vjp(lambda c: coder.decode_single(c, boxes), codes)
    np.testing.assert_allclose(np.asarray(out), ref.detach().numpy(), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(np.asarray(vjp(g)[0]), ct.grad.numpy(), rtol=1e-6, atol=1e-4)
    assert float(ct.grad[1, 2]) == 0.0 and float(vjp(g)[0][1, 2]) == 0.0


def test_x64_matches_torchvision_float64(x64):
    # float64 boxes: IoU family, conversions, clipping and the box coder (values and
    # gradients) equal torchvision's float64 results.
    rng = np.random.default_rng(21)
    a, b = _boxes(rng).astype(np.float64), _boxes(rng, K // 2).astype(np.float64)
    a[:, 2:] = np.maximum(a[:, 2:], a[:, :2] + 0.5)
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.5)
    for name, fn in IOU_FNS.items():
        at = torch.tensor(a, requires_grad=True)
        ref = getattr(torchvision.ops, name)(at, torch.tensor(b))
        ref.sum().backward()
        out, vjp = jax.vjp(lambda x, fn=fn: fn(x, b), a)
        assert out.dtype == np.float64
        np.testing.assert_allclose(np.asarray(out), ref.detach().numpy(), atol=1e-12, rtol=0,
                                   err_msg=name)
        np.testing.assert_allclose(np.asarray(vjp(np.ones(out.shape))[0]), at.grad.numpy(),
                                   atol=1e-12, rtol=0, err_msg=name)
    for i, o in itertools.permutations(["xyxy", "xywh", "cxcywh"], 2):
        np.testing.assert_array_equal(np.asarray(box_convert(a, i, o)),
                                      torchvision.ops.box_convert(torch.tensor(a), i, o).numpy())
    np.testing.assert_array_equal(np.asarray(clip_boxes_to_image(a, (50, 70))),
                                  torchvision.ops.clip_boxes_to_image(torch.tensor(a),
                                                                      (50, 70)).numpy())
    codes = rng.standard_normal((K // 2, 8)) * 3
    tv, ours = TVBoxCoder((10.0, 10.0, 5.0, 5.0)), BoxCoder((10.0, 10.0, 5.0, 5.0))
    np.testing.assert_allclose(np.asarray(ours.encode_single(b, b[::-1].copy())),
                               tv.encode_single(torch.tensor(b), torch.tensor(b[::-1].copy()))
                               .numpy(), atol=1e-12, rtol=0)
    ct = torch.tensor(codes, requires_grad=True)
    ref = tv.decode_single(ct, torch.tensor(b))
    ref.sum().backward()
    out, vjp = jax.vjp(lambda c: ours.decode_single(c, b), codes)
    assert out.dtype == np.float64
    np.testing.assert_allclose(np.asarray(out), ref.detach().numpy(), atol=1e-9, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(vjp(np.ones(out.shape))[0]), ct.grad.numpy(),
                               atol=1e-9, rtol=1e-15)
