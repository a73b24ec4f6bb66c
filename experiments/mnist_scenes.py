"""From classification to detection and localization on scenes of real MNIST digits.

1. Detection (OverFeat's sliding window, made convolutional): a LeNet-5 with an 11th
   "background" class is trained on 28x28 crops -- MNIST train digits plus digit and
   background windows cut from scenes of MNIST *train* digits. It is convolutionized
   (:func:`jaxvision.models.convolutionize`) and slid over scenes of MNIST *test* digits at
   several scales (:func:`jaxvision.dense.detect`, class-agnostic NMS from
   :mod:`jaxvision.ops`); precision and recall at IoU >= 0.5 with the right label.
2. Localization (the lecture's recipe): a LeNet-5 with a box-regression head on scenes with
   one digit each -- train the classifier (conv layers started from the window classifier's),
   freeze it and train the head with SGD on an L2 loss of standardised (cx, cy, w, h)
   targets, then fine-tune jointly -- scored with the ILSVRC localization metric (top-1 class
   right and IoU >= 0.5). The head after the conv features and after the last hidden dense
   layer are compared, and a DeepPose-style keypoint head is trained the same way.

Everything is seeded. Every model trains on the one engine,
:func:`jaxvision.train.train_and_evaluate` (checkpoints, exact resume, the device mesh), from
in-memory sources (``ArraySource(images, labels, boxes=...)``); the staged recipe is
configuration (:func:`localization_config`): ``localization.box_weight=0`` trains the
classifier alone, ``optimizer.frozen`` keeps it fixed while the head trains, and
``model.init_from`` carries each stage's variables into the next. Each run has its workdir
under ``--workdir`` (cleared first).

    python experiments/mnist_scenes.py            # ~10 CPU minutes

Writes ``experiments/results/mnist_scenes.json`` and ``mnist_scenes_detections.png``
(test scenes, ground truth green, detections red) and ``mnist_scenes_localization.png``.
MNIST: Y. LeCun, C. Cortes, C. Burges; CC BY-SA 3.0 (read from ``../shared/data/mnist``,
else the package's embedded 12,000/2,000-image subset).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvision.data import ArraySource, mnist_source
from jaxvision.data.scenes import Scenes, make_scenes, scene_windows
from jaxvision.dense import Detections, detect, precision_recall
from jaxvision.localization import TargetScaler, boxes_to_cxcywh, digit_keypoints
from jaxvision.models import convolutionize, get_model, network_stride
from jaxvision.train import default_config, train_and_evaluate
from jaxvision.train.pretrained import load_variables
from jaxvision.train.state import build_model
from jaxvision.train.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
RESULTS = ROOT / "experiments" / "results"
BACKGROUND = 10
LOC_LR = 0.08  # the localization classifier's peak learning rate (cosine-decayed)


def load_mnist(split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(images [N, 28, 28, 1] uint8, labels [N] int32, description)`` of a split."""
    root = MNIST_DIR if (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file() else None
    if root is None:
        print(f"{MNIST_DIR} not found: using the embedded MNIST subset")
    src = mnist_source(split, root=root)
    batch = src.get_batch(np.arange(len(src)))
    images, labels = batch["image"], batch["label"].astype(np.int32)
    return images, labels, f"{'full' if root else 'embedded subset'} ({len(src)} images)"


def sgd_config(model: str, num_classes: int, steps: int, lr: float,
               schedule: str = "constant", seed: int = 0) -> ml_collections.ConfigDict:
    """The recipe every run here shares: SGD with momentum 0.9 (torch-style, no weight decay,
    no Nesterov), batch 128, pixels / 255 (mean 0, std 1), no augmentation; one evaluation
    and one checkpoint, at the end. ``seed``: initialisation and batch order (the data are
    seeded on their own)."""
    config = default_config()
    config.model.name = model
    config.model.num_classes = num_classes
    config.data.mean, config.data.std = [0.0], [1.0]
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = lr
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    config.optimizer.weight_decay = 0.0
    config.schedule.name = schedule  # cosine: to 0 at the last step
    config.schedule.warmup_steps = 0
    config.schedule.end_factor = 0.0
    config.num_train_steps = steps
    config.batch_size = 128
    config.eval_batch_size = 500
    config.eval_every_steps = steps
    config.checkpoint.every_steps = steps
    config.checkpoint.async_save = False
    config.log_every_steps = 50
    config.progress_bar = False
    config.tensorboard = False
    config.seed = seed
    return config


def fresh(workdir: Path) -> Path:
    """An empty workdir (an existing one would be resumed, not retrained)."""
    shutil.rmtree(workdir, ignore_errors=True)
    return workdir


def train_window_classifier(images: np.ndarray, labels: np.ndarray, test_images: np.ndarray,
                            test_labels: np.ndarray, args: argparse.Namespace,
                            ) -> tuple[Any, dict, dict[str, Any]]:
    """LeNet-5 with a background class, trained on digits and scene windows (28x28)."""
    scenes = make_scenes(images, labels, args.train_scenes, size=(112, 112),
                         digits_per_scene=(1, 4), scale_range=(1.0, 2.0), seed=1)
    # Windows overlapping a digit by less than 0.4 IoU are background: partial views of a digit
    # must not fire (those are the detector's false positives).
    crops, crop_labels = scene_windows(scenes, scales=(1.0, 0.75, 0.5), windows_per_scene=32,
                                       positive_iou=0.6, negative_iou=0.4,
                                       background=BACKGROUND, seed=1)
    x = np.concatenate([images, crops])
    y = np.concatenate([labels, crop_labels])
    config = sgd_config("lenet5", 11, args.classifier_steps, 0.02, seed=args.seed)
    workdir = fresh(args.workdir / "window_classifier")
    res = train_and_evaluate(config, workdir, train_source=ArraySource(x, y, num_classes=11),
                             eval_source=ArraySource(test_images, test_labels, num_classes=11))
    info = {"train_crops": len(x), "background_crops": int(np.sum(y == BACKGROUND)),
            "mnist_test_accuracy": res["eval_top1"], "workdir": str(workdir)}
    variables = {k: v for k, v in load_variables(str(workdir)).items() if v}
    return get_model("lenet5", num_classes=11), variables, info


def detections_above(d: Detections, threshold: float) -> Detections:
    """The rows of ``d`` scoring at least ``threshold`` (rows are in descending score).

    Greedy NMS then a score cut equals the cut then NMS (only higher-scoring boxes
    suppress), so one NMS at a low threshold serves every higher one.
    """
    n = int(np.sum(np.asarray(d.scores[:int(d.count)]) >= threshold))
    return d._replace(count=jnp.asarray(n, jnp.int32))


def run_detection(model: Any, variables: dict, test: Scenes, args: argparse.Namespace,
                  ) -> tuple[dict[str, Any], list[Detections]]:
    fcn, fv = convolutionize(model, variables, (28, 28, 1))
    stride = network_stride(model, (28, 28, 1))
    apply = jax.jit(lambda x: fcn.apply(fv, x))
    images = test.images.astype(np.float32) / 255.0
    # Frames in the scenes are disjoint, so overlapping detections are duplicates: a low NMS
    # threshold, over all classes (two labels on one digit are one false positive).
    run = jax.jit(lambda img: detect(
        apply, img, window=28, stride=stride, scales=args.scales, background=BACKGROUND,
        score_threshold=0.3, iou_threshold=args.nms_iou, max_detections=32,
        class_agnostic=True))
    jax.block_until_ready(run(jnp.asarray(images[0])))  # compile once
    t0 = time.perf_counter()
    dets = [jax.block_until_ready(run(jnp.asarray(img))) for img in images]
    seconds = time.perf_counter() - t0
    table = []
    for thr in (0.5, 0.7, 0.9):
        tp = nd = ng = 0
        for n, d in enumerate(dets):
            a, b, c = precision_recall(detections_above(d, thr), test.boxes[n],
                                       test.labels[n], int(test.counts[n]))
            tp, nd, ng = tp + a, nd + b, ng + c
        table.append({"score_threshold": thr, "true_positives": tp, "detections": nd,
                      "ground_truth": ng, "precision": tp / max(nd, 1),
                      "recall": tp / max(ng, 1)})
    return {"network_stride": stride, "scales": list(args.scales),
            "windows": [28 / s for s in args.scales], "iou_threshold_nms": args.nms_iou,
            "match_iou": 0.5, "seconds_per_scene": seconds / len(images),
            "by_threshold": table}, dets


def localization_config(stage: str, steps: int, lr: float, schedule: str,
                        scaler: TargetScaler, init_from: Path, *, attach: str = "features",
                        target: str = "boxes") -> ml_collections.ConfigDict:
    """The lecture's recipe as configuration, one config per stage.

    ``classifier``: cross-entropy alone (``box_weight=0``), the conv stack from the window
    classifier (``init_from`` onto ``backbone``). ``regressor``: the classifier of stage 1
    (``init_from``) frozen (``optimizer.frozen``), the head alone on the L2 loss of the
    standardised targets. ``joint``: everything, cross-entropy + L2, from stage 2.
    """
    config = sgd_config("lenet5", 10, steps, lr, schedule)
    config.task.name = "localization"
    loc = config.localization
    loc.attach, loc.hidden, loc.target = attach, [256], target
    loc.loss, loc.box_encoding = "l2", "cxcywh"
    loc.target_mean = [float(v) for v in scaler.mean]
    loc.target_std = [float(v) for v in scaler.std]
    config.model.init_from = str(init_from)
    if stage == "classifier":
        loc.box_weight = 0.0
        # The window classifier is a plain LeNet-5: its conv layers go to the backbone (its
        # dense layers, sized for a 4x4 map and 11 classes, do not fit and are left out).
        config.model.init_from_target = "backbone"
    elif stage == "regressor":
        loc.class_weight = 0.0
        config.optimizer.frozen = ["backbone", r"classifier\..*"]
        # A new head (another input width or output count than stage 1's untrained one).
        config.model.init_from_skip = [r"regressor\..*"]
    elif stage != "joint":
        raise ValueError(f"unknown stage {stage!r}")
    return config


def run_localization(images: np.ndarray, labels: np.ndarray, test_images: np.ndarray,
                     test_labels: np.ndarray, window_workdir: Path, args: argparse.Namespace,
                     ) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray, Scenes]]:
    """The lecture's recipe on 64x64 one-digit scenes.

    ``window_workdir``: the window classifier's run; its conv layers (size-independent)
    start the 64x64 classifier, as an ImageNet-trained trunk starts a localizer.
    """
    side = 64
    kw = dict(size=(side, side), digits_per_scene=(1, 1), scale_range=(0.75, 1.75))
    train = make_scenes(images, labels, args.loc_train, seed=2, **kw)
    test = make_scenes(test_images, test_labels, args.loc_test, seed=3, **kw)
    # Boxes as (cx, cy, w, h) over the image size, standardised with training statistics: raw
    # [0, 1] corners (mean ~0.5, spread ~0.15) stall SGD on the zero-initialised head.
    box_scaler = TargetScaler.from_targets(boxes_to_cxcywh(train.boxes[:, 0] / side))
    # DeepPose-style: 3 keypoints (ink centroid, top, bottom), standardised like the boxes.
    kp_train, kp_test = digit_keypoints(train), digit_keypoints(test)
    kp_scaler = TargetScaler.from_targets((kp_train / side).reshape(len(kp_train), -1))
    train_src = ArraySource(train.images, train.labels[:, 0], boxes=train.boxes,
                            keypoints=kp_train)
    test_src = ArraySource(test.images, test.labels[:, 0], boxes=test.boxes,
                           keypoints=kp_test)
    root = args.workdir / "localization"

    def run(name: str, config: ml_collections.ConfigDict) -> tuple[dict[str, float], Path]:
        config.seed = args.seed  # the configs above are seed 0
        workdir = fresh(root / name)
        res = train_and_evaluate(config, workdir, train_source=train_src, eval_source=test_src)
        return res, workdir

    def score(res: dict[str, float]) -> dict[str, float]:
        return {"top1_localization_accuracy": res["eval_localization"],
                "classification_accuracy": res["eval_top1"],
                "mean_iou": res["eval_mean_iou"]}

    out: dict[str, Any] = {
        "scene_size": side, "digit_sides": [21, 49], "train_scenes": len(train.images),
        "test_scenes": len(test.images), "batch_size": 128,
        "classifier": {"steps": args.loc_classifier_steps, "learning_rate": LOC_LR,
                       "schedule": "cosine", "momentum": 0.9,
                       "conv_init": "window classifier (28x28 crops)"},
        "regressor": {"steps": args.loc_steps, "learning_rate": 0.01, "schedule": "constant",
                      "momentum": 0.9, "loss": "l2", "targets": "standardised (cx, cy, w, h)"},
        "joint": {"steps": args.loc_steps // 2, "learning_rate": 0.005, "schedule": "cosine",
                  "momentum": 0.9, "box_weight": 1.0},
        "engine": "jaxvision.train.train_and_evaluate (task.name='localization')"}
    # Step 1: the classifier alone. Its first dense layer sees the whole 13x13x16 map, so it
    # must learn each digit at every position: many scenes (few repeats) and a decaying rate.
    res, classifier_dir = run("1_classifier", localization_config(
        "classifier", args.loc_classifier_steps, LOC_LR, "cosine", box_scaler, window_workdir))
    out["classifier_only_accuracy"] = res["eval_top1"]
    regressor_dirs = {}
    for attach in ("features", "classifier"):
        res, regressor_dirs[attach] = run(f"2_regressor_after_{attach}", localization_config(
            "regressor", args.loc_steps, 0.01, "constant", box_scaler, classifier_dir,
            attach=attach))
        out[f"frozen_classifier_head_after_{attach}"] = score(res)
    joint = localization_config("joint", args.loc_steps // 2, 0.005, "cosine", box_scaler,
                                regressor_dirs["features"])
    res, joint_dir = run("3_joint", joint)
    out["joint_finetune_head_after_features"] = score(res)
    res, _ = run("2_keypoints", localization_config(
        "regressor", args.loc_steps, 0.01, "constant", kp_scaler, classifier_dir,
        target="keypoints"))
    out["keypoints_pck_at_0.1_frame"] = res["eval_pck"]
    # The pictures: the jointly fine-tuned localizer on the first test scenes.
    model, task = build_model(joint), get_task(joint)
    variables = {k: v for k, v in load_variables(str(joint_dir)).items() if v}
    pred = jax.jit(lambda v, x: task.predict(model, joint, (side, side), v, {"image": x}))(
        variables, jnp.asarray(test.images[:8]))
    return out, (np.asarray(pred["label"]), np.asarray(pred["boxes"]), test)


