"""Helpers shared by the ``jaxvision.ops`` parity tests (layout conversions, settings)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, settings

# Modest example counts: every test reuses one compiled function (fixed shapes).
FAST = settings(max_examples=20, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def to_nchw(x: np.ndarray) -> torch.Tensor:
    """NHWC numpy -> NCHW torch (contiguous), the layout torchvision's kernels take."""
    return torch.tensor(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def to_nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy()


def random_rois(rng: np.random.Generator, k: int, n: int, h: int, w: int,
                scale: float, inverted: bool = True) -> np.ndarray:
    """``[k, 5]`` float32 RoIs in image coordinates, adversarial mix in feature units.

    Inside, partly and wholly outside the map, tiny (< 1 cell), huge (10x the map),
    degenerate (zero size) and inverted (x2 < x1) boxes, plus corners on half-integers
    (rounding ties). ``inverted=False`` leaves out the inverted ones (torch's aligned
    adaptive RoIAlign sizes a vector with their negative grid and crashes).
    """
    kind = rng.integers(0, 6, k)
    x1 = rng.uniform(-0.5 * w, 1.5 * w, k)
    y1 = rng.uniform(-0.5 * h, 1.5 * h, k)
    bw = rng.uniform(0, w, k)
    bh = rng.uniform(0, h, k)
    bw = np.where(kind == 1, rng.uniform(0, 1, k), bw)  # tiny
    bh = np.where(kind == 1, rng.uniform(0, 1, k), bh)
    bw = np.where(kind == 2, 10 * w * rng.uniform(0.5, 1, k), bw)  # huge
    bh = np.where(kind == 2, 10 * h * rng.uniform(0.5, 1, k), bh)
    x1 = np.where(kind == 2, -4 * w, x1)
    y1 = np.where(kind == 2, -4 * h, y1)
    bw = np.where(kind == 3, 0, bw)  # degenerate
    if inverted:
        bw = np.where(kind == 4, -bw / 2, bw)
    half = kind == 5  # corners at k + 0.5 after scaling
    x1 = np.where(half, np.floor(x1) + 0.5, x1)
    bw = np.where(half, np.floor(bw), bw)
    b = rng.integers(0, n, k).astype(np.float64)
    boxes = np.stack([x1, y1, x1 + bw, y1 + bh], 1) / scale
    return np.concatenate([b[:, None], boxes], 1).astype(np.float32)
