"""Predict on image files with a trained workdir's checkpoint (``jaxvision predict``), for
any task: the top classes, plus whatever else the task predicts (a localizer's box)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxvision.train import checkpoint, sharding
from jaxvision.train import workdir as wd
from jaxvision.train.config import ensure_valid
from jaxvision.train.loop import abstract_state
from jaxvision.train.steps import jit_predict_step
from jaxvision.train.tasks import get_task
from jaxvision.weights.transforms import load_image

# Above this input side we resize the shorter side to side * 256 / 224 and center-crop
# (torchvision's ImageNet evaluation); small-image nets (MNIST, CIFAR) take the whole
# image resized.
_CROP_ABOVE = 64


def class_names(workdir: str | Path, num_classes: int) -> list[str]:
    """Names saved by training in the workdir, else the indices as strings."""
    return wd.read_classes(workdir, num_classes)


def predict_files(config: ml_collections.ConfigDict, workdir: str | Path,
                  paths: list[str], step: int | None = None,
                  top_k: int = 5) -> tuple[int, list[dict[str, Any]]]:
    """``(checkpoint step, one dict per image)``: ``"top"``, ``[(class name, probability)]
    * top_k`` (tasks that predict classes), and the task's other per-image predictions as
    lists in input pixels (localization: ``"boxes"`` [x1, y1, x2, y2] or ``"keypoints"``;
    the top-1 ``"label"`` is dropped, it is ``top[0]``)."""
    config = ensure_valid(config)
    task = get_task(config)
    mesh = sharding.make_mesh(jax.local_devices()[:1])
    rep = sharding.replicated(mesh)
    model, shapes, shape = abstract_state(config, wd.read_input_shape(workdir))
    state, restored_step = checkpoint.restore_params(workdir, shapes, rep, step)
    h, w, c = shape
    if c not in (1, 3):
        raise ValueError(f"cannot load images for {c}-channel inputs (expected 1 or 3)")
    resize = round(max(h, w) * 256 / 224) if max(h, w) > _CROP_ABOVE else None
    images = np.stack([load_image(p, (h, w), resize_size=resize, mode="L" if c == 1 else "RGB")
                       for p in paths])
    preds = jax.device_get(jit_predict_step(task, model, config, shape[:2])(
        state, {"image": images}))
    out: list[dict[str, Any]] = [{} for _ in paths]
    if "log_probs" in preds:
        probs = np.exp(np.asarray(preds["log_probs"], np.float64))
        names = class_names(workdir, probs.shape[-1])
        k = min(top_k, probs.shape[-1])
        for o, p in zip(out, probs, strict=True):
            order = np.argsort(-p, kind="stable")[:k]
            o["top"] = [(names[i], float(p[i])) for i in order]
    for key, value in preds.items():
        if key in ("log_probs", "label"):
            continue
        for o, v in zip(out, np.asarray(value), strict=True):
            o[key] = v.tolist()
    return restored_step, out
