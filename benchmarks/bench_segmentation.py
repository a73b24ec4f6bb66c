"""Segmentation side by side with torchvision: ``fcn_resnet50`` inference and training.

Both frameworks run on this machine's CPU in one process, fp32, on the same inputs:

* **inference**: torchvision's ``fcn_resnet50`` (21 classes + auxiliary head, the layout of
  its COCO_WITH_VOC_LABELS checkpoint; random weights with realistic BatchNorm statistics)
  in eager mode under ``torch.inference_mode()``, against jaxvision's jitted
  ``get_model('fcn_resnet50', num_classes=21, aux_loss=True)`` with the converted weights
  (``jaxvision.weights.convert_torchvision``), at 520x520 (torchvision's evaluation size),
  batch 1 by default. The script first checks that both give the same ``out`` and ``aux``
  (max |diff| < 1e-3 of the logit scale), so a fast but wrong model cannot look good.
* **training**: the same recipe on both sides from the same initial weights:
  ``fcn_resnet50(weights=None, weights_backbone=None, num_classes=11, aux_loss=True)``;
  uint8 batch -> normalize -> forward (train mode) -> pixel cross-entropy (ignore index 11,
  CamVid's void) on ``out`` + 0.5 x on ``aux`` -> backward -> SGD momentum 0.9, weight
  decay 1e-4 on every parameter, constant rate 0.01. jaxvision: the engine's
  ``jit_train_step`` for the ``fcn_resnet50_camvid`` config (task ``segmentation``, canvas
  and batch from ``--size`` and ``--batch``, no class balancing); PyTorch: an eager
  ``torch.optim.SGD`` loop. Batches: random crops of real CamVid training images when
  ``../shared/data/camvid`` exists, else random pixels (the notes say which).

Writes ``results/segmentation.md``.

    python -m benchmarks.bench_segmentation                      # defaults (see --help)
    python -m benchmarks.bench_segmentation --infer-batch 1 2    # also batch 2
    python -m benchmarks.bench_segmentation --size 64 --infer-size 128 --repeats 1 \\
        --batch 1 --steps 1                                      # a smoke run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import torch
import torchvision.models.segmentation as tvseg
from PIL import Image
from torch import nn

from benchmarks.common import engine_state, median_seconds, write_markdown
from jaxvision.data import VALID, SegmentationFolderSource
from jaxvision.models import get_model
from jaxvision.train import load_config, sharding
from jaxvision.train.steps import jit_train_step
from jaxvision.train.tasks import get_task
from jaxvision.weights import convert_torchvision
from tests.models.test_resnet import trained_like

CAMVID = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camvid"
NAME = "fcn_resnet50"
VOID = 11  # CamVid's void label: ignored by the loss
LR, MOMENTUM, WEIGHT_DECAY, AUX_WEIGHT = 0.01, 0.9, 1e-4, 0.5
TOLERANCE = 1e-3  # max |jax - torch| over max |torch| of the logits


def parse_size(text: str) -> tuple[int, int]:
    """``"240x320"`` -> (240, 320); ``"64"`` -> (64, 64)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 32:
        raise argparse.ArgumentTypeError(f"expected H or HxW (each >= 32), got {text!r}")
    return parts[0], parts[1]


def compiled(jitted: Any, *args: Any) -> tuple[Any, float]:
    """``(executable, seconds)``: ``jitted`` lowered and compiled for ``args``."""
    t0 = time.perf_counter()
    exe = jitted.lower(*args).compile()
    return exe, time.perf_counter() - t0


# -- inference ----------------------------------------------------------------------------


