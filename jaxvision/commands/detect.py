"""``jaxvision detect``: find objects in image files; PNGs with drawn boxes and a JSON out.

    jaxvision detect a.jpg b.png --workdir runs/faster_rcnn_bccd --out dets/
    jaxvision detect street.jpg --model fasterrcnn_resnet50_fpn \\
        --weights fasterrcnn_resnet50_fpn_coco-258fb6c6.pth --out dets/ --score-thresh 0.7

The model is a detection training workdir (``task.name='detection'``, e.g. from ``jaxvision
train --config faster_rcnn_voc``; its latest checkpoint; images go through the workdir
config's evaluation transform onto its canvas and the task's prediction, boxes mapped back to
the image's pixels) or a torchvision Faster R-CNN with its weights file (torchvision's
``GeneralizedRCNNTransform``: shorter side to ``min_size``, longer side at most ``max_size``,
ImageNet normalization; :func:`jaxvision.detection.detect`).

Only detections scoring at least ``--score-thresh`` (default 0.5) are drawn and written;
the detector's own post-processing threshold comes first (torchvision's ``box_score_thresh``,
0.05: with ``--model`` it is lowered to ``--score-thresh`` when that is lower).

For each image ``<stem>.*``, ``--out DIR`` receives ``<stem>_boxes.png`` (the image with its
boxes, class names and scores drawn); ``detections.json`` lists for every image its path,
size ``[H, W]`` and detections ``{"box": [x1, y1, x2, y2] (image pixels), "score", "label",
"name"}``, highest score first, with ``"classes"`` the names by label (0: the background).
``--json`` also prints one JSON line per image.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: A detector: [H, W, 3] uint8 image -> ``{"boxes": [K, 4] float32 (x1, y1, x2, y2) in the
#: image's pixels, "scores": [K] float32, "labels": [K] int}`` (K: the detections kept by the
#: model's post-processing, any order).
Detector = Callable[[np.ndarray], dict[str, np.ndarray]]

#: torchvision's ``box_score_thresh`` default: the post-processing threshold of its detectors.
_MODEL_SCORE_THRESH = 0.05


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect", help="find objects in images; PNGs with drawn boxes and a JSON of them",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="a detection training workdir (latest checkpoint)")
    src.add_argument("--model", help="a torchvision detector: fasterrcnn_resnet50_fpn, "
                                     "fasterrcnn_resnet50_fpn_v2")
    p.add_argument("--weights", help="with --model: its checkpoint (a torchvision .pth, one "
                                     "converted by `jaxvision convert`, an URL, or "
                                     "'torchvision' to download the COCO_V1 weights)")
    p.add_argument("--min-size", type=int, default=None,
                   help="the shorter side images are resized to (default: the model's, 800 "
                        "for torchvision's; a workdir's evaluation size)")
    p.add_argument("--max-size", type=int, default=None,
                   help="the cap on the longer side (default: the model's, 1333 for "
                        "torchvision's; a workdir's evaluation size)")
    p.add_argument("--frozen-bn-eps", type=float, default=None,
                   help="with --model fasterrcnn_resnet50_fpn: the epsilon of its frozen "
                        "BatchNorms (default: 0.0 for the published COCO_V1 file, as "
                        "torchvision loads it; else torchvision's 1e-5)")
    p.add_argument("--score-thresh", type=float, default=0.5,
                   help="draw and write only detections scoring at least this (default 0.5)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--json", action="store_true", help="print one JSON line per image")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxvision.commands import check_image_args
    from jaxvision.weights.transforms import open_image

    if args.model is not None and args.weights is None:
        raise ValueError(f"--model {args.model} needs --weights FILE (its checkpoint): random "
                         "weights detect nothing")
    if args.workdir is not None and (args.weights is not None
                                     or args.frozen_bn_eps is not None):
        raise ValueError("--weights and --frozen-bn-eps go with --model; a --workdir brings "
                         "its own checkpoint")
    if not 0.0 <= args.score_thresh <= 1.0:
        raise ValueError(f"--score-thresh must lie in [0, 1], got {args.score_thresh}")
    for flag, v in (("--min-size", args.min_size), ("--max-size", args.max_size)):
        if v is not None and v < 1:
            raise ValueError(f"{flag} must be positive, got {v}")
    check_image_args(args.images, "{stem}_boxes.png")

    if args.workdir is not None:
        detector, names, info = workdir_detector(args.workdir, args.min_size, args.max_size)
    else:
        detector, names, info = torchvision_detector(
            args.model, args.weights, args.min_size, args.max_size, args.frozen_bn_eps,
            min(_MODEL_SCORE_THRESH, args.score_thresh))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in args.images:
        image = np.asarray(open_image(path), np.uint8)
        dets = detector(image)
        res = {"image": path, **write_outputs(out, Path(path).stem, image, dets, names,
                                               args.score_thresh)}
        results.append(res)
        if args.json:
            print(json.dumps(res))
        else:
            h, w = res["size"]
            found = res["detections"]
            top = ", ".join(f"{d['name']} {d['score']:.2f}" for d in found[:5])
            more = f", ... ({len(found)} in all)" if len(found) > 5 else ""
            print(f"{path}: {h}x{w}, {len(found)} detection(s) >= {args.score_thresh}"
                  + (f": {top}{more}" if found else ""))
    (out / "detections.json").write_text(json.dumps(
        {**info, "score_thresh": args.score_thresh, "classes": names, "images": results},
        indent=1))
    return 0


def write_outputs(out: Path, stem: str, image: np.ndarray, dets: dict[str, np.ndarray],
                  names: list[str], score_thresh: float) -> dict[str, Any]:
    """Writes ``<stem>_boxes.png`` into ``out``; returns ``{"size": [H, W], "boxes_png":
    path, "detections": [{"box": [x1, y1, x2, y2], "score", "label", "name"}]}`` (scores at
    least ``score_thresh``, highest first).

    Args:
      image: [H, W, 3] uint8.
      dets: a :data:`Detector`'s output for ``image``.
      names: class names by label (``names[0]`` the background).
    """
    from PIL import Image

    from jaxvision.visualize import draw_boxes

    boxes = np.asarray(dets["boxes"], np.float32).reshape(-1, 4)
    scores = np.asarray(dets["scores"], np.float32).reshape(-1)
    labels = np.asarray(dets["labels"]).astype(np.int64).reshape(-1)
    keep = np.flatnonzero(scores >= score_thresh)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    bad = labels[(labels < 0) | (labels >= len(names))]
    if len(bad):  # a detector and its class list that disagree: a bug, not bad input
        raise RuntimeError(f"detect: label {int(bad[0])} outside the {len(names)} classes")
    png = out / f"{stem}_boxes.png"
    Image.fromarray(draw_boxes(image, boxes, labels, scores, class_names=names),
                    "RGB").save(png)
    found = [{"box": [round(float(v), 3) for v in b], "score": round(float(s), 6),
              "label": int(k), "name": names[k]}
             for b, s, k in zip(boxes, scores, labels, strict=True)]
    return {"size": list(image.shape[:2]), "boxes_png": str(png), "detections": found}


def workdir_detector(workdir: str, min_size: int | None = None, max_size: int | None = None
                     ) -> tuple[Detector, list[str], dict]:
    """``(detector, class names by label, info)`` of a detection training workdir's latest
    checkpoint: the config's evaluation transform (its resize, or ``min_size``/``max_size``)
    onto its canvas, grown to fit (multiples of 32) when an image resizes past it; the
    task's jitted prediction, boxes in the image's pixels. The names are the workdir's
    ``classes.json`` (label k names entry k - 1), else the labels' numbers."""
    import jax

    from jaxvision.commands import fitting_canvas, workdir_predictor
    from jaxvision.train import workdir as wd

    config, state, step, transform, predict = workdir_predictor(
        workdir, "detection", "e.g. `jaxvision train --config faster_rcnn_voc`")
    c = int(config.model.num_classes)
    if min_size is not None or max_size is not None:
        transform = dataclasses.replace(
            transform, min_size=transform.min_size if min_size is None else int(min_size),
            max_size=transform.max_size if max_size is None else int(max_size))

    def detect(image: np.ndarray) -> dict[str, np.ndarray]:
        # The FPN halves its maps five times: canvases in multiples of 32.
        fit = fitting_canvas(transform, image.shape[:2], 32)
        example = fit({"image": image})
        batch = {k: example[k][None] for k in ("image", "image_size", "orig_size")}
        pred = jax.device_get(predict(state, batch))
        valid = np.asarray(pred["valid"][0], bool)
        return {k: np.asarray(pred[k][0])[valid] for k in ("boxes", "scores", "labels")}

    saved = wd.read_classes(workdir, c - 1)
    if saved == [str(i) for i in range(c - 1)]:  # no names saved: number the labels
        saved = [str(k) for k in range(1, c)]
    info = {"workdir": str(workdir), "step": int(step), "model": config.model.name,
            "min_size": int(transform.min_size), "max_size": transform.max_size}
    return detect, ["background", *saved], info


