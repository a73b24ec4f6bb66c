"""``jaxvision segment``: label every pixel of image files; coloured masks and overlays out.

    jaxvision segment street.jpg --workdir runs/segnet_camvid --out seg/
    jaxvision segment a.jpg b.png --model fcn_resnet50 --weights fcn_resnet50_coco-1167a1af.pth \\
        --out seg/
    jaxvision segment a.jpg --model deeplabv3_resnet50 --weights torchvision --out seg/

The model is a segmentation training workdir (its latest checkpoint; images go through the
workdir config's evaluation transform onto its canvas, and the predicted class ids are
mapped back to the image's size, nearest) or a torchvision FCN/DeepLabV3 with its weights
file (torchvision's preset: shorter side resized to 520, or ``--size``, ImageNet
normalization; the logits upsampled bilinearly to the image's size, then the argmax).

For each image ``<stem>.*``, ``--out DIR`` receives ``<stem>_labels.png`` (the class ids,
8-bit grey), ``<stem>_mask.png`` (the ids coloured: VOC's palette for the VOC-labelled
torchvision weights, else :func:`jaxvision.visualize.class_colors`) and
``<stem>_overlay.png`` (the colours over the image); ``summary.json`` lists every image's
size and the share of its pixels each class got (one JSON line per image with ``--json``).
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: A segmenter: [H, W, 3] uint8 image -> [H, W] int32 class ids at the image's size.
Segmenter = Callable[[np.ndarray], np.ndarray]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "segment", help="label every pixel of images; coloured masks and overlays",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="a segmentation training workdir (latest checkpoint)")
    src.add_argument("--model", help="a torchvision segmentation model: fcn_resnet50, "
                                     "fcn_resnet101, deeplabv3_resnet50, deeplabv3_resnet101")
    p.add_argument("--weights", help="with --model: its checkpoint (a torchvision .pth, one "
                                     "converted by `jaxvision convert`, an URL, or "
                                     "'torchvision' to download the COCO_WITH_VOC_LABELS_V1 "
                                     "weights)")
    p.add_argument("--size", type=int, default=None,
                   help="with --model: the shorter side images are resized to (default: the "
                        "weights' preset, 520)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--alpha", type=float, default=0.5, help="colour weight of the overlays")
    p.add_argument("--json", action="store_true", help="print one JSON line per image")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxvision.commands import check_image_args
    from jaxvision.weights.transforms import open_image

    if args.model is not None and args.weights is None:
        raise ValueError(f"--model {args.model} needs --weights FILE (its checkpoint): random "
                         "weights give meaningless masks")
    if args.workdir is not None and (args.weights is not None or args.size is not None):
        raise ValueError("--weights and --size go with --model; a --workdir brings its own "
                         "checkpoint and transform")
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must lie in [0, 1], got {args.alpha}")
    check_image_args(args.images, "{stem}_*.png")

    if args.workdir is not None:
        segmenter, names, palette, info = workdir_segmenter(args.workdir)
    else:
        segmenter, names, palette, info = torchvision_segmenter(args.model, args.weights,
                                                                args.size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in args.images:
        image = np.asarray(open_image(path), np.uint8)
        labels = segmenter(image)
        res = {"image": path, **write_outputs(out, Path(path).stem, image, labels, names,
                                               palette, args.alpha)}
        results.append(res)
        if args.json:
            print(json.dumps(res))
        else:
            top = sorted(res["class_shares"].items(), key=lambda kv: -kv[1])[:5]
            h, w = res["size"]
            print(f"{path}: {h}x{w}, " + ", ".join(f"{n} {s:.3f}" for n, s in top))
    (out / "summary.json").write_text(json.dumps({**info, "classes": names,
                                                  "images": results}, indent=1))
    return 0


def write_outputs(out: Path, stem: str, image: np.ndarray, labels: np.ndarray,
                  names: list[str], palette: np.ndarray, alpha: float) -> dict[str, Any]:
    """Writes ``<stem>_labels.png``, ``_mask.png``, ``_overlay.png`` into ``out``; returns
    ``{"size": [H, W], "labels", "mask", "overlay": paths, "class_shares": {name: share of
    the pixels}}`` (classes with a pixel, most first).

    Args:
      image: [H, W, 3] uint8.
      labels: [H, W] int class ids in ``0..len(names)-1``.
    """
    from PIL import Image

    from jaxvision.visualize import colorize, overlay

    c = len(names)
    color = colorize(labels, c, palette=palette)
    files = {"labels": out / f"{stem}_labels.png", "mask": out / f"{stem}_mask.png",
             "overlay": out / f"{stem}_overlay.png"}
    Image.fromarray(labels.astype(np.uint8), "L").save(files["labels"])
    Image.fromarray(color, "RGB").save(files["mask"])
    Image.fromarray(overlay(image, color, alpha), "RGB").save(files["overlay"])
    counts = np.bincount(labels.ravel(), minlength=c)
    order = np.argsort(-counts, kind="stable")
    shares = {names[i]: round(float(counts[i] / labels.size), 6) for i in order if counts[i]}
    return {"size": list(labels.shape), **{k: str(v) for k, v in files.items()},
            "class_shares": shares}


def workdir_segmenter(workdir: str) -> tuple[Segmenter, list[str], np.ndarray, dict]:
    """``(segmenter, class names, palette, info)`` of a segmentation training workdir's
    latest checkpoint: the config's evaluation transform onto its canvas, the task's jitted
    prediction (on a canvas grown to fit when an image resizes past the workdir's), the ids
    of the resized image's region mapped back to the image's size by torch's
    ``"nearest"``."""
    import jax

    from jaxvision.commands import fitting_canvas, workdir_predictor
    from jaxvision.data.dense_augment import resize_nearest
    from jaxvision.train import workdir as wd
    from jaxvision.visualize import class_colors

    config, state, step, transform, predict = workdir_predictor(
        workdir, "segmentation", "e.g. `jaxvision train --config segnet_camvid`")
    c = int(config.model.num_classes)
    if c > 256:
        raise ValueError(f"{workdir}: {c} classes do not fit the 8-bit labels PNG")

    def segment(image: np.ndarray) -> np.ndarray:
        fit = fitting_canvas(transform, image.shape[:2])
        example = fit({"image": image})
        nh, nw = (int(v) for v in example["image_size"])
        label = np.asarray(jax.device_get(predict(state, {"image": example["image"][None]}))
                           ["label"][0, :nh, :nw])
        return resize_nearest(label, image.shape[:2]).astype(np.int32)

    info = {"workdir": str(workdir), "step": int(step), "model": config.model.name}
    return segment, wd.read_classes(workdir, c), class_colors(c), info


def torchvision_segmenter(model: str, weights: str, size: int | None
                          ) -> tuple[Segmenter, list[str], np.ndarray, dict]:
    """``(segmenter, class names, palette, info)`` of a torchvision FCN/DeepLabV3 and its
    weights file (read safely by :func:`jaxvision.weights.load`): torchvision's
    ``SemanticSegmentation`` preset (shorter side to ``size``, default 520, bilinear;
    ImageNet normalization), the ``"out"`` logits upsampled bilinearly to the image's size,
    the argmax. VOC's palette and categories for 21 classes."""
    import jax
    import jax.numpy as jnp
    from PIL import Image

    from jaxvision.models import get_model
    from jaxvision.segmentation.torchvision_models import upsample_bilinear
    from jaxvision.visualize import class_colors, voc_palette
    from jaxvision.weights import load
    from jaxvision.weights.hub import SEGMENTATION_WEIGHTS, VOC_CATEGORIES
    from jaxvision.weights.transforms import resize_shorter_side

    if model not in SEGMENTATION_WEIGHTS:
        raise ValueError(f"--model {model!r} is not a torchvision segmentation model; known: "
                         f"{', '.join(SEGMENTATION_WEIGHTS)}")
    preset = SEGMENTATION_WEIGHTS[model]
    side = preset.resize_size if size is None else int(size)
    if side < 1:
        raise ValueError(f"--size must be positive, got {size}")
    variables = load(model, None if weights == "torchvision" else weights)
    # The auxiliary head does not change "out": leave it out of inference.
    variables = {col: {k: v for k, v in tree.items() if k != "aux_classifier"}
                 for col, tree in variables.items()}
    c = int(variables["params"]["classifier"]["4"]["bias"].shape[0])
    if c > 256:
        raise ValueError(f"{weights}: {c} classes do not fit the 8-bit labels PNG")
    net = get_model(model, num_classes=c, aux_loss=False)
    mean, std = np.asarray(preset.mean, np.float32), np.asarray(preset.std, np.float32)

    # One compile per (input, output) size.
    @functools.partial(jax.jit, static_argnames="size")
    def labels_at(variables: dict, x: jax.Array, size: tuple[int, int]) -> jax.Array:
        logits = net.apply(variables, x, train=False)["out"]
        return jnp.argmax(upsample_bilinear(logits, size), axis=-1)[0].astype(jnp.int32)

    def segment(image: np.ndarray) -> np.ndarray:
        resized = resize_shorter_side(Image.fromarray(image, "RGB"), side)
        x = (np.asarray(resized, np.float32) / np.float32(255.0) - mean) / std
        return np.asarray(labels_at(variables, x[None], size=image.shape[:2]))

    if c == len(VOC_CATEGORIES):
        names, palette = list(VOC_CATEGORIES), voc_palette(c)
    else:
        names, palette = [str(i) for i in range(c)], class_colors(c)
    info = {"model": model, "weights": str(weights), "size": side}
    return segment, names, palette, info
