"""jaxvision.detection.rpn: torchvision's batched nms dispatch and proposal filtering."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchAnchors
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork as TorchRPN

from jaxvision.detection.rpn import batched_nms_keep, filter_proposals, select_top


def _boxes(rng: np.random.Generator, n: int, extent: float = 200.0) -> np.ndarray:
    # Integer-ish corners and few sizes: many overlaps near the threshold, and ties.
    xy = rng.integers(0, int(extent), (n, 2)).astype(np.float32)
    wh = rng.choice([8.0, 16.0, 24.5, 40.0], (n, 2)).astype(np.float32)
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("n", [700, 1600])  # torchvision's coordinate trick / per-class nms
def test_batched_nms_keep_matches_torchvision(n: int) -> None:
    rng = np.random.default_rng(n)
    boxes = _boxes(rng, n)
    scores = rng.random(n).astype(np.float32)
    blocks = [n // 2, n // 4, n - n // 2 - n // 4]
    idxs = np.repeat(np.arange(3), blocks).astype(np.int32)
    valid = rng.random(n) < 0.9
    groups = np.full((3, max(blocks)), -1, np.int64)
    start = 0
    for g, b in enumerate(blocks):
        groups[g, :b] = np.arange(start, start + b)
        start += b
    max_keep = 300

    @jax.jit
    def ours(b, s, i, v):
        keep = batched_nms_keep(b, s, i, v, groups, 0.5, max_keep)
        return select_top(s, keep, max_keep)

    sel, ok = ours(boxes, scores, idxs, valid)
    got = np.asarray(sel)[np.asarray(ok)]
    f = np.flatnonzero(valid)
    ref = torchvision.ops.batched_nms(torch.from_numpy(boxes[f]), torch.from_numpy(scores[f]),
                                      torch.from_numpy(idxs[f]).long(), 0.5)[:max_keep]
    np.testing.assert_array_equal(got, f[ref.numpy()])


def test_filter_proposals_matches_torchvision() -> None:
    """Top-k per level, clipping, small boxes, per-level nms, post-nms count."""
    rng = np.random.default_rng(0)
    grids = [(16, 20), (8, 10), (4, 5)]
    per_level = [h * w * 3 for h, w in grids]
    k = sum(per_level)
    anchors = TorchAnchors(((16,), (32,), (64,)), ((0.5, 1.0, 2.0),) * 3)
    feats = [torch.zeros(2, 1, h, w) for h, w in grids]
    images = ImageList(torch.zeros(2, 3, 64, 80), [(64, 80), (50, 61)])
    anc = anchors(images, feats)[0].numpy()
    deltas = (0.3 * rng.standard_normal((2, k, 4))).astype(np.float32)
    logits = rng.standard_normal((2, k)).astype(np.float32)
    rpn = TorchRPN(anchors, None, 0.7, 0.3, 256, 0.5, {"training": 0, "testing": 200},
                   {"training": 0, "testing": 150}, 0.7).eval()
    props = rpn.box_coder.decode(torch.from_numpy(deltas).reshape(-1, 4),
                                 [torch.from_numpy(anc)] * 2).reshape(2, k, 4)
    ref, ref_scores = rpn.filter_proposals(props, torch.from_numpy(logits), images.image_sizes,
                                           per_level)
    boxes, scores, valid = jax.jit(lambda p, o, s: filter_proposals(
        p, o, s, per_level, pre_nms_top_n=200, post_nms_top_n=150, nms_thresh=0.7))(
        props.numpy(), logits, np.asarray(images.image_sizes, np.int32))
    for i in range(2):
        v = np.asarray(valid[i])
        assert v.sum() == len(ref[i]) and v[:v.sum()].all()
        np.testing.assert_allclose(np.asarray(boxes[i])[v], ref[i].numpy(), atol=1e-4)
        np.testing.assert_allclose(np.asarray(scores[i])[v], ref_scores[i].numpy(), atol=1e-6)
