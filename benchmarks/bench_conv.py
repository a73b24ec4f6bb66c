"""Convolution backward pass on this CPU: XLA's own gradient, jaxvision's matrix-product
kernel gradient (:mod:`jaxvision.ops.conv`) and torch (oneDNN), in the same run.

Each row is one layer of a zoo model at a training batch: the time of the backward pass
(input gradient + kernel gradient, given the output gradient; forward excluded), jitted and
warmed up, median of repeats, torch with as many threads as XLA uses. Gradients are checked
to agree before timing. Writes ``benchmarks/results/conv.md``.

Usage: ``python -m benchmarks.bench_conv [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import torch
from jax import lax

from benchmarks.common import median_seconds, write_markdown
from jaxvision.ops import conv as conv_ops

DN = ("NHWC", "HWIO", "NHWC")

# (layer, batch, H, W, Cin, Cout, kernel, stride, padding, groups)
LAYERS = [
    ("SegNet-Basic decoder 7x7 (180x240)", 4, 180, 240, 64, 64, 7, 1, 3, 1),
    ("SegNet-Basic encoder 7x7 (90x120)", 4, 90, 120, 64, 64, 7, 1, 3, 1),
    ("ResNet-50 1x1 reduce (56x56)", 8, 56, 56, 256, 64, 1, 1, 0, 1),
    ("ResNet-50 1x1 downsample, stride 2", 8, 56, 56, 256, 512, 1, 2, 0, 1),
    ("ResNeXt-50 3x3, 32 groups (28x28)", 8, 28, 28, 256, 256, 3, 1, 1, 32),
    ("ResNet-50 3x3 (56x56, XLA's kept)", 8, 56, 56, 64, 64, 3, 1, 1, 1),
    ("ResNet stem 7x7/2 on RGB (XLA's kept)", 8, 224, 224, 3, 64, 7, 2, 3, 1),
]


def backward_fns(n, h, w, cin, cout, k, s, p, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, cin), np.float32)
    kernel = (rng.standard_normal((k, k, cin // groups, cout), np.float32) * 0.05)
    pads = ((p, p), (p, p))

    def make(conv):
        def bwd(x_, w_, g_):
            _, vjp = jax.vjp(lambda a, b: conv(a, b, (s, s), pads, dimension_numbers=DN,
                                                feature_group_count=groups), x_, w_)
            return vjp(g_)
        return jax.jit(bwd)

    out = jax.eval_shape(lambda: lax.conv_general_dilated(
        x, kernel, (s, s), pads, dimension_numbers=DN, feature_group_count=groups)).shape
    g = rng.standard_normal(out, np.float32)
    xla, fast = make(lax.conv_general_dilated), make(conv_ops.conv_general_dilated)
    xj, wj, gj = jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(g)

    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    wt = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).requires_grad_()
    yt = torch.nn.functional.conv2d(xt, wt, stride=s, padding=p, groups=groups)
    gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())

    def run_torch():
        return torch.autograd.grad(yt, (xt, wt), gt, retain_graph=True)

    ref = xla(xj, wj, gj)
    mine = fast(xj, wj, gj)
    tw = run_torch()[1].numpy().transpose(2, 3, 1, 0)
    scale = float(np.max(np.abs(ref[1])))
    err = max(float(np.max(np.abs(mine[1] - ref[1]))), float(np.max(np.abs(tw - ref[1]))))
    assert err <= 1e-4 * max(scale, 1.0), f"kernel gradients disagree by {err} (scale {scale})"
    return ((lambda: jax.block_until_ready(xla(xj, wj, gj))),
            (lambda: jax.block_until_ready(fast(xj, wj, gj))), run_torch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)  # XLA:CPU uses every core
    rows = []
    for name, *shape in LAYERS:
        xla, fast, tor = backward_fns(*shape)
        t_xla = median_seconds(xla, repeats=args.repeats)
        t_fast = median_seconds(fast, repeats=args.repeats)
        t_torch = median_seconds(tor, repeats=args.repeats)
        rows.append([name, f"{t_xla * 1e3:.0f}", f"{t_fast * 1e3:.0f}", f"{t_torch * 1e3:.0f}",
                     f"{t_xla / t_fast:.2f}", f"{t_torch / t_fast:.2f}"])
        print(rows[-1], flush=True)
    write_markdown(
        "conv", "Convolution backward pass (input + kernel gradient), fp32",
        ["layer", "XLA ms", "jaxvision ms", "torch ms", "speed-up over XLA",
         "vs torch (>1: faster)"], rows,
        notes="jaxvision: `jaxvision.ops.conv.conv_general_dilated`, the layers' default on "
              "CPU (XLA's forward and input gradient, kernel gradient as one matrix product "
              "per tap where that measured faster; the last two rows keep XLA's kernel "
              "gradient, so their two jax columns time the same program). Medians of "
              "repeats after warm-up, compilation excluded, all three in one process.")


if __name__ == "__main__":
    main()
