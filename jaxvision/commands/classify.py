"""``jaxvision classify``: top-5 ImageNet classes of photos with pretrained weights.

    jaxvision classify photo.jpg --model resnet50 --weights resnet50-0676ba61.pth
    jaxvision classify a.jpg b.png --model vgg16 --weights vgg16.safetensors --top-k 3
    jaxvision classify photo.jpg --model resnet50 --weights torchvision   # download

Weights are required: a classifier with random weights prints meaningless classes, so
without ``--weights`` the command refuses (``--random-weights`` runs anyway, for smoke
tests, and says so on every line). Images get the preprocessing of the torchvision
weights (resize 256, center crop 224, ImageNet normalization; 342/299 for inception_v3).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RANDOM_WARNING = ("WARNING: random weights (--random-weights): these classes are "
                  "meaningless")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "classify", help="top-5 ImageNet classes of images with pretrained weights",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--model", default="resnet50", help="zoo model name (default resnet50)")
    p.add_argument("--weights", default=None,
                   help="checkpoint: a torchvision .pth, a converted .safetensors/.msgpack, "
                        "an URL, or 'torchvision' to download the published weights")
    p.add_argument("--random-weights", action="store_true",
                   help="run with random weights anyway (results are meaningless)")
    p.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON line per image")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from jaxvision.models import get_model_builder
    from jaxvision.weights import WEIGHTS, ImageClassificationPreset, imagenet_classes, load

    if args.weights is None and not args.random_weights:
        raise ValueError(
            "no --weights given. With random weights the predicted classes are "
            "meaningless, so classify refuses. Pass --weights PATH (a torchvision .pth file, "
            "or one converted by `jaxvision convert`), --weights URL, or --weights "
            "torchvision to download the published ImageNet weights (needs internet); "
            "--random-weights runs anyway for testing.")
    if args.weights is not None and args.random_weights:
        raise ValueError("--weights and --random-weights exclude each other")
    try:
        builder = get_model_builder(args.model)
    except KeyError as e:  # an unknown name: the registry's message lists the known ones
        raise ValueError(e.args[0]) from None
    info = WEIGHTS.get(args.model)
    config = dict(info.config) if info is not None else {}
    module = builder(**config)
    shape = getattr(module, "default_input_shape", (224, 224, 3))
    if shape[-1] != 3:
        raise ValueError(f"{args.model} takes {shape[-1]}-channel images; classify is for "
                         "RGB ImageNet classifiers")
    preset = info.transforms() if info is not None else ImageClassificationPreset(
        crop_size=shape[0], resize_size=round(shape[0] * 256 / 224))
    images = preset.batch(Path(p) for p in args.images)
    if args.random_weights:
        print(RANDOM_WARNING, file=sys.stderr)
        variables = jax.jit(lambda x: module.init(jax.random.key(0), x, train=False))(
            images[:1])
    else:
        source = None if args.weights == "torchvision" else args.weights
        try:
            variables = load(args.model, source, **config)
        except KeyError as e:  # no published weights for this model
            raise ValueError(e.args[0]) from None
    logits = jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, images)
    probs = np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1))
    n_classes = probs.shape[-1]
    names = imagenet_classes() if n_classes == 1000 else None
    k = max(1, min(args.top_k, n_classes))
    for path, p in zip(args.images, probs, strict=True):
        top = np.argsort(-p, kind="stable")[:k]
        labels = [names[i] if names else f"class {i}" for i in top]
        if args.json:
            print(json.dumps({"image": path, "model": args.model,
                              "random_weights": bool(args.random_weights),
                              "top": [{"index": int(i), "label": lab, "prob": float(p[i])}
                                      for i, lab in zip(top, labels, strict=True)]}))
            continue
        print(f"{path}" + ("  [RANDOM WEIGHTS: meaningless]" if args.random_weights else ""))
        for rank, (i, lab) in enumerate(zip(top, labels, strict=True), 1):
            print(f"  {rank}. {100 * p[i]:6.2f}%  {lab} ({i})")
    return 0
