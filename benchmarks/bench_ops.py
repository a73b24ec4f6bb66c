"""Times jaxvision.ops against torchvision.ops on this CPU, in the same run.

Sizes of a real detector: roi_align / roi_pool with 128, 512 and 2000 RoIs on a
``[2, 50, 68, 256]`` feature map (an 800 x 1088 image at stride 16), 7 x 7 output;
nms on 1,000, 5,000 and 20,000 boxes. Each op is jitted and warmed up (compilation
excluded), then timed as the median of several repeats with ``block_until_ready``; torch
runs with ``torch.set_num_threads`` equal to the number of CPU cores XLA uses. Writes a
markdown table to ``benchmarks/results/ops.md``.

Usage: ``python benchmarks/bench_ops.py [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision

from jaxvision.ops import nms, roi_align, roi_pool

OUT = Path(__file__).resolve().parent / "results" / "ops.md"
IMAGE = (800, 1088)
FEATURES = (2, 50, 68, 256)


def median_ms(fn: Callable[..., object], args: tuple, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn(*args)`` in ms; jax results are waited for."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def proposals(rng: np.random.Generator, k: int) -> np.ndarray:
    """``[k, 5]`` RoIs like RPN proposals: log-uniform sides 16..512 px inside the image."""
    side = np.exp(rng.uniform(np.log(16), np.log(512), (k, 2)))
    x1 = rng.uniform(0, IMAGE[1] - side[:, 0])
    y1 = rng.uniform(0, IMAGE[0] - side[:, 1])
    b = rng.integers(0, FEATURES[0], k)
    return np.stack([b, x1, y1, x1 + side[:, 0], y1 + side[:, 1]], 1).astype(np.float32)


def detections(rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` boxes clustered around ~k/20 objects (heavy overlap, as detector outputs)."""
    objects = max(1, k // 20)
    centers = rng.uniform(0, 1000, (objects, 2))[rng.integers(0, objects, k)]
    centers += rng.normal(0, 8, (k, 2))
    wh = rng.uniform(20, 200, (k, 2))
    boxes = np.concatenate([centers - wh / 2, centers + wh / 2], 1).astype(np.float32)
    return boxes, rng.uniform(0, 1, k).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    threads = os.cpu_count() or 1  # XLA's CPU client uses every core
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    feats = rng.standard_normal(FEATURES).astype(np.float32)
    feats_j = jnp.asarray(feats)
    feats_t = torch.tensor(feats).permute(0, 3, 1, 2).contiguous()  # torchvision's NCHW
    rows = []

    for name, sampling_ratio in (("roi_align (sampling_ratio=2)", 2),
                                 ("roi_align (adaptive)", -1)):
        fn = jax.jit(lambda f, r, sr=sampling_ratio: roi_align(f, r, 7, 1 / 16, sr, False))
        for k in (128, 512, 2000):
            r = proposals(rng, k)
            rj, rt = jnp.asarray(r), torch.tensor(r)
            tj = median_ms(fn, (feats_j, rj), args.repeats)
            tt = median_ms(torchvision.ops.roi_align, (feats_t, rt, 7, 1 / 16, sampling_ratio),
                           args.repeats)
            rows.append((name, f"{k} RoIs", tj, tt))

    fn = jax.jit(lambda f, r: roi_pool(f, r, 7, 1 / 16))
    for k in (128, 512, 2000):
        r = proposals(rng, k)
        rj, rt = jnp.asarray(r), torch.tensor(r)
        tj = median_ms(fn, (feats_j, rj), args.repeats)
        tt = median_ms(torchvision.ops.roi_pool, (feats_t, rt, 7, 1 / 16), args.repeats)
        rows.append(("roi_pool", f"{k} RoIs", tj, tt))

    for k in (1000, 5000, 20000):
        boxes, scores = detections(rng, k)
        fn = jax.jit(lambda b, s, k=k: nms(b, s, 0.5, k))
        bj, sj, bt, st = jnp.asarray(boxes), jnp.asarray(scores), torch.tensor(boxes), \
            torch.tensor(scores)
        kept = int(fn(bj, sj)[1])
        tj = median_ms(fn, (bj, sj), args.repeats)
        tt = median_ms(torchvision.ops.nms, (bt, st, 0.5), args.repeats)
        rows.append(("nms (iou 0.5)", f"{k} boxes ({kept} kept)", tj, tt))

    lines = [
        "# jaxvision.ops vs torchvision.ops (CPU)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {threads} cores (shared with "
        f"other jobs: expect noise). jax {jax.__version__}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}; torch.set_num_threads({threads}), the cores "
        f"XLA uses. Median of {args.repeats} runs after warmup, jitted, block_until_ready. "
        f"Features [2, 50, 68, 256] (NHWC for jax, NCHW for torch), 7x7 output, "
        f"spatial_scale 1/16, RoIs with sides 16..512 px in an 800x1088 image.",
        "",
        "| op | size | jaxvision (ms) | torchvision (ms) | jax / torch |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {op} | {size} | {tj:.2f} | {tt:.2f} | {tj / tt:.2f} |"
              for op, size, tj, tt in rows]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
