"""jaxvision.detection.roi_heads: pooling and post-processing against torchvision's."""

from __future__ import annotations

import jax
import numpy as np
import torch
import torchvision
from torchvision.models.detection.roi_heads import RoIHeads as TorchRoIHeads

from jaxvision.detection.roi_heads import pool_fixed_grid, postprocess_detections


def test_pool_fixed_grid_matches_multiscale_roi_align() -> None:
    rng = np.random.default_rng(0)
    feats = {str(i): rng.standard_normal((2, 40 >> i, 56 >> i, 8)).astype(np.float32)
             for i in range(4)}
    xy = rng.uniform(-20, 200, (2, 60, 2))
    wh = rng.uniform(0, 180, (2, 60, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    boxes[0, :3] = 0  # padding proposals: zero boxes
    pool = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    ref = pool({k: torch.from_numpy(v).permute(0, 3, 1, 2) for k, v in feats.items()},
               [torch.from_numpy(b) for b in boxes], [(160, 224)] * 2)
    got = jax.jit(lambda f, b: pool_fixed_grid(
        list(f.values()), b.reshape(-1, 4), np.repeat(np.arange(2), 60),
        [1 / 4, 1 / 8, 1 / 16, 1 / 32], 7, 2))(feats, boxes)
    # Sample positions agree to a few float32 ulps (XLA may fuse multiply-adds that torch
    # rounds twice); features are N(0, 1), so values agree to ~1e-5.
    np.testing.assert_allclose(np.asarray(got), ref.permute(0, 2, 3, 1).numpy(), atol=5e-5)


def test_postprocess_detections_matches_torchvision() -> None:
    rng = np.random.default_rng(1)
    n, p, c = 2, 120, 6
    logits = (2.5 * rng.standard_normal((n, p, c))).astype(np.float32)
    deltas = rng.standard_normal((n, p, 4 * c)).astype(np.float32)
    xy = rng.uniform(0, 90, (n, p, 2))
    props = np.concatenate([xy, xy + rng.uniform(2, 40, (n, p, 2))], -1).astype(np.float32)
    valid = np.ones((n, p), bool)
    valid[1, 100:] = False  # padding proposals of the second image
    sizes = [(100, 120), (90, 101)]
    heads = TorchRoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.05, 0.5, 30)
    boxes, scores, labels = heads.postprocess_detections(
        torch.from_numpy(np.concatenate([logits[0], logits[1, :100]])),
        torch.from_numpy(np.concatenate([deltas[0], deltas[1, :100]])),
        [torch.from_numpy(props[0]), torch.from_numpy(props[1, :100])], sizes)
    out = jax.jit(lambda *a: postprocess_detections(*a, detections_per_img=30))(
        logits, deltas, props, valid, np.asarray(sizes, np.int32))
    for i in range(n):
        k = int(out["count"][i])
        assert k == len(boxes[i]) and np.asarray(out["valid"][i])[:k].all()
        np.testing.assert_array_equal(np.asarray(out["labels"][i])[:k], labels[i].numpy())
        np.testing.assert_allclose(np.asarray(out["scores"][i])[:k], scores[i].numpy(),
                                   atol=1e-6)
        np.testing.assert_allclose(np.asarray(out["boxes"][i])[:k], boxes[i].numpy(),
                                   atol=1e-4)
