"""Parity of :mod:`jaxvision.ops.nms` with ``torchvision.ops.nms`` / ``batched_nms``."""

from __future__ import annotations

import functools

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

from jaxvision.ops import batched_nms, nms
from tests.ops._tv import FAST

K = 300
_NMS = jax.jit(nms, static_argnums=(3,), static_argnames=("tile_size",))
_BATCHED = jax.jit(batched_nms, static_argnums=(4,))


def _case(rng: np.random.Generator, k: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """Clustered boxes (many overlaps), some degenerate/inverted; scores with ties."""
    centers = rng.uniform(0, 200, (8, 2))[rng.integers(0, 8, k)] + rng.normal(0, 6, (k, 2))
    wh = rng.uniform(1, 40, (k, 2))
    kind = rng.integers(0, 10, k)
    wh[kind == 0] = 0  # zero area: never suppresses nor is suppressed
    wh[kind == 1] *= -1  # inverted: negative area, torchvision's arithmetic
    boxes = np.concatenate([centers - wh / 2, centers + wh / 2], 1).astype(np.float32)
    scores = rng.uniform(0, 1, k).astype(np.float32)
    if ties:
        scores = np.round(scores * 8) / 8
    return boxes, scores.astype(np.float32)


def _check(idx, count, ref):
    idx, count = np.asarray(idx), int(count)
    assert count == len(ref)
    np.testing.assert_array_equal(idx[:count], ref)
    assert (idx[count:] == -1).all()


@FAST
@given(seed=st.integers(0, 2**31 - 1), ties=st.booleans(),
       thr=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]), tile=st.sampled_from([32, 128]))
def test_nms_matches_torchvision(seed, ties, thr, tile):
    boxes, scores = _case(np.random.default_rng(seed), K, ties)
    ref = torchvision.ops.nms(torch.tensor(boxes), torch.tensor(scores), thr).numpy()
    _check(*_NMS(boxes, scores, thr, K, tile_size=tile), ref)


@FAST
@given(seed=st.integers(0, 2**31 - 1), ties=st.booleans(), thr=st.sampled_from([0.3, 0.6]))
def test_batched_nms_matches_torchvision(seed, ties, thr):
    rng = np.random.default_rng(seed)
    boxes, scores = _case(rng, K, ties)
    boxes = np.abs(boxes)  # the offset trick assumes non-negative coordinates
    idxs = rng.integers(0, 5, K).astype(np.int32)
    ref = torchvision.ops.batched_nms(torch.tensor(boxes), torch.tensor(scores),
                                      torch.tensor(idxs, dtype=torch.int64), thr).numpy()
    _check(*_BATCHED(boxes, scores, idxs, thr, K), ref)


def test_large_and_truncated():
    boxes, scores = _case(np.random.default_rng(7), 5000, ties=True)
    ref = torchvision.ops.nms(torch.tensor(boxes), torch.tensor(scores), 0.5).numpy()
    _check(*jax.jit(nms, static_argnums=(3,))(boxes, scores, 0.5, 5000), ref)
    idx, count = jax.jit(nms, static_argnums=(3,))(boxes, scores, 0.5, 10)
    np.testing.assert_array_equal(np.asarray(idx), ref[:10])
    assert int(count) == 10


def test_vmap_and_errors():
    rng = np.random.default_rng(0)
    cases = [_case(rng, 50, True) for _ in range(3)]
    b = np.stack([c[0] for c in cases])
    s = np.stack([c[1] for c in cases])
    idx, count = jax.vmap(lambda b, s: nms(b, s, 0.5, 50))(b, s)
    for i in range(3):
        _check(idx[i], count[i], torchvision.ops.nms(torch.tensor(b[i]), torch.tensor(s[i]),
                                                     0.5).numpy())
    with pytest.raises(ValueError, match="last axis"):
        nms(b[0, :, :3], s[0], 0.5, 10)
    with pytest.raises(ValueError, match="one entry per row"):
        nms(b[0], s[0, :10], 0.5, 10)
    with pytest.raises(TypeError, match="static Python int"):
        nms(b[0], s[0], 0.5, 10.0)
    with pytest.raises(TypeError, match="integer"):
        batched_nms(b[0], s[0], s[0], 0.5, 10)


# --- torchvision's own cases (test/test_ops.py: TestNMS) -------------------------------------


def _reference_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float
                   ) -> np.ndarray:
    """TestNMS._reference_nms: greedy NMS written with ``box_iou``."""
    picked = []
    _, indexes = scores.sort(descending=True)
    while len(indexes) > 0:
        current = indexes[0]
        picked.append(current.item())
        if len(indexes) == 1:
            break
        indexes = indexes[1:]
        iou = torchvision.ops.box_iou(boxes[indexes, :], boxes[current, :][None]).squeeze(1)
        indexes = indexes[iou <= iou_threshold]
    return np.asarray(picked)


def _create_tensors_with_iou(n: int, iou_thresh: float) -> tuple[torch.Tensor, torch.Tensor]:
    """TestNMS._create_tensors_with_iou: the last box overlaps the first just above the
    threshold, so it must be suppressed."""
    boxes = torch.rand(n, 4) * 100
    boxes[:, 2:] += boxes[:, :2]
    boxes[-1, :] = boxes[0, :]
    x0, y0, x1, y1 = boxes[-1].tolist()
    iou_thresh += 1e-5
    boxes[-1, 2] += (x1 - x0) * (1 - iou_thresh) / iou_thresh
    return boxes, torch.rand(n)


