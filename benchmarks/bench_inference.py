"""Jitted jaxvision inference against torchvision (eager, ``torch.inference_mode``).

Both run on this machine's CPU in the same process, batch 8, fp32, 224x224, with the same
(converted) weights; the script also checks that the two agree, so a fast but wrong model
cannot look good. Writes ``results/inference.md``.

    python -m benchmarks.bench_inference                 # the six models of the issue
    python -m benchmarks.bench_inference resnet50 vgg16  # a subset
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
import torch
import torchvision

from benchmarks.common import median_seconds, write_markdown
from jaxvision.models import get_model
from jaxvision.weights import convert_state_dict

MODELS = ("resnet50", "vgg16", "alexnet", "googlenet", "densenet121", "resnext50_32x4d")


def bench(name: str, batch: int, size: int, repeats: int) -> list[object]:
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None).eval()
    module = get_model(name)
    # On the device once, as torch's weights are: numpy leaves would be copied every call.
    variables = jax.device_put(convert_state_dict(module, tv.state_dict()))
    x = torch.randn(batch, 3, size, size)
    x_nhwc = jax.device_put(x.permute(0, 2, 3, 1).numpy())

    forward = jax.jit(lambda v, x: module.apply(v, x, train=False))

    def run_jax() -> jax.Array:
        return jax.block_until_ready(forward(variables, x_nhwc))

    def run_torch() -> torch.Tensor:
        with torch.inference_mode():
            return tv(x)

    err = float(np.abs(np.asarray(run_jax()) - run_torch().numpy()).max())
    t_jax = median_seconds(run_jax, repeats=repeats)
    t_torch = median_seconds(run_torch, repeats=repeats)
    ips_jax, ips_torch = batch / t_jax, batch / t_torch
    print(f"{name}: jaxvision {ips_jax:.1f} img/s, torchvision {ips_torch:.1f} img/s, "
          f"ratio {ips_jax / ips_torch:.2f}, max |diff| {err:.1e}", flush=True)
    return [name, f"{ips_jax:.1f}", f"{ips_torch:.1f}", f"{ips_jax / ips_torch:.2f}",
            f"{err:.1e}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = [bench(m, args.batch_size, args.size, args.repeats) for m in args.models]
    write_markdown(
        "inference", f"Inference, batch {args.batch_size}, fp32, {args.size}x{args.size}",
        ["model", "jaxvision img/s (jit)", "torchvision img/s (eager)", "ratio",
         "max abs logit diff"], rows,
        notes="Ratio > 1 means jaxvision is faster. Median of "
              f"{args.repeats} timed batches after 2 warm-up batches; same weights for both.")


if __name__ == "__main__":
    main()
