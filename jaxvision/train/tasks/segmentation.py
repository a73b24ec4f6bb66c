"""Semantic segmentation: per-pixel cross-entropy, confusion-matrix scores, class-id maps.

Examples are put on a fixed canvas on the host (``dense.*``, :mod:`jaxvision.data.dense_augment`,
wired by :func:`jaxvision.train.input_pipeline.dense_transform`): ``image`` uint8 [B, Hc, Wc,
3] and ``mask`` uint8 [B, Hc, Wc] (class ids, ``data.ignore_index`` on void and padding
pixels). The model maps normalized images to logits [B, Hc, Wc, C], or to a dict ``{"out",
"aux"}`` of them (torchvision's FCN/DeepLabV3 with ``aux_loss``), whose auxiliary loss is
weighted by ``segmentation.aux_weight``. The loss is ``torch.nn.CrossEntropyLoss(weight,
ignore_index)``'s: the weighted mean over the counted pixels, with optional SegNet
median-frequency weights (``segmentation.class_weights='median_frequency'``), computed once on
the host from the training split's labels.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvision.data import VALID
from jaxvision.segmentation.balancing import median_frequency_weights
from jaxvision.train.evaluators.base import Evaluator
from jaxvision.train.evaluators.segmentation import SegmentationConfusion
from jaxvision.train.preprocess import normalize
from jaxvision.train.tasks.base import Batch, Task, Variables, moving_augmentations
from jaxvision.train.tasks.classification import build_classifier

#: The metrics the task's evaluator writes that can rank checkpoints.
METRICS = ("eval_miou", "eval_pixel_acc", "eval_class_acc")


def pixel_cross_entropy(logits: jax.Array, target: jax.Array, ignore_index: int | None = 255,
                        valid: jax.Array | None = None,
                        class_weights: jax.Array | None = None) -> jax.Array:
    """``torch.nn.CrossEntropyLoss(weight=class_weights, ignore_index=ignore_index)`` over
    pixels, in float32.

    Args:
      logits: [B, H, W, C] any float dtype.
      target: [B, H, W] integer class ids; pixels equal to ``ignore_index`` or outside
        ``0..C-1`` (e.g. a canvas's padding) are not counted.
      valid: [B] bool, False on the loader's padding rows (not counted); None = all rows.
      class_weights: [C] float, the weight of each pixel's true class; None = 1.
    Returns:
      [] float32: ``sum(w[t] * -log p[t]) / sum(w[t])`` over the counted pixels (0 when none).
    """
    if logits.ndim != 4 or logits.shape[:3] != target.shape:
        raise ValueError(f"pixel_cross_entropy: logits must be [B, H, W, C] and target [B, H, "
                         f"W] of the same B, H, W; got {logits.shape} and {target.shape}")
    c = logits.shape[-1]
    t = target.astype(jnp.int32)
    keep = (t >= 0) & (t < c)
    if ignore_index is not None:
        keep &= t != ignore_index
    if valid is not None:
        keep &= valid.astype(bool)[:, None, None]
    safe = jnp.where(keep, t, 0)
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_p, safe[..., None], axis=-1)[..., 0]
    w = keep.astype(jnp.float32)
    if class_weights is not None:
        w = w * jnp.asarray(class_weights, jnp.float32)[safe]
    # where, not w * nll: a masked pixel's nll may be inf, and 0 * inf is NaN.
    total = jnp.sum(jnp.where(keep, w * nll, 0.0))
    return total / jnp.maximum(jnp.sum(w), jnp.finfo(jnp.float32).tiny)


def split_outputs(out: Any) -> tuple[jax.Array, jax.Array | None]:
    """``(logits, aux_logits or None)`` of a model output: logits [B, H, W, C], or a dict
    ``{"out": logits, "aux": logits}`` (``"aux"`` optional)."""
    if isinstance(out, dict) or hasattr(out, "keys"):
        if "out" not in out:
            raise ValueError(f"segmentation: a model returning a dict must give 'out' (and "
                             f"optionally 'aux'); got keys {sorted(out)}")
        return out["out"], out.get("aux")
    return out, None


_WEIGHTS_CACHE: dict[tuple, np.ndarray] = {}


def class_weights(config: ml_collections.ConfigDict) -> np.ndarray | None:
    """[C] float32 loss weights of ``segmentation.class_weights``, None for uniform.

    ``'median_frequency'`` reads every label of the training split of ``config.data`` once
    (cached per data set) and applies
    :func:`jaxvision.segmentation.balancing.median_frequency_weights`.
    """
    if config.segmentation.class_weights is None:
        return None
    from jaxvision.train import input_pipeline

    d = config.data
    key = (d.source, d.root, d.train_split, config.model.num_classes, d.ignore_index,
           tuple(d.classes) if d.classes else None)
    if key not in _WEIGHTS_CACHE:
        source = input_pipeline.make_source(config, d.train_split)
        masks = (source[i]["mask"] for i in range(len(source)))
        weights = median_frequency_weights(masks, config.model.num_classes, d.ignore_index)
        if jax.process_index() == 0:
            print(f"segmentation: median-frequency class weights of {len(source)} "
                  f"{d.train_split} labels: {[round(float(w), 4) for w in weights]}", flush=True)
        _WEIGHTS_CACHE[key] = weights
    return _WEIGHTS_CACHE[key]


def class_names(config: ml_collections.ConfigDict) -> list[str] | None:
    """Class names for the per-class metrics: ``data.classes``, else a segmentation
    folder's ``classes.txt`` (the ``ignore_index`` line left out), else None (ids)."""
    d, c = config.data, config.model.num_classes
    if d.classes:
        names = [str(n) for n in d.classes]
    elif d.source == "segmentation_folder" and d.root:
        from pathlib import Path

        from jaxvision.data.segmentation import read_class_file

        path = Path(d.root) / "classes.txt"
        if not path.is_file():
            return None
        by_id = read_class_file(path)
        by_id.pop(int(d.ignore_index), None)
        names = [by_id.get(k, str(k)) for k in range(c)]
    else:
        return None
    return names if len(names) == c else None


class Segmentation(Task):
    """``batch``: ``image`` [B, Hc, Wc, 3] uint8, ``mask`` [B, Hc, Wc] uint8. Predictions:
    ``label`` [B, Hc, Wc] int32 (argmax class ids)."""

    name = "segmentation"

    def fields(self, config: ml_collections.ConfigDict) -> tuple[str, ...]:
        return ("image", "mask")

    def check_config(self, config: ml_collections.ConfigDict) -> None:
        from jaxvision.train.config import ConfigError

        moving = moving_augmentations(config, pca_noise=True)
        if moving:
            raise ConfigError(f"task.name='segmentation' cannot use {', '.join(moving)} (on "
                              "device, the image would move without its mask); turn it off "
                              "and use the dense.* keys (flip, scale_range, crop)")
        if config.dense.canvas is None:
            raise ConfigError("task.name='segmentation' needs dense.canvas=[H, W], the fixed "
                              "size every example is put on (e.g. [360, 480] for CamVid)")
        if config.data.image_size is not None:
            raise ConfigError("task.name='segmentation' takes its input size from "
                              "dense.canvas; set data.image_size=None")
        ignore, c = config.data.ignore_index, config.model.num_classes
        if not c <= ignore <= 255:
            raise ConfigError(f"data.ignore_index={ignore} must lie in {c}..255: outside the "
                              f"class ids 0..{c - 1} (model.num_classes={c}) and within the "
                              "uint8 masks")
        ck = config.checkpoint
        if ck.keep_best > 0 and ck.best_metric not in METRICS:
            raise ConfigError(f"checkpoint.best_metric={ck.best_metric!r} is not written by "
                              f"task.name='segmentation'; use one of {', '.join(METRICS)} "
                              "(or checkpoint.keep_best=0)")
        if config.segmentation.class_weights is not None and not config.data.root:
            raise ConfigError("segmentation.class_weights='median_frequency' reads the "
                              "training labels of data.source/data.root; set data.root")

    def build_model(self, config: ml_collections.ConfigDict) -> nn.Module:
        return build_classifier(config)

    def loss(self, model: nn.Module, config: ml_collections.ConfigDict, size: tuple[int, int],
             variables: Variables, batch: Batch, aug_key: jax.Array, dropout_key: jax.Array,
             ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Variables]]:
        images, mask, valid = batch["image"], batch["mask"], batch[VALID]
        out, updates = model.apply(variables, normalize(config, images), train=True,
                                   mutable=["batch_stats"], rngs={"dropout": dropout_key})
        logits, aux = split_outputs(out)
        ignore = config.data.ignore_index
        weights = class_weights(config)
        ce = pixel_cross_entropy(logits, mask, ignore, valid, weights)
        loss, metrics = ce, {"ce": ce}
        if aux is not None and config.segmentation.aux_weight:
            aux_ce = pixel_cross_entropy(aux, mask, ignore, valid, weights)
            loss = loss + config.segmentation.aux_weight * aux_ce
            metrics["aux_ce"] = aux_ce
        t = mask.astype(jnp.int32)
        counted = (t != ignore) & (t < logits.shape[-1]) & valid.astype(bool)[:, None, None]
        right = counted & (jnp.argmax(logits, axis=-1) == t)
        metrics["pixel_acc"] = jnp.sum(right) / jnp.maximum(jnp.sum(counted), 1)
        return loss, (metrics, updates)

    def predict(self, model: nn.Module, config: ml_collections.ConfigDict,
                size: tuple[int, int], variables: Variables, batch: Batch,
                ) -> dict[str, jax.Array]:
        out = model.apply(variables, normalize(config, batch["image"]), train=False)
        logits, _ = split_outputs(out)
        return {"label": jnp.argmax(logits, axis=-1).astype(jnp.int32)}

    def evaluators(self, config: ml_collections.ConfigDict) -> list[Evaluator]:
        return [SegmentationConfusion(config.model.num_classes, config.data.ignore_index,
                                      class_names(config))]

    def images(self, config: ml_collections.ConfigDict, batch: dict[str, np.ndarray],
               predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """``{"segmentation": [K, T + Hc, 3 Wc + 8, 3] uint8}``: image | true mask |
        predicted mask (coloured overlays) of the valid rows given."""
        from jaxvision.visualize import segmentation_panel

        rows = np.flatnonzero(np.asarray(batch[VALID], bool))
        if not len(rows):
            return None
        c, ignore = config.model.num_classes, config.data.ignore_index
        return {"segmentation": np.stack([
            segmentation_panel(batch["image"][i], predictions["label"][i], c,
                               truth=batch["mask"][i], ignore_index=ignore) for i in rows])}

    def describe(self, m: dict[str, float], split: str) -> str:
        return (f"{split} mIoU {m['eval_miou']:.4f}, global pixel accuracy "
                f"{m['eval_pixel_acc']:.4f}, class-average accuracy {m['eval_class_acc']:.4f} "
                f"over {int(m['eval_pixels'])} pixels")

    def progress(self, m: dict[str, float]) -> str:
        return (f"eval mIoU {m['eval_miou']:.4f}, pixel acc {m['eval_pixel_acc']:.4f}, "
                f"class acc {m['eval_class_acc']:.4f}")
