"""Detection side by side with torchvision: Faster R-CNN inference and training.

Both frameworks run on this machine's CPU in one process, fp32, on the same inputs:

* **inference**: torchvision's ``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
  num_classes=91)`` (random weights with realistic BatchNorm statistics, its RPN and box
  predictor rescaled so that scores spread over (0, 1) as a trained detector's do, exactly as
  ``tests/detection/test_faster_rcnn.py``) in eager mode under ``torch.inference_mode()``,
  against jaxvision's ``get_model('fasterrcnn_resnet50_fpn')`` with the weights converted by
  ``jaxvision.weights.convert_torchvision``, at torchvision's default size (shorter side 800,
  longer at most 1333), batch 1, on real photos (``grace_hopper.jpg`` 606x517 -> 937x800 and
  a BCCD blood smear 480x640 -> 800x1066). jaxvision is timed twice: end to end
  (``jaxvision.detection.detect``: host resize and normalization, the jitted forward, boxes
  back to the image's pixels; torchvision's ``model(images)`` does the same work) and the
  jitted forward alone on the preprocessed canvas (``jaxvision.detection.inference.forward``).
  Before timing, the script asserts that the detections are the same: counts equal and at
  least 99% of torchvision's matched by one with the same label, IoU >= 0.99 and score
  within 1e-3 (the contract of issue 9), so a fast but wrong detector cannot look good.
* **training**: the BCCD recipe on both sides from the same initial weights: torchvision's
  ``FasterRCNN(resnet_fpn_backbone(backbone_name='resnet18', weights=None, trainable_layers=5,
  norm_layer=BatchNorm2d), num_classes=4, min_size=320, max_size=448)`` (its builder's choice
  without weights) against ``get_model('fasterrcnn_resnet18_fpn', num_classes=4,
  trainable_backbone_layers=5, frozen_bn=False)``, each step: forward with targets -> the sum
  of the four losses -> backward -> SGD lr 0.01, momentum 0.9, weight decay 1e-4 on every
  parameter. jaxvision: the engine's ``jit_train_step`` for config ``faster_rcnn_voc`` with the
  BCCD overrides of its docstring (canvas 320x448, batch 2, ``data.max_boxes=32``); the batch
  is the task's ``dense_transform(config, train=True)`` of real BCCD training images
  (``VOCSource('../shared/data/bccd', 'trainval')``), flips off so that torchvision gets the
  same images: the originals as float tensors in [0, 1] with their boxes, resized by its own
  ``GeneralizedRCNNTransform`` (to 320x426, jaxvision's canvas transform rounds to 320x427;
  the same 320x448 canvas). The first step's
  losses are printed on both sides: the anchor and RoI samplers draw differently (torch's
  ``randperm``, jax's keys), so they agree in magnitude only.

Writes ``results/detection.md`` (``--out DIR`` writes ``DIR/detection.md`` instead).

    python -m benchmarks.bench_detection                  # the full measurement (see --help)
    python -m benchmarks.bench_detection --skip-training  # inference only
    python -m benchmarks.bench_detection --smoke --out /tmp/det   # small sizes, one step
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.models.detection import FasterRCNN as TorchFasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import box_iou

from benchmarks.common import engine_state, median_seconds, write_markdown
from jaxvision.data import VALID
from jaxvision.detection import detect
from jaxvision.detection.inference import forward, preprocess
from jaxvision.models import get_model
from jaxvision.train import input_pipeline, load_config, sharding
from jaxvision.train.steps import jit_train_step
from jaxvision.train.tasks import get_task
from jaxvision.weights import convert_torchvision
from tests.detection.test_faster_rcnn import spread_head_scores
from tests.torch_parity import realistic_batchnorm

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PHOTOS = [("grace_hopper", DATA / "photos" / "grace_hopper.jpg"),
          ("BCCD BloodImage_00000", DATA / "bccd" / "JPEGImages" / "BloodImage_00000.jpg")]
BCCD = DATA / "bccd"
INFER_NAME, TRAIN_NAME = "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet18_fpn"
TRAIN_CLASSES = 4  # BCCD's RBC, WBC, Platelets + background
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 1e-4
LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")
# Issue 9's definition of equal detections.
MIN_MATCHED, MIN_IOU, SCORE_TOL = 0.99, 0.99, 1e-3


def parse_canvas(text: str) -> tuple[int, int]:
    """``"320x448"`` -> (320, 448): the training canvas, both sides multiples of 32."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) != 2 or min(parts) < 64 or any(p % 32 for p in parts) or parts[0] > parts[1]:
        raise argparse.ArgumentTypeError(f"expected HxW, multiples of 32, 64 <= H <= W (e.g. "
                                         f"320x448), got {text!r}")
    return parts[0], parts[1]