def bench_inference(size: int, batches: list[int], repeats: int) -> list[list[object]]:
    """One row per batch size: jitted jaxvision vs eager torchvision at ``size`` x ``size``."""
    torch.manual_seed(0)
    tv = trained_like(tvseg.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21,
                                         aux_loss=True)).eval()
    model = get_model(NAME, num_classes=21, aux_loss=True)
    # On the device once, as torch's weights are: numpy leaves would be copied every call.
    variables = jax.device_put(convert_torchvision(NAME, tv.state_dict()))
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    rows = []
    for batch in batches:
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        x_nhwc = jax.device_put(x.permute(0, 2, 3, 1).contiguous().numpy())
        exe, t_compile = compiled(forward, variables, x_nhwc)

        def run_jax() -> dict[str, jax.Array]:
            return jax.block_until_ready(exe(variables, x_nhwc))  # noqa: B023

        def run_torch() -> dict[str, torch.Tensor]:
            with torch.inference_mode():
                return tv(x)  # noqa: B023

        ours, ref = run_jax(), run_torch()
        rel = 0.0
        for key in ("out", "aux"):
            want = ref[key].permute(0, 2, 3, 1).numpy()
            diff = float(np.abs(np.asarray(ours[key]) - want).max())
            scale = float(np.abs(want).max())
            if not diff <= TOLERANCE * scale:
                raise AssertionError(f"{NAME} {key} at {size}x{size}, batch {batch}: max "
                                     f"|jax - torch| = {diff:.3g} exceeds {TOLERANCE:g} x the "
                                     f"logit scale {scale:.3g}; not the same network")
            rel = max(rel, diff / scale)
        t_jax = median_seconds(run_jax, repeats=repeats)
        t_torch = median_seconds(run_torch, repeats=repeats)
        ips_jax, ips_torch = batch / t_jax, batch / t_torch
        print(f"inference {size}x{size} batch {batch}: jaxvision {ips_jax:.2f} img/s, "
              f"torchvision {ips_torch:.2f} img/s, ratio {ips_jax / ips_torch:.2f}, "
              f"compile {t_compile:.1f} s, max rel diff {rel:.1e}", flush=True)
        rows.append([f"inference, {NAME} (21 classes + aux)", f"{size}x{size}", batch,
                     f"{ips_jax:.2f}", f"{ips_torch:.2f}", f"**{ips_jax / ips_torch:.2f}**",
                     f"{t_compile:.1f}", f"out/aux rel diff {rel:.1e}"])
    return rows


# -- training -----------------------------------------------------------------------------


def camvid_batches(n: int, size: tuple[int, int], seed: int = 0,
                   ) -> tuple[np.ndarray, np.ndarray, str]:
    """``(images [n, H, W, 3] uint8, masks [n, H, W] uint8, description)``: random crops of
    the first ``n`` CamVid training images (resized up first where smaller than ``size``),
    or random pixels and labels (void included) when the data set is absent."""
    rng = np.random.default_rng(seed)
    h, w = size
    if not (CAMVID / "train" / "images").is_dir():
        images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        masks = rng.integers(0, VOID + 1, (n, h, w), dtype=np.uint8)
        return images, masks, f"random pixels and labels ({CAMVID.resolve()} not found)"
    src = SegmentationFolderSource(CAMVID, "train", ignore_index=VOID)
    if n > len(src):
        raise ValueError(f"--batch x --steps = {n} exceeds the {len(src)} CamVid training "
                         "images; lower one of them")
    images, masks = np.empty((n, h, w, 3), np.uint8), np.empty((n, h, w), np.uint8)
    for i in range(n):
        ex = src[i]
        img, mask = ex["image"], ex["mask"]
        scale = max(h / img.shape[0], w / img.shape[1])
        if scale > 1:  # crop larger than the image: resize to cover (labels by nearest)
            new = (round(img.shape[1] * scale + 0.5), round(img.shape[0] * scale + 0.5))
            img = np.asarray(Image.fromarray(img).resize(new, Image.BILINEAR))
            mask = np.asarray(Image.fromarray(mask).resize(new, Image.NEAREST))
        y = int(rng.integers(0, img.shape[0] - h + 1))
        x = int(rng.integers(0, img.shape[1] - w + 1))
        images[i], masks[i] = img[y:y + h, x:x + w], mask[y:y + h, x:x + w]
    return images, masks, (f"random {h}x{w} crops of the first {n} real CamVid training "
                           f"images ({CAMVID.resolve()})")