def torchvision_detector(model: str, weights: str, min_size: int | None = None,
                         max_size: int | None = None, frozen_bn_eps: float | None = None,
                         score_thresh: float = _MODEL_SCORE_THRESH,
                         ) -> tuple[Detector, list[str], dict]:
    """``(detector, class names by label, info)`` of a torchvision Faster R-CNN and its
    weights file (read safely by :func:`jaxvision.weights.load`; ``"torchvision"``: the
    published COCO_V1 file): :func:`jaxvision.detection.detect` with the builder's
    ``min_size``/``max_size`` unless given and ``box_score_thresh=score_thresh``. COCO's
    category names for 91 classes (torchvision's ``_COCO_CATEGORIES``), else the labels'
    numbers."""
    from jaxvision.detection import detect
    from jaxvision.models import get_model
    from jaxvision.weights import load
    from jaxvision.weights.hub import COCO_CATEGORIES, DETECTION_WEIGHTS

    if model not in DETECTION_WEIGHTS:
        raise ValueError(f"--model {model!r} is not a torchvision detector; known: "
                         f"{', '.join(DETECTION_WEIGHTS)}")
    preset = DETECTION_WEIGHTS[model]
    published = weights == "torchvision" or Path(weights).name == Path(preset.url).name
    config: dict[str, Any] = {}
    if model == "fasterrcnn_resnet50_fpn":
        # torchvision sets the eps only when it loads the published file itself
        # (overwrite_eps); a state dict loaded by hand keeps FrozenBatchNorm2d's 1e-5.
        if frozen_bn_eps is not None:
            config["frozen_bn_eps"] = float(frozen_bn_eps)
        elif published and preset.frozen_bn_eps is not None:
            config["frozen_bn_eps"] = preset.frozen_bn_eps
    elif frozen_bn_eps is not None:
        raise ValueError(f"--frozen-bn-eps goes with fasterrcnn_resnet50_fpn; {model} has "
                         "trainable BatchNorms")
    variables = load(model, preset.url if weights == "torchvision" else weights)
    c = int(np.shape(variables["params"]["roi_heads"]["box_predictor"]["cls_score"]["bias"])[0])
    if min_size is not None:
        config["min_size"] = int(min_size)
    if max_size is not None:
        config["max_size"] = int(max_size)
    net = get_model(model, num_classes=c, box_score_thresh=float(score_thresh), **config)

    def run_one(image: np.ndarray) -> dict[str, np.ndarray]:
        return detect(net, variables, [image.astype(np.float32) / np.float32(255.0)])[0]

    names = list(COCO_CATEGORIES) if c == len(COCO_CATEGORIES) else \
        ["background", *(str(k) for k in range(1, c))]
    info = {"model": model, "weights": str(weights), "min_size": net.min_size,
            "max_size": net.max_size,
            **({"frozen_bn_eps": config["frozen_bn_eps"]} if "frozen_bn_eps" in config else {})}
    return run_one, names, info
