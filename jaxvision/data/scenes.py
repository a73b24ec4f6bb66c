"""Synthetic detection scenes composed from real MNIST digits.

A scene is a black canvas with a few real MNIST digits pasted at random positions and
scales (white ink over black, composited with ``max``), with the ground-truth box of each
digit's 28x28 frame scaled with it. Seeded, so a scene set is reproducible. Used to show
the road from classification to detection: a LeNet-5 trained on 28x28 crops, convolutionized,
slides over the scenes (:mod:`jaxvision.dense.sliding_window`), and a localizer regresses
the box of a single digit (:mod:`jaxvision.localization`).

Build train scenes from MNIST *train* digits and evaluate on scenes from *test* digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image


class Scenes(NamedTuple):
    """A batch of scenes with padded ground truth.

    images: ``[N, H, W, 1] uint8``; boxes: ``[N, D, 4] float32`` (x1, y1, x2, y2) pixels,
    zero rows past ``counts``; labels: ``[N, D] int32``, -1 past ``counts``;
    counts: ``[N] int32``.
    """

    images: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    counts: np.ndarray


def _resize(img: np.ndarray, side: int) -> np.ndarray:
    """``[h, w] uint8`` -> ``[side, side]`` bilinear (PIL)."""
    return np.asarray(Image.fromarray(img).resize((side, side), Image.BILINEAR))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box ``a [4]`` with boxes ``b [M, 4]``."""
    x1 = np.maximum(a[0], b[:, 0])
    y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[2], b[:, 2])
    y2 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def make_scenes(
    digits: np.ndarray, labels: np.ndarray, num_scenes: int, *,
    size: tuple[int, int] = (112, 112), digits_per_scene: tuple[int, int] = (1, 4),
    scale_range: tuple[float, float] = (1.0, 2.0), max_iou: float = 0.0, seed: int = 0,
) -> Scenes:
    """Composes ``num_scenes`` scenes from MNIST digits.

    Args:
      digits: ``[M, 28, 28] or [M, 28, 28, 1] uint8`` MNIST images.
      labels: ``[M]`` int digit classes.
      size: canvas ``(H, W)``.
      digits_per_scene: inclusive ``(min, max)`` number of digits.
      scale_range: each digit's 28x28 frame is resized by a factor drawn uniformly here.
      max_iou: frames of a scene overlap at most this much (0: disjoint frames).
      seed: the scenes are a pure function of the inputs and the seed.

    Returns:
      :class:`Scenes`; a digit that finds no free place after 100 tries is left out.
    """
    digits = np.asarray(digits)
    if digits.ndim == 4:
        digits = digits[..., 0]
    if digits.ndim != 3 or digits.dtype != np.uint8:
        raise ValueError(f"digits must be [M, 28, 28] uint8, got {digits.shape} {digits.dtype}")
    lo, hi = digits_per_scene
    if not 1 <= lo <= hi:
        raise ValueError(f"digits_per_scene must be 1 <= min <= max, got {digits_per_scene}")
    h, w = size
    if round(digits.shape[1] * scale_range[1]) > min(h, w):
        raise ValueError(f"a digit at scale {scale_range[1]} does not fit a {h}x{w} canvas")
    rng = np.random.default_rng(seed)
    images = np.zeros((num_scenes, h, w, 1), np.uint8)
    boxes = np.zeros((num_scenes, hi, 4), np.float32)
    out_labels = np.full((num_scenes, hi), -1, np.int32)
    counts = np.zeros((num_scenes,), np.int32)
    for n in range(num_scenes):
        k = int(rng.integers(lo, hi + 1))
        placed: list[np.ndarray] = []
        for _ in range(k):
            idx = int(rng.integers(len(digits)))
            side = round(digits.shape[1] * rng.uniform(*scale_range))
            for _ in range(100):
                y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
                box = np.array([x, y, x + side, y + side], np.float32)
                if not placed or _iou(box, np.stack(placed)).max() <= max_iou:
                    break
            else:
                continue
            patch = _resize(digits[idx], side)
            region = images[n, y:y + side, x:x + side, 0]
            np.maximum(region, patch, out=region)
            boxes[n, len(placed)] = box
            out_labels[n, len(placed)] = int(labels[idx])
            placed.append(box)
        counts[n] = len(placed)
    return Scenes(images, boxes, out_labels, counts)


def scene_windows(
    scenes: Scenes, *, window: int = 28, scales: Sequence[float] = (1.0, 0.75, 0.5),
    windows_per_scene: int = 24, positive_iou: float = 0.6, negative_iou: float = 0.25,
    background: int = 10, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples classifier training crops from scenes: digits and background.

    Half the windows are jittered around ground-truth frames, half uniform. A window of side
    ``window / s`` (for ``s`` in ``scales``) gets its digit's label when its IoU with that
    frame is at least ``positive_iou``, ``background`` when every IoU is below
    ``negative_iou``; ambiguous windows are dropped. Crops are resized to ``window``.

    Returns:
      ``(crops [M, window, window, 1] uint8, labels [M] int32)``.
    """
    rng = np.random.default_rng(seed)
    crops, out = [], []
    h, w = scenes.images.shape[1:3]
    for n in range(len(scenes.images)):
        gt, gl = scenes.boxes[n, :scenes.counts[n]], scenes.labels[n, :scenes.counts[n]]
        for t in range(windows_per_scene):
            side = round(window / scales[int(rng.integers(len(scales)))])
            if side > min(h, w):
                continue
            if t % 2 == 0 and len(gt):
                g = gt[int(rng.integers(len(gt)))]
                side = int(np.clip(round((g[2] - g[0]) * rng.uniform(0.85, 1.15)), 4, min(h, w)))
                cx = (g[0] + g[2]) / 2 + rng.normal(0, 0.08 * side)
                cy = (g[1] + g[3]) / 2 + rng.normal(0, 0.08 * side)
                x = int(np.clip(round(cx - side / 2), 0, w - side))
                y = int(np.clip(round(cy - side / 2), 0, h - side))
            else:
                y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            box = np.array([x, y, x + side, y + side], np.float32)
            ious = _iou(box, gt) if len(gt) else np.zeros((0,))
            if len(ious) and ious.max() >= positive_iou:
                label = int(gl[int(np.argmax(ious))])
            elif not len(ious) or ious.max() < negative_iou:
                label = background
            else:
                continue
            crops.append(_resize(scenes.images[n, y:y + side, x:x + side, 0], window))
            out.append(label)
    return np.stack(crops)[..., None], np.asarray(out, np.int32)