def bench_train(size: tuple[int, int], batch: int, steps: int,
                repeats: int) -> tuple[list[object], str]:
    """The results row of one timed comparison and a description of the batches."""
    h, w = size
    images, masks, data = camvid_batches(steps * batch, size)
    images = images.reshape(steps, batch, h, w, 3)
    masks = masks.reshape(steps, batch, h, w)
    # The shipped recipe, changed to the benchmark's: torch.optim.SGD's optimizer (decay on
    # every parameter, no Nesterov, constant rate), no class balancing, no augmentation
    # (both sides see the same pixels), the canvas and batch of the command line.
    config = load_config("fcn_resnet50_camvid", [
        f"dense.canvas=[{h}, {w}]", f"batch_size={batch}", "dense.flip=False",
        "dense.scale_range=[1.0, 1.0]", "segmentation.class_weights=None",
        f"segmentation.aux_weight={AUX_WEIGHT}", f"data.ignore_index={VOID}",
        f"optimizer.learning_rate={LR}", f"optimizer.momentum={MOMENTUM}",
        f"optimizer.weight_decay={WEIGHT_DECAY}", "optimizer.nesterov=False",
        "optimizer.decay_norm_and_bias=True", "schedule.name=constant",
        "schedule.warmup_steps=0", "model.dtype=float32", f"data.root={CAMVID}"])
    mean = np.asarray(config.data.mean, np.float32)
    std = np.asarray(config.data.std, np.float32)

    # PyTorch's freshly initialised model; jaxvision starts from the same weights.
    torch.manual_seed(0)
    net = tvseg.fcn_resnet50(weights=None, weights_backbone=None,
                             num_classes=config.model.num_classes, aux_loss=True)
    init = convert_torchvision(NAME, net.state_dict())
    net.train()

    # -- jaxvision: the engine's train step --------------------------------------------
    task = get_task(config)
    task.check_config(config)
    mesh, data_sharding, model, tx, schedule, state = engine_state(config, init, steps, net)
    valid = np.ones(batch, bool)

    def put(i: int) -> dict[str, jax.Array]:
        return sharding.global_batch({"image": images[i], "mask": masks[i], VALID: valid},
                                     data_sharding)

    step_fn, t_compile = compiled(jit_train_step(mesh, task, model, tx, schedule, config,
                                                 (h, w)), state, put(0))
    holder: dict[str, Any] = {"state": state}

    def run_jax() -> float:
        s = holder["state"]
        for i in range(steps):
            s, metrics = step_fn(s, put(i))
        holder["state"] = s
        return float(metrics["loss"])

    # -- PyTorch: the same model and optimizer, eager ----------------------------------
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    t_images = torch.from_numpy(images).permute(0, 1, 4, 2, 3).contiguous()  # NCHW
    t_masks = torch.from_numpy(masks).long()
    t_mean = torch.from_numpy(mean).view(1, -1, 1, 1)
    t_std = torch.from_numpy(std).view(1, -1, 1, 1)
    criterion = nn.CrossEntropyLoss(ignore_index=VOID)

    def run_torch() -> float:
        for i in range(steps):
            x = (t_images[i].float() / 255.0 - t_mean) / t_std
            out = net(x)
            loss = criterion(out["out"], t_masks[i]) + AUX_WEIGHT * criterion(out["aux"],
                                                                             t_masks[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return float(loss.detach())

    # The first run of each starts from the same weights on the same batches: its last
    # loss must agree but for dropout (p=0.1 in both heads, different random streams).
    loss_jax, loss_torch = run_jax(), run_torch()
    if not (np.isfinite(loss_jax) and abs(loss_jax - loss_torch) <= 0.1 * abs(loss_torch)):
        raise AssertionError(f"training losses after {steps} step(s) from the same weights "
                             f"differ: jaxvision {loss_jax:.4f}, PyTorch {loss_torch:.4f}")
    t_jax = median_seconds(run_jax, warmup=0, repeats=repeats)
    t_torch = median_seconds(run_torch, warmup=0, repeats=repeats)
    ips_jax, ips_torch = steps * batch / t_jax, steps * batch / t_torch
    print(f"training {h}x{w} batch {batch}: jaxvision {ips_jax:.2f} img/s, PyTorch "
          f"{ips_torch:.2f} img/s, ratio {ips_jax / ips_torch:.2f}, compile {t_compile:.1f} s, "
          f"loss after {steps} step(s) {loss_jax:.4f} vs {loss_torch:.4f}", flush=True)
    return ([f"training step, {NAME} (11 classes + aux)", f"{h}x{w}", batch,
             f"{ips_jax:.2f}", f"{ips_torch:.2f}", f"**{ips_jax / ips_torch:.2f}**",
             f"{t_compile:.1f}", f"loss {loss_jax:.3f} vs {loss_torch:.3f}, "
             f"{sum(p.numel() for p in net.parameters()):,} params"], data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(240, 320),
                        help="training crop, H or HxW (default 240x320)")
    parser.add_argument("--batch", type=int, default=2, help="training batch (default 2)")
    parser.add_argument("--steps", type=int, default=3,
                        help="training steps per timed run (default 3)")
    parser.add_argument("--infer-size", type=int, default=520,
                        help="inference input side (default 520, torchvision's)")
    parser.add_argument("--infer-batch", type=int, nargs="+", default=[1],
                        help="inference batch size(s) (default 1)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs per measurement, median taken (default 5)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-inference", action="store_true")
    args = parser.parse_args()
    if args.skip_train and args.skip_inference:
        parser.error("--skip-train and --skip-inference leave nothing to measure")
    if min(args.batch, args.steps, args.repeats, *args.infer_batch) < 1:
        parser.error("--batch, --steps, --repeats and --infer-batch must be >= 1")
    if args.infer_size < 32:
        parser.error(f"--infer-size must be >= 32, got {args.infer_size}")

    rows: list[list[object]] = []
    data = "training not run"
    if not args.skip_inference:
        rows += bench_inference(args.infer_size, args.infer_batch, args.repeats)
    if not args.skip_train:
        row, data = bench_train(args.size, args.batch, args.steps, args.repeats)
        rows.append(row)
    write_markdown(
        "segmentation", f"Segmentation: {NAME}, jaxvision vs torchvision, fp32",
        ["measurement", "input", "batch", "jaxvision img/s (jit)",
         "torchvision img/s (eager)", "ratio", "jax compile s", "check"], rows,
        notes=f"""
Ratio > 1 means jaxvision is faster. Both frameworks in one process on the same inputs,
fp32, this machine's CPU; medians of {args.repeats} timed runs. Compile time (the first
call's `lower().compile()`, jaxvision only) is reported apart and not in the img/s.

**Inference**: torchvision `fcn_resnet50(num_classes=21, aux_loss=True)` (the layout of its
COCO_WITH_VOC_LABELS checkpoint; random weights with realistic BatchNorm statistics) in eager
mode under `torch.inference_mode()`, against `jaxvision.models.get_model('fcn_resnet50',
num_classes=21, aux_loss=True)` jitted, with the weights converted by
`jaxvision.weights.convert_torchvision`; both heads computed, NCHW vs NHWC input of the same
values. Median of {args.repeats} batches after 2 warm-up batches. Before timing, the script
asserts max |jax - torch| of `out` and `aux` < {TOLERANCE:g} x the largest logit ("check"
column: the worse of the two).

**Training**: `fcn_resnet50(weights=None, weights_backbone=None, num_classes=11,
aux_loss=True)`, both sides from torchvision's initial weights; each timed run is
{args.steps} full optimizer steps (uint8 batch -> normalize -> forward in train mode ->
pixel cross-entropy with ignore index {VOID} on `out` + {AUX_WEIGHT} x on `aux` -> backward
-> SGD momentum {MOMENTUM}, weight decay {WEIGHT_DECAY:g} on every parameter, lr {LR}),
median of {args.repeats} runs after one warm-up run. jaxvision: the engine's `jit_train_step`
for config `fcn_resnet50_camvid` (task `segmentation`, `dense.canvas` and `batch_size` from
the command line, no class balancing, no augmentation; state donated, batch placed on the
mesh every step); PyTorch: eager `torch.optim.SGD`. The warm-up run of each starts from the
same weights on the same batches; the script asserts its last losses agree within 10% (they
differ only by the heads' dropout streams; "check" column). Batches: {data}.

Absolute numbers drift on a shared machine; the ratio much less.
""")


if __name__ == "__main__":
    main()
