"""Parity of :mod:`jaxvision.ops.nms` with ``torchvision.ops.nms`` / ``batched_nms``."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import torchvision
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