def draw(test: Scenes, dets: list[Detections], loc_pred: tuple[np.ndarray, np.ndarray, Scenes],
         ) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    def box(ax: Any, b: Any, color: str, text: str | None = None, dashed: bool = False) -> None:
        x1, y1, x2, y2 = (float(c) for c in b)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=color, lw=1.5,
                               ls="--" if dashed else "-"))
        if text:
            ax.text(x1, y1 - 1, text, color=color, fontsize=7, va="bottom")

    fig, axes = plt.subplots(2, 4, figsize=(12, 6.4))
    for n, ax in enumerate(axes.ravel()):
        ax.imshow(test.images[n, ..., 0], cmap="gray")
        for b in test.boxes[n, :test.counts[n]]:
            box(ax, b, "lime", dashed=True)
        d = detections_above(dets[n], 0.5)
        for k in range(int(d.count)):
            box(ax, d.boxes[k], "red", f"{int(d.labels[k])} {float(d.scores[k]):.2f}")
        ax.set_axis_off()
    fig.suptitle("Convolutionized LeNet-5 on scenes of MNIST test digits "
                 "(green: ground truth, red: detections, score >= 0.5)")
    fig.tight_layout()
    fig.savefig(RESULTS / "mnist_scenes_detections.png", dpi=90)
    plt.close(fig)

    labels, boxes, scenes = loc_pred
    fig, axes = plt.subplots(1, 8, figsize=(14, 2.2))
    for n, ax in enumerate(axes):
        ax.imshow(scenes.images[n, ..., 0], cmap="gray")
        box(ax, scenes.boxes[n, 0], "lime", dashed=True)
        box(ax, boxes[n], "red", str(int(labels[n])))
        ax.set_axis_off()
    fig.suptitle("LeNet-5 + box regression (green: ground truth, red: prediction)")
    fig.tight_layout()
    fig.savefig(RESULTS / "mnist_scenes_localization.png", dpi=90)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-scenes", type=int, default=3000)
    p.add_argument("--classifier-steps", type=int, default=1500)
    p.add_argument("--test-scenes", type=int, default=200)
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.8, 0.64, 0.5])
    p.add_argument("--nms-iou", type=float, default=0.15)
    p.add_argument("--loc-train", type=int, default=40000)
    p.add_argument("--loc-test", type=int, default=1000)
    p.add_argument("--loc-classifier-steps", type=int, default=1000)
    p.add_argument("--loc-steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0,
                   help="training seed of every run (initialisation, batch order); the "
                        "results of seed != 0 go to mnist_scenes_seed<N>.json, no pictures")
    p.add_argument("--workdir", type=Path,
                   default=Path(tempfile.gettempdir()) / "jaxvision_mnist_scenes",
                   help="where the runs' workdirs go (each is cleared before its run)")
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    t_start, cpu_start = time.perf_counter(), time.process_time()

    train_x, train_y, train_desc = load_mnist("train")
    test_x, test_y, test_desc = load_mnist("test")
    model, variables, train_info = train_window_classifier(train_x, train_y, test_x, test_y,
                                                           args)
    print(f"window classifier: {train_info} ({time.perf_counter() - t_start:.0f} s)",
          flush=True)
    test = make_scenes(test_x, test_y, args.test_scenes, size=(112, 112),
                       digits_per_scene=(1, 4), scale_range=(1.0, 2.0), seed=0)
    det, dets = run_detection(model, variables, test, args)
    print(json.dumps(det, indent=1), f"({time.perf_counter() - t_start:.0f} s)", flush=True)
    loc, loc_pred = run_localization(train_x, train_y, test_x, test_y,
                                     Path(train_info["workdir"]), args)
    print(json.dumps(loc, indent=1))
    if args.seed == 0:
        draw(test, dets, loc_pred)
    results = {
        "data": {"mnist_train": train_desc, "mnist_test": test_desc,
                 "detection_test_scenes": {"count": args.test_scenes, "size": [112, 112],
                                           "digits_per_scene": [1, 4], "digit_sides": [28, 56],
                                           "seed": 0, "digits": "MNIST test"}},
        "window_classifier": train_info,
        "detection": det,
        "localization": loc,
        "seconds_total": time.perf_counter() - t_start,
        # CPU seconds (all threads): wall time depends on what else shares the machine.
        "cpu_seconds_total": time.process_time() - cpu_start,
        "jax": jax.__version__, "backend": jax.default_backend(),
    }
    name = "mnist_scenes.json" if args.seed == 0 else f"mnist_scenes_seed{args.seed}.json"
    (RESULTS / name).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS}/{name} in {results['seconds_total']:.0f} s")


if __name__ == "__main__":
    main()