def load_photo(path: Path) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1]."""
    if not path.is_file():
        raise FileNotFoundError(f"benchmark photo {path.resolve()} not found (the shared data "
                                "set, see ../shared/data/README.md)")
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255


# -- inference ----------------------------------------------------------------------------


def detecting_torch_model(images: list[torch.Tensor], min_size: int,
                          max_size: int) -> torch.nn.Module:
    """torchvision's ``fasterrcnn_resnet50_fpn`` with random weights made to detect: realistic
    BatchNorm statistics, RPN logits of std 2 and deltas of std 0.2, class logits of std 3
    and box deltas of std 1 on ``images`` (random heads give no score above 0.05)."""
    torch.manual_seed(0)
    tv = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91, min_size=min_size,
        max_size=max_size)
    realistic_batchnorm(tv).eval()
    spread_head_scores(tv, images)
    return tv


def matched_fraction(ref: dict[str, torch.Tensor], got: dict[str, np.ndarray]) -> float:
    """The fraction of torchvision's detections matched by one of ours with the same label,
    IoU >= 0.99 and score within 1e-3 (1.0 when torchvision has none)."""
    if len(ref["boxes"]) == 0:
        return 1.0
    iou = box_iou(ref["boxes"], torch.from_numpy(got["boxes"])).numpy()
    same = ((ref["labels"].numpy()[:, None] == got["labels"][None, :]) & (iou >= MIN_IOU)
            & (np.abs(ref["scores"].numpy()[:, None] - got["scores"][None, :]) <= SCORE_TOL))
    return float(same.any(axis=1).mean())


def bench_inference(min_size: int, max_size: int, repeats: int) -> list[list[object]]:
    """One row per photo: jaxvision (``detect`` end to end and the jitted forward alone) vs
    eager torchvision, batch 1."""
    photos = [(name, load_photo(path)) for name, path in PHOTOS]
    tensors = [torch.from_numpy(x).permute(2, 0, 1).contiguous() for _, x in photos]
    tv = detecting_torch_model(tensors, min_size, max_size)
    model = get_model(INFER_NAME, num_classes=91, min_size=min_size, max_size=max_size)
    # On the device once, as torch's weights are: numpy leaves would be copied every call.
    variables = jax.device_put(convert_torchvision(INFER_NAME, tv.state_dict()))
    rows = []
    for (name, image), x in zip(photos, tensors, strict=True):
        batch, sizes, _ = preprocess([image], model.min_size, model.max_size, model.image_mean,
                                     model.image_std, model.size_divisible)
        batch_d, sizes_d = jax.device_put(batch), jax.device_put(sizes)

        def run_detect() -> list[dict[str, np.ndarray]]:
            return detect(model, variables, [image])  # noqa: B023

        def run_forward() -> Any:
            out = forward(model, variables, batch_d, sizes_d)  # noqa: B023
            return jax.block_until_ready(out["detections"])

        def run_torch() -> list[dict[str, torch.Tensor]]:
            with torch.inference_mode():
                return tv([x])  # noqa: B023

        # The first call compiles the four jitted programs (one set per canvas size).
        t0 = time.perf_counter()
        ours = run_detect()[0]
        t_first = time.perf_counter() - t0
        ref = run_torch()[0]
        matched = matched_fraction(ref, ours)
        n_ref, n_ours = len(ref["boxes"]), len(ours["boxes"])
        top = float(ref["scores"].max()) if n_ref else 0.0
        h, w = (int(v) for v in sizes[0])
        where = f"{name} {image.shape[0]}x{image.shape[1]} -> {h}x{w}"
        if n_ref < 10 or top >= 0.99:
            raise AssertionError(f"{where}: torchvision gave {n_ref} detections, top score "
                                 f"{top:.3f}; the heads were to spread scores over (0, 1)")
        if n_ours != n_ref or matched < MIN_MATCHED:
            raise AssertionError(f"{where}: jaxvision {n_ours} detections, torchvision {n_ref}, "
                                 f"{matched:.1%} of torchvision's matched (label, IoU >= "
                                 f"{MIN_IOU}, score within {SCORE_TOL:g}); not the same "
                                 "detector")
        t_detect = median_seconds(run_detect, repeats=repeats)
        t_forward = median_seconds(run_forward, repeats=repeats)
        t_torch = median_seconds(run_torch, repeats=repeats)
        ips_d, ips_f, ips_t = 1 / t_detect, 1 / t_forward, 1 / t_torch
        t_compile = max(t_first - t_detect, 0.0)
        print(f"inference {where}: jaxvision detect {ips_d:.3f} img/s, forward {ips_f:.3f} "
              f"img/s, torchvision {ips_t:.3f} img/s, ratio {ips_d / ips_t:.2f} (forward "
              f"{ips_f / ips_t:.2f}), compile {t_compile:.1f} s, {n_ref} detections, "
              f"{matched:.1%} matched", flush=True)
        rows.append([f"inference, {INFER_NAME} (91 classes), {name}",
                     f"{image.shape[0]}x{image.shape[1]} -> {h}x{w} (canvas "
                     f"{batch.shape[1]}x{batch.shape[2]})", 1, f"{ips_d:.3f}", f"{ips_f:.3f}",
                     f"{ips_t:.3f}", f"**{ips_d / ips_t:.2f}**", f"{ips_f / ips_t:.2f}",
                     f"{t_compile:.1f}", f"{n_ref} detections, {matched:.1%} matched, top "
                     f"score {top:.2f}"])
    return rows


# -- training -----------------------------------------------------------------------------


def train_config(canvas: tuple[int, int], batch: int) -> Any:
    """``faster_rcnn_voc`` with its docstring's BCCD overrides, changed to the benchmark's:
    torch.optim.SGD's optimizer (decay on every parameter, no Nesterov, constant rate), no
    flips (both sides see the same pixels), the canvas and batch of the command line."""
    h, w = canvas
    return load_config("faster_rcnn_voc", [
        f"data.root={BCCD}", f"model.name={TRAIN_NAME}", f"model.num_classes={TRAIN_CLASSES}",
        f"dense.canvas=[{h}, {w}]", f"dense.eval_min_size={h}", f"dense.eval_max_size={w}",
        "dense.base_size=None", f"batch_size={batch}", "data.max_boxes=32",
        "dense.flip=False", f"optimizer.learning_rate={LR}", f"optimizer.momentum={MOMENTUM}",
        f"optimizer.weight_decay={WEIGHT_DECAY}", "optimizer.nesterov=False",
        "optimizer.decay_norm_and_bias=True", "schedule.name=constant",
        "schedule.warmup_steps=0", "model.dtype=float32"])


def bccd_batches(config: Any, n: int) -> tuple[list[dict[str, np.ndarray]],
                                                  list[dict[str, np.ndarray]]]:
    """``(transformed, originals)`` of the first ``n`` BCCD training examples: the task's
    training transform onto the canvas (jaxvision) and the examples as stored (torchvision)."""
    if not (BCCD / "Annotations").is_dir():
        raise FileNotFoundError(f"BCCD not found at {BCCD.resolve()} (the shared data set, see "
                                "../shared/data/README.md)")
    source = input_pipeline.make_source(config, config.data.train_split)
    if n > len(source):
        raise ValueError(f"--batch x --steps = {n} exceeds the {len(source)} BCCD training "
                         "images; lower one of them")
    transform = input_pipeline.dense_transform(config, train=True)
    originals = [source[i] for i in range(n)]
    transformed = [transform(dict(ex), np.random.default_rng(i))
                   for i, ex in enumerate(originals)]
    return transformed, originals


def bench_train(canvas: tuple[int, int], batch: int, steps: int,
                repeats: int) -> list[object]:
    """The results row of one timed comparison."""
    h, w = canvas
    config = train_config(canvas, batch)
    transformed, originals = bccd_batches(config, steps * batch)
    task = get_task(config)
    task.check_config(config)
    fields = (*task.fields(config), VALID)
    valid = np.ones(batch, bool)

    def jax_batch(i: int) -> dict[str, np.ndarray]:
        rows = transformed[i * batch:(i + 1) * batch]
        return {k: valid if k == VALID else np.stack([np.asarray(r[k]) for r in rows])
                for k in fields}

    host_batches = [jax_batch(i) for i in range(steps)]

    # torchvision's composition without weights; jaxvision starts from the same weights.
    torch.manual_seed(0)
    net = TorchFasterRCNN(resnet_fpn_backbone(backbone_name="resnet18", weights=None,
                                              trainable_layers=5,
                                              norm_layer=torch.nn.BatchNorm2d),
                          num_classes=TRAIN_CLASSES, min_size=h, max_size=w)
    init = convert_torchvision(TRAIN_NAME, net.state_dict(), **dict(config.model.kwargs))
    net.train()

    # -- jaxvision: the engine's train step --------------------------------------------
    mesh, data_sharding, model, tx, schedule, state = engine_state(config, init, steps, net)

    def put(i: int) -> dict[str, jax.Array]:
        return sharding.global_batch(host_batches[i], data_sharding)

    t0 = time.perf_counter()
    step_fn = jit_train_step(mesh, task, model, tx, schedule, config, (h, w)).lower(
        state, put(0)).compile()
    t_compile = time.perf_counter() - t0
    holder: dict[str, Any] = {"state": state, "first": None}

    def run_jax() -> None:
        s = holder["state"]
        for i in range(steps):
            s, metrics = step_fn(s, put(i))
            if holder["first"] is None:
                holder["first"] = {k: float(metrics[k]) for k in LOSSES}
        jax.block_until_ready(s)
        holder["state"] = s

    # -- PyTorch: the same model and optimizer, eager ----------------------------------
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    t_images = [torch.tensor(ex["image"]).permute(2, 0, 1).float() / 255
                for ex in originals]
    t_targets = [{"boxes": torch.tensor(ex["boxes"][ex["box_valid"]]).float(),
                  "labels": torch.tensor(ex["labels"][ex["box_valid"]]).long()}
                 for ex in originals]
    first_torch: dict[str, float] = {}

    def run_torch() -> None:
        for i in range(steps):
            rows = slice(i * batch, (i + 1) * batch)
            losses = net(t_images[rows], t_targets[rows])
            if not first_torch:
                first_torch.update({k: float(v.detach()) for k, v in losses.items()})
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()

    # The first run of each is the warm-up, from the same weights on the same batches.
    run_jax()
    run_torch()
    first_jax = holder["first"]
    loss_jax, loss_torch = sum(first_jax.values()), sum(first_torch[k] for k in LOSSES)
    print("first step losses (jaxvision | torchvision): " + ", ".join(
        f"{k} {first_jax[k]:.4f} | {first_torch[k]:.4f}" for k in LOSSES) +
        f"; total {loss_jax:.4f} | {loss_torch:.4f}", flush=True)
    if not (np.isfinite(loss_jax) and np.isfinite(loss_torch)):
        raise AssertionError(f"first-step losses not finite: jaxvision {loss_jax}, PyTorch "
                             f"{loss_torch}")
    t_jax = median_seconds(run_jax, warmup=0, repeats=repeats)
    t_torch = median_seconds(run_torch, warmup=0, repeats=repeats)
    ips_jax, ips_torch = steps * batch / t_jax, steps * batch / t_torch
    orig = "x".join(str(int(v)) for v in originals[0]["orig_size"])
    resized = "x".join(str(int(v)) for v in transformed[0]["image_size"])
    print(f"training {h}x{w} batch {batch}: jaxvision {ips_jax:.3f} img/s, PyTorch "
          f"{ips_torch:.3f} img/s, ratio {ips_jax / ips_torch:.2f}, compile {t_compile:.1f} s",
          flush=True)
    return [f"training step, {TRAIN_NAME} (4 classes), BCCD",
            f"{orig} -> {resized} (canvas {h}x{w})", batch, f"{ips_jax:.3f}", "-",
            f"{ips_torch:.3f}", f"**{ips_jax / ips_torch:.2f}**", "-", f"{t_compile:.1f}",
            f"first-step loss {loss_jax:.3f} vs {loss_torch:.3f} (" + ", ".join(
                f"{k[5:]} {first_jax[k]:.3f}/{first_torch[k]:.3f}" for k in LOSSES) +
            f"), {sum(p.numel() for p in net.parameters()):,} params"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--infer-size", type=int, default=800,
                        help="inference min_size (default 800, torchvision's; max_size "
                             "scales with it: 1333 at 800)")
    parser.add_argument("--train-size", type=parse_canvas, default=(320, 448),
                        help="training canvas HxW = torchvision's min_size x max_size "
                             "(default 320x448)")
    parser.add_argument("--batch", type=int, default=2, help="training batch (default 2)")
    parser.add_argument("--steps", type=int, default=3,
                        help="training steps per timed run (default 3)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs per measurement, median taken (default 5)")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="a quick check that everything runs: inference at 320, training "
                             "on a 128x192 canvas, 1 step, 1 repeat (overrides those options)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write DIR/detection.md instead of benchmarks/results/detection.md")
    args = parser.parse_args()
    if args.skip_training and args.skip_inference:
        parser.error("--skip-training and --skip-inference leave nothing to measure")
    if args.smoke:
        args.infer_size, args.train_size, args.steps, args.repeats = 320, (128, 192), 1, 1
    if min(args.batch, args.steps, args.repeats) < 1:
        parser.error("--batch, --steps and --repeats must be >= 1")
    if args.infer_size < 64:
        parser.error(f"--infer-size must be >= 64, got {args.infer_size}")
    infer_max = int(math.floor(args.infer_size * 1333 / 800 + 0.5))

    rows: list[list[object]] = []
    if not args.skip_inference:
        rows += bench_inference(args.infer_size, infer_max, args.repeats)
    if not args.skip_training:
        rows.append(bench_train(args.train_size, args.batch, args.steps, args.repeats))
    th, tw = args.train_size
    notes = [f"""
