"""Classify image files with a trained workdir's checkpoint (``jaxvision predict``)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
import numpy as np
from PIL import Image

from jaxvision.train import checkpoint, sharding
from jaxvision.train.config import validate
from jaxvision.train.loop import abstract_state
from jaxvision.train.steps import predict_step

# Above this input side we resize the shorter side to side * 256 / 224 and center-crop
# (the ImageNet evaluation convention); small-image nets (MNIST, CIFAR) take the whole
# image resized.
_CROP_ABOVE = 64


def load_image(path: str | Path, shape: tuple[int, int, int]) -> np.ndarray:
    """Reads ``path`` into uint8 ``[h, w, c]`` for a network input of ``shape`` (h, w, c):
    grey for ``c == 1``, RGB for 3; resized as described at :data:`_CROP_ABOVE`."""
    h, w, c = shape
    if c not in (1, 3):
        raise ValueError(f"cannot load images for {c}-channel inputs (expected 1 or 3)")
    try:
        img = Image.open(path)
        img.load()
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from None
    img = img.convert("L" if c == 1 else "RGB")
    if max(h, w) <= _CROP_ABOVE:
        img = img.resize((w, h), Image.BILINEAR)
    else:
        scale = max(h, w) * 256 / 224 / min(img.size)
        img = img.resize((max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale))),
                         Image.BILINEAR)
        left, top = (img.size[0] - w) // 2, (img.size[1] - h) // 2
        img = img.crop((left, top, left + w, top + h))
    arr = np.asarray(img, np.uint8)
    return arr[..., None] if c == 1 else arr


def class_names(workdir: str | Path, num_classes: int) -> list[str]:
    """Names saved by training in ``workdir/classes.json``, else the indices as strings."""
    path = Path(workdir) / "classes.json"
    if path.is_file():
        names = json.loads(path.read_text())
        if len(names) == num_classes:
            return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


def predict_files(config: ml_collections.ConfigDict, workdir: str | Path,
                  paths: list[str], step: int | None = None,
                  top_k: int = 5) -> tuple[int, list[list[tuple[str, float]]]]:
    """``(checkpoint step, per image [(class name, probability)] * top_k)``."""
    config = validate(config)
    mesh = sharding.make_mesh(jax.local_devices()[:1])
    rep = sharding.replicated(mesh)
    model, shapes, shape = abstract_state(config)
    state, restored_step = checkpoint.restore_params(workdir, shapes, rep, step)
    images = np.stack([load_image(p, shape) for p in paths])
    probs = np.asarray(jax.jit(lambda s, x: predict_step(model, config, shape[:2], s, x))(
        state, images))
    names = class_names(workdir, probs.shape[-1])
    k = min(top_k, probs.shape[-1])
    out: list[list[tuple[str, float]]] = []
    for p in probs:
        order = np.argsort(-p, kind="stable")[:k]
        out.append([(names[i], float(p[i])) for i in order])
    return restored_step, out