@pytest.mark.parametrize("iou", [0.2, 0.5, 0.8])
def test_nms_ref(iou):
    # test_nms_ref (1000 boxes; seeds 0..4 of its 0..9, the reference loop is slow): equal to
    # the reference and to torchvision's nms.
    # The threshold is static (a Python float), so it is compared exactly as torch's double.
    fn = jax.jit(functools.partial(nms, iou_threshold=iou, max_output_size=1000))
    for seed in range(5):
        torch.random.manual_seed(seed)
        boxes, scores = _create_tensors_with_iou(1000, iou)
        keep_ref = _reference_nms(boxes, scores, iou)
        np.testing.assert_array_equal(torchvision.ops.nms(boxes, scores, iou).numpy(), keep_ref)
        _check(*fn(boxes.numpy(), scores.numpy()), keep_ref)


def test_nms_input_errors():
    # test_nms_input_errors: wrong ranks, last axis and lengths are refused.
    rng = np.random.default_rng(0)

    def rand(*shape):
        return rng.uniform(size=shape).astype(np.float32)

    with pytest.raises(ValueError, match="rank 2"):
        nms(rand(4), rand(3), 0.5, 4)
    with pytest.raises(ValueError, match="last axis"):
        nms(rand(3, 5), rand(3), 0.5, 3)
    with pytest.raises(ValueError, match="rank 1"):
        nms(rand(3, 4), rand(3, 2), 0.5, 3)
    with pytest.raises(ValueError, match="one entry per row"):
        nms(rand(3, 4), rand(4), 0.5, 3)


# Boxes of ~900 x 660 px: their float16 areas overflow to inf.
FLOAT16_BOXES = [[285.3538, 185.5758, 1193.5110, 851.4551],
                 [285.1472, 188.7374, 1192.4984, 851.0669],
                 [279.2440, 197.9812, 1189.4746, 849.2019]]
FLOAT16_SCORES = [0.6370, 0.7569, 0.3966]


class NmsHalfPrecisionTest(chex.TestCase):
    """test_nms_float16: half-precision boxes give the float32 answer, jitted or not."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters("float16", "bfloat16")
    def test_nms_float16(self, dtype):
        boxes, scores = np.asarray(FLOAT16_BOXES, np.float32), np.asarray(FLOAT16_SCORES)
        fn = self.variant(functools.partial(nms, iou_threshold=0.2, max_output_size=3))
        keep32 = fn(boxes, scores.astype(np.float32))
        keep16 = fn(jnp.asarray(boxes, dtype), jnp.asarray(scores, dtype))
        ref = torchvision.ops.nms(torch.tensor(boxes), torch.tensor(scores, dtype=torch.float32),
                                  0.2).numpy()
        _check(*keep32, ref)
        _check(*keep16, ref)
        assert int(keep16[1]) == 1  # all three overlap: only the best is kept


@pytest.mark.parametrize("seed", range(10))
def test_batched_nms_implementations(seed):
    # test_batched_nms_implementations: torchvision's two batched_nms paths (per-class loop
    # and coordinate offsets) agree; ours equals both.
    torch.random.manual_seed(seed)
    boxes = torch.cat((torch.rand(1000, 2), torch.rand(1000, 2) + 10), dim=1)
    scores = torch.rand(1000)
    idxs = torch.randint(0, 4, size=(1000,))
    keep_vanilla = torchvision.ops.boxes._batched_nms_vanilla(boxes, scores, idxs, 0.9).numpy()
    keep_trick = torchvision.ops.boxes._batched_nms_coordinate_trick(boxes, scores, idxs,
                                                                     0.9).numpy()
    np.testing.assert_array_equal(keep_vanilla, keep_trick)
    _check(*_BATCHED_STATIC(boxes.numpy(), scores.numpy(), idxs.numpy().astype(np.int32)),
           keep_trick)


_BATCHED_STATIC = jax.jit(functools.partial(batched_nms, iou_threshold=0.9,
                                            max_output_size=1000))


def test_batched_nms_empty():
    idx, count = batched_nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                             np.zeros((0,), np.int32), 0.5, 5)
    assert int(count) == 0
    np.testing.assert_array_equal(np.asarray(idx), -np.ones(5))


@pytest.mark.parametrize("thr", [0.3, 0.7])
def test_x64_matches_torchvision_float64(thr, x64):
    # float64 boxes: IoUs in float64 against the double threshold, as torch's kernel.
    boxes, scores = _case(np.random.default_rng(11), K, ties=True)
    boxes = boxes.astype(np.float64) + np.random.default_rng(12).uniform(0, 1e-3, boxes.shape)
    scores = scores.astype(np.float64)
    ref = torchvision.ops.nms(torch.tensor(boxes), torch.tensor(scores), thr).numpy()
    idx, count = jax.jit(functools.partial(nms, iou_threshold=thr, max_output_size=K))(
        boxes, scores)
    _check(idx, count, ref)
    idxs = np.random.default_rng(13).integers(0, 3, K)
    ref = torchvision.ops.batched_nms(torch.tensor(np.abs(boxes)), torch.tensor(scores),
                                      torch.tensor(idxs), thr).numpy()
    _check(*batched_nms(np.abs(boxes), scores, idxs, thr, K), ref)