Ratio > 1 means jaxvision is faster. Both frameworks in one process on the same inputs, fp32,
this machine's CPU; medians of {args.repeats} timed runs. Compile time (jaxvision only) is
reported apart and not in the img/s; "-": not measured for that part.
"""]
    if not args.skip_inference:
        notes.append(f"""
**Inference** (min_size {args.infer_size}, max_size {infer_max}): torchvision
`fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)` in eager
mode under `torch.inference_mode()`, random weights with realistic BatchNorm statistics
and its RPN and box predictor rescaled so that scores spread over (0, 1) (as
`tests/detection/test_faster_rcnn.py`: random heads detect nothing above 0.05), against
`get_model('{INFER_NAME}')` with the weights converted by `convert_torchvision`; batch 1,
1000 proposals per image (torchvision's test count), up to 100 detections. "ratio":
`jaxvision.detection.detect` end to end (host resize and normalization in numpy, four jitted
programs, boxes mapped back to the photo's pixels) over torchvision's `model([image])` (which
does the same work); "ratio (forward)": the jitted forward alone
(`jaxvision.detection.inference.forward`) on the preprocessed canvas, device arrays in and
the padded detections out. Compile: the first `detect` call minus a steady one. Median of
{args.repeats} calls after 2 warm-up calls. Before timing, the script asserts equal
detection counts and >= {MIN_MATCHED:.0%} of torchvision's detections matched by one with the
same label, IoU >= {MIN_IOU} and score within {SCORE_TOL:g} ("notes").
""")
    if not args.skip_training:
        notes.append(f"""
**Training** (canvas {th}x{tw}, batch {args.batch}): torchvision `FasterRCNN(resnet_fpn_backbone(
backbone_name='resnet18', weights=None, trainable_layers=5, norm_layer=nn.BatchNorm2d),
num_classes=4, min_size={th}, max_size={tw})` against `get_model('{TRAIN_NAME}',
num_classes=4, trainable_backbone_layers=5, frozen_bn=False)`, both from torchvision's
initial weights (converted), BatchNorm in training mode, torchvision's default sampling
(2000 proposals per image, 256 anchors and 512 RoIs sampled). Each timed run is {args.steps}
optimizer steps (forward with targets -> sum of the four losses -> backward -> SGD lr {LR},
momentum {MOMENTUM}, weight decay {WEIGHT_DECAY:g} on every parameter) on the first
{args.steps * args.batch} BCCD trainval images, median of {args.repeats} runs after one
warm-up run. jaxvision: the engine's `jit_train_step` for config `faster_rcnn_voc` with its
BCCD overrides (`model.name={TRAIN_NAME} model.num_classes=4 dense.canvas=[{th},{tw}]
dense.base_size=None batch_size={args.batch} data.max_boxes=32`), flips off, constant rate;
the uint8 canvas batch from the task's `dense_transform(config, train=True)`, placed on the
mesh every step, state donated. PyTorch: the original images as float tensors in [0, 1] with
their boxes (its `GeneralizedRCNNTransform` resizes and normalizes them inside the timed
step; it truncates 426.7 px to 426 where jaxvision's canvas transform rounds to 427), eager
`torch.optim.SGD`. The first step's losses (the warm-up run's, from the same
weights on the same images) are in "notes", total and per loss (objectness, rpn_box_reg,
classifier, box_reg; jaxvision/torchvision): the anchor and RoI samplers draw differently,
so they agree in magnitude, not in value.
""")
    notes.append("Absolute numbers drift on a shared machine; the ratio much less.")
    write_markdown(
        "detection", "Detection: Faster R-CNN, jaxvision vs torchvision, fp32",
        ["part", "size", "batch", "jaxvision img/s (detect, end to end)",
         "jaxvision img/s (jitted forward)", "torchvision img/s (eager)", "ratio",
         "ratio (forward)", "jax compile s", "notes"], rows, directory=args.out,
        notes="\n".join(n.strip() + "\n" for n in notes))


if __name__ == "__main__":
    main()
