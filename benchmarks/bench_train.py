"""Training-step throughput: jaxvision's jitted train step against the same model and
optimizer in PyTorch (eager), on this machine's CPU, in the same process.

Models: LeNet-5 on MNIST-shaped batches (128 x 28x28x1) and ResNet-20 (option A) on
CIFAR-shaped batches (128 x 32x32x3). Both sides run one full optimizer step per batch:
uint8 images -> normalize -> forward -> cross-entropy -> backward -> SGD momentum 0.9 with
weight decay 5e-4 / 1e-4, fp32. The jaxvision side is the engine's own
``jit_train_step`` (state donated, batch placed with the mesh's sharding each step, no
augmentation); the PyTorch side is a plain ``torch.optim.SGD`` loop on the same uint8
batches. The script checks that both models have the same number of parameters.
Writes ``results/train.md``.

    python -m benchmarks.bench_train                 # both models
    python -m benchmarks.bench_train --steps 10      # quicker
"""

from __future__ import annotations

import argparse
import functools

import jax
import numpy as np
import torch
from torch import nn

from benchmarks.common import median_seconds, write_markdown
from jaxvision.data import VALID
from jaxvision.train import load_config, sharding
from jaxvision.train.optim import make_optimizer
from jaxvision.train.state import build_model, create_train_state
from jaxvision.train.steps import jit_train_step
from jaxvision.train.tasks import get_task
from tests import torch_reference

BATCH = 128


CASES = {
    # name: (row label, experiment config, torch builder, image shape)
    "lenet5": ("lenet5, MNIST 28x28x1", "lenet5_mnist", torch_reference.lenet5,
               (28, 28, 1)),
    "resnet20": ("resnet20, CIFAR 32x32x3", "resnet20_cifar10",
                 functools.partial(torch_reference.CifarResNet, 3), (32, 32, 3)),
}


def bench(name: str, steps: int, repeats: int) -> list[object]:
    label, experiment, torch_builder, shape = CASES[name]
    # Same optimizer on both sides: plain SGD momentum 0.9 (no Nesterov), the config's
    # weight decay applied to every parameter (torch.optim.SGD's default), constant rate.
    config = load_config(experiment, [
        f"batch_size={BATCH}", "augment.crop_padding=0", "augment.flip=False",
        "optimizer.nesterov=False", "optimizer.decay_norm_and_bias=True",
        "schedule.name=constant", "schedule.boundaries=[]", "schedule.warmup_steps=0",
        "model.dtype=float32", "data.source=mnist", "data.root=None"])
    wd, lr = config.optimizer.weight_decay, config.optimizer.learning_rate
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (steps, BATCH, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, (steps, BATCH)).astype(np.int32)
    mean = np.asarray(config.data.mean, np.float32)
    std = np.asarray(config.data.std, np.float32)

    # -- jaxvision: the engine's train step --------------------------------------------
    mesh = sharding.make_mesh(jax.devices()[:1])
    rep, data = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    model = build_model(config)
    tx, schedule = make_optimizer(config, steps)
    state = jax.jit(functools.partial(create_train_state, model, tx, shape=shape),
                    out_shardings=rep)(jax.random.PRNGKey(0))
    n_jax = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(state.params))
    step_fn = jit_train_step(mesh, get_task(config), model, tx, schedule, config, shape[:2])
    mask = np.ones(BATCH, bool)
    holder = {"state": state}

    def run_jax() -> None:
        s = holder["state"]
        for i in range(steps):
            batch = sharding.global_batch({"image": images[i], "label": labels[i],
                                           VALID: mask}, data)
            s, metrics = step_fn(s, batch)
        jax.block_until_ready(metrics["loss"])
        holder["state"] = s

    # -- PyTorch: the same model and optimizer, eager ----------------------------------
    torch.manual_seed(0)
    net = torch_builder().train()
    n_torch = sum(p.numel() for p in net.parameters())
    if n_torch != n_jax:
        raise AssertionError(f"{name}: torch model has {n_torch} parameters, jaxvision "
                             f"{n_jax}: not the same network")
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    t_images = torch.from_numpy(images).permute(0, 1, 4, 2, 3).contiguous()  # NCHW
    t_labels = torch.from_numpy(labels).long()
    t_mean = torch.from_numpy(mean).view(1, -1, 1, 1)
    t_std = torch.from_numpy(std).view(1, -1, 1, 1)

    def run_torch() -> None:
        for i in range(steps):
            x = (t_images[i].float() / 255.0 - t_mean) / t_std
            loss = nn.functional.cross_entropy(net(x), t_labels[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    t_jax = median_seconds(run_jax, warmup=1, repeats=repeats)
    t_torch = median_seconds(run_torch, warmup=1, repeats=repeats)
    ips_jax, ips_torch = steps * BATCH / t_jax, steps * BATCH / t_torch
    print(f"{name}: jaxvision {ips_jax:.0f} img/s, PyTorch {ips_torch:.0f} img/s, "
          f"ratio {ips_jax / ips_torch:.2f}", flush=True)
    return [label, BATCH, f"{n_jax:,}", f"{ips_jax:.0f}", f"{ips_torch:.0f}",
            f"{ips_jax / ips_torch:.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(CASES),
                        help=f"any of {', '.join(CASES)} (default: all)")
    parser.add_argument("--steps", type=int, default=20, help="train steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median)")
    args = parser.parse_args()
    unknown = [m for m in args.models if m not in CASES]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(CASES)}")
    rows = [bench(m, args.steps, args.repeats) for m in args.models]
    write_markdown(
        "train", f"Training step throughput, batch {BATCH}, fp32, SGD momentum",
        ["model", "batch", "params", "jaxvision img/s (jit)", "PyTorch img/s (eager)",
         "ratio"], rows,
        notes=f"Ratio > 1 means jaxvision is faster. Each timed run is {args.steps} full "
              f"optimizer steps (uint8 batch -> normalize -> forward -> loss -> backward -> "
              f"SGD momentum 0.9 + weight decay); median of {args.repeats} runs after one "
              "warm-up run, both frameworks in the same process on the same batches. "
              "jaxvision: the engine's `jit_train_step` (donated state, batch placed on the "
              "mesh every step); PyTorch: eager `torch.optim.SGD`. The machine is a shared "
              "2-core VM, so absolute numbers drift between runs; the ratio less so.")


if __name__ == "__main__":
    main()
