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

Everything is seeded. Training goes through :func:`jaxvision.localization.fit` (the staged
recipe's loop; its ``"classifier"`` stage trains the plain classifier).

    python experiments/mnist_scenes.py            # ~10 CPU minutes

Writes ``experiments/results/mnist_scenes.json`` and ``mnist_scenes_detections.png``
(test scenes, ground truth green, detections red) and ``mnist_scenes_localization.png``.
MNIST: Y. LeCun, C. Cortes, C. Burges; CC BY-SA 3.0 (read from ``../shared/data/mnist``,
else the package's embedded 12,000/2,000-image subset).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.data import mnist_source
from jaxvision.data.scenes import Scenes, make_scenes, scene_windows
from jaxvision.dense import Detections, detect, precision_recall
from jaxvision.localization import (
    TargetScaler,
    boxes_to_cxcywh,
    classifier_from_localizer,
    cxcywh_to_boxes,
    digit_keypoints,
    fit,
    localization_correct,
    localizer_from_classifier,
    make_localizer,
    paired_iou,
    pck,
    predict,
)
from jaxvision.models import convolutionize, get_model, network_stride

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


def train_window_classifier(images: np.ndarray, labels: np.ndarray, args: argparse.Namespace,
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
    model = get_model("lenet5", num_classes=11)
    loc = make_localizer(model)
    v = loc.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    # Step 1 of the recipe (classifier only); the regression targets are unused there.
    v, hist = fit(loc, v, x, y, np.zeros((len(x), 4), np.float32), stage="classifier",
                  steps=args.classifier_steps, batch_size=128, learning_rate=0.02, seed=0,
                  progress=False)
    info = {"train_crops": len(x), "background_crops": int(np.sum(y == BACKGROUND)),
            "final_train_loss": hist[-1]["loss"]}
    return model, classifier_from_localizer(model, v), info


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


def run_localization(images: np.ndarray, labels: np.ndarray, test_images: np.ndarray,
                     test_labels: np.ndarray, pretrained: dict, args: argparse.Namespace,
                     ) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray, Scenes]]:
    """The lecture's recipe on 64x64 one-digit scenes.

    ``pretrained``: the window classifier's variables; its conv layers (size-independent)
    start the 64x64 classifier, as an ImageNet-trained trunk starts a localizer.
    """
    side = 64
    kw = dict(size=(side, side), digits_per_scene=(1, 1), scale_range=(0.75, 1.75))
    train = make_scenes(images, labels, args.loc_train, seed=2, **kw)
    test = make_scenes(test_images, test_labels, args.loc_test, seed=3, **kw)
    y = train.labels[:, 0]
    # Boxes as (cx, cy, w, h) over the image size, standardised with training statistics: raw
    # [0, 1] corners (mean ~0.5, spread ~0.15) stall SGD on the zero-initialised head.
    box_scaler = TargetScaler.from_targets(boxes_to_cxcywh(train.boxes[:, 0] / side))
    t = box_scaler.encode(boxes_to_cxcywh(train.boxes[:, 0] / side))
    gt_boxes = jnp.asarray(test.boxes[:, 0])
    model = get_model("lenet5")

    def boxes_of(reg: np.ndarray) -> np.ndarray:
        """Head outputs ``[N, 4]`` -> boxes ``[N, 4]`` (x1, y1, x2, y2) in pixels."""
        return cxcywh_to_boxes(box_scaler.decode(reg)) * side

    def score(loc: Any, v: dict) -> dict[str, float]:
        pl, pb = predict(loc, v, test.images)
        boxes = jnp.asarray(boxes_of(pb))
        ok = localization_correct(jnp.asarray(pl), boxes, jnp.asarray(test.labels[:, 0]),
                                  gt_boxes)
        return {"top1_localization_accuracy": float(jnp.mean(ok)),
                "classification_accuracy": float(np.mean(pl == test.labels[:, 0])),
                "mean_iou": float(jnp.mean(paired_iou(boxes, gt_boxes)))}

    out: dict[str, Any] = {
        "scene_size": side, "digit_sides": [21, 49], "train_scenes": len(train.images),
        "test_scenes": len(test.images), "batch_size": 128,
        "classifier": {"steps": args.loc_classifier_steps, "learning_rate": LOC_LR,
                       "schedule": "cosine", "momentum": 0.9,
                       "conv_init": "window classifier (28x28 crops)"},
        "regressor": {"steps": args.loc_steps, "learning_rate": 0.01, "schedule": "constant",
                      "momentum": 0.9, "loss": "l2", "targets": "standardised (cx, cy, w, h)"},
        "joint": {"steps": args.loc_steps // 2, "learning_rate": 0.005, "schedule": "cosine",
                  "momentum": 0.9, "box_weight": 1.0}}
    loc = make_localizer(model, attach="features", hidden=(256,))
    v = loc.init(jax.random.key(0), jnp.zeros((1, side, side, 1)))
    # The conv stack starts from the window classifier's (its dense layers, sized for a 4x4
    # map and 11 classes, do not fit the 13x13 map of a 64x64 scene and are trained afresh).
    conv = {k: pretrained["params"][k] for k in v["params"]["backbone"]}
    v = {**v, "params": {**v["params"], "backbone": conv}}
    common = dict(batch_size=128, seed=0, progress=False)
    # Step 1: the classifier alone. Its first dense layer sees the whole 13x13x16 map, so it
    # must learn each digit at every position: many scenes (few repeats) and a decaying rate.
    v, _ = fit(loc, v, train.images, y, t, stage="classifier", steps=args.loc_classifier_steps,
               learning_rate=LOC_LR, schedule="cosine", **common)
    classifier = classifier_from_localizer(model, v)
    out["classifier_only_accuracy"] = score(loc, v)["classification_accuracy"]
    for attach in ("features", "classifier"):
        loc_a, va = localizer_from_classifier(model, classifier, (side, side, 1),
                                              key=jax.random.key(1), attach=attach,
                                              hidden=(256,))
        va, _ = fit(loc_a, va, train.images, y, t, stage="regressor", steps=args.loc_steps,
                    learning_rate=0.01, **common)
        out[f"frozen_classifier_head_after_{attach}"] = score(loc_a, va)
        if attach == "features":
            loc_f, vf = loc_a, va
    vj, _ = fit(loc_f, vf, train.images, y, t, stage="joint", steps=args.loc_steps // 2,
                learning_rate=0.005, schedule="cosine", **common)
    out["joint_finetune_head_after_features"] = score(loc_f, vj)
    # DeepPose-style: 3 keypoints (ink centroid, top, bottom) from the same frozen classifier,
    # standardised like the boxes.
    kp_train, kp_test = digit_keypoints(train) / side, digit_keypoints(test)
    kp_scaler = TargetScaler.from_targets(kp_train.reshape(len(kp_train), -1))
    loc_k, vk = localizer_from_classifier(model, classifier, (side, side, 1),
                                          key=jax.random.key(2), attach="features",
                                          hidden=(256,), num_outputs=6)
    vk, _ = fit(loc_k, vk, train.images, y, kp_scaler.encode(kp_train.reshape(len(kp_train), -1)),
                stage="regressor", steps=args.loc_steps, learning_rate=0.01, **common)
    _, pk = predict(loc_k, vk, test.images)
    pk = kp_scaler.decode(pk).reshape(-1, 3, 2) * side
    frame = test.boxes[:, 0, 2] - test.boxes[:, 0, 0]
    out["keypoints_pck_at_0.1_frame"] = float(pck(jnp.asarray(pk), jnp.asarray(kp_test),
                                                   jnp.asarray(frame)))
    pl, pb = predict(loc_f, vj, test.images[:8])
    return out, (pl, boxes_of(pb), test)


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
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    t_start, cpu_start = time.perf_counter(), time.process_time()

    train_x, train_y, train_desc = load_mnist("train")
    test_x, test_y, test_desc = load_mnist("test")
    model, variables, train_info = train_window_classifier(train_x, train_y, args)
    print(f"window classifier: {train_info} ({time.perf_counter() - t_start:.0f} s)",
          flush=True)
    test = make_scenes(test_x, test_y, args.test_scenes, size=(112, 112),
                       digits_per_scene=(1, 4), scale_range=(1.0, 2.0), seed=0)
    det, dets = run_detection(model, variables, test, args)
    print(json.dumps(det, indent=1), f"({time.perf_counter() - t_start:.0f} s)", flush=True)
    loc, loc_pred = run_localization(train_x, train_y, test_x, test_y, variables, args)
    print(json.dumps(loc, indent=1))
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
    (RESULTS / "mnist_scenes.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS}/mnist_scenes.json in {results['seconds_total']:.0f} s")


if __name__ == "__main__":
    main()
