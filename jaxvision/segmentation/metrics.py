"""Semantic segmentation metrics: a confusion matrix counted inside ``jit`` and the scores
torchvision's ``references/segmentation`` derives from it.

:func:`confusion_matrix` is pure ``jnp`` with static shapes, so a jitted eval step returns one
``[C, C]`` count per batch (summed over the device mesh by XLA like any reduction) and the
host only adds them up (:class:`ConfusionMatrix`, int64). :func:`segmentation_metrics` then
gives, as torchvision's ``utils.ConfusionMatrix.compute`` (rows = truth, columns =
prediction):

- ``eval_pixel_acc``: ``acc_global = trace / total``, the global pixel accuracy;
- ``eval_class_acc``: the mean over classes of ``acc = diag / row sum`` (per-class recall);
- ``eval_miou``: the mean over classes of ``iu = diag / (row + column - diag)``;
- ``eval_iou/<class>`` and ``eval_acc/<class>``: the per-class values.

One deliberate difference: torchvision's reference averages ``iu`` over every class with
``Tensor.mean``, so one class absent from both prediction and truth (IoU 0/0 = NaN) makes its
mean IoU NaN. Here such a class is reported as NaN and left out of the means (the mean is over
the classes present in the prediction or the truth), as the SegNet and FCN evaluations
average over the classes present. Likewise a class absent from the truth has no accuracy
(NaN) and is left out of ``eval_class_acc``. A class predicted but absent from the truth has
IoU 0 and counts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ConfusionMatrix", "confusion_matrix", "segmentation_metrics"]


def confusion_matrix(pred: Any, target: Any, num_classes: int, ignore_index: int | None = 255,
                     valid: Any = None) -> jax.Array:
    """Pixel counts by (true class, predicted class), jittable (``num_classes`` and
    ``ignore_index`` static).

    Pixels whose target is ``ignore_index`` or outside ``0..C-1`` are not counted (as
    torchvision's reference, which keeps ``0 <= target < C``), nor are the pixels of padded
    examples (``valid`` False). Predictions must lie in ``0..C-1`` (an argmax does): on concrete
    inputs one outside raises; under ``jit``, where nothing can raise, such pixels are dropped.

    Args:
      pred: ``[B, H, W] int``, predicted class ids (e.g. ``logits.argmax(-1)``).
      target: ``[B, H, W] int`` (any integer dtype, e.g. the loader's uint8 ``mask``).
      num_classes: C.
      ignore_index: the void label value, or None.
      valid: ``[B] bool`` (or 0/1 float, the engine's ``valid``), False on padding rows.
    Returns:
      ``[C, C]`` int32 (int64 under ``jax_enable_x64``): entry ``[t, p]`` counts pixels of
      true class ``t`` predicted as ``p``. Sums over batches stay exact below 2**31 pixels
      per cell in int32; accumulate on the host in int64 (:class:`ConfusionMatrix`).
    """
    op = "confusion_matrix"
    c = int(num_classes)
    if c < 1:
        raise ValueError(f"{op}: num_classes must be >= 1, got {num_classes}")
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(f"{op}: pred and target must both be [B, H, W], got shapes "
                         f"{pred.shape} and {target.shape}")
    for name, x in (("pred", pred), ("target", target)):
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(f"{op}: {name} must hold integer class ids, got dtype {x.dtype}")
    if valid is not None:
        valid = jnp.asarray(valid)
        if valid.shape != pred.shape[:1]:
            raise ValueError(f"{op}: valid must be [B] = {pred.shape[:1]}, got {valid.shape}")
    if not isinstance(pred, jax.core.Tracer):
        host = np.asarray(pred)
        lo, hi = int(host.min(initial=0)), int(host.max(initial=0))
        if lo < 0 or hi >= c:
            raise ValueError(f"{op}: pred must lie in 0..{c - 1}, got values in {lo}..{hi}")
    return _count(pred, target, valid, c, None if ignore_index is None else int(ignore_index))


@functools.partial(jax.jit, static_argnames=("c", "ignore_index"))
def _count(pred: jax.Array, target: jax.Array, valid: jax.Array | None, c: int,
           ignore_index: int | None) -> jax.Array:
    # widen before multiplying: uint8 masks times C would wrap
    t, p = target.astype(jnp.int32), pred.astype(jnp.int32)
    keep = (t >= 0) & (t < c) & (p >= 0) & (p < c)
    if ignore_index is not None:
        keep &= t != ignore_index
    if valid is not None:
        keep &= valid.astype(bool)[:, None, None]
    # every dropped pixel goes to one extra bin, so the shapes stay static
    idx = jnp.where(keep, t * c + p, c * c)
    return jnp.bincount(idx.ravel(), length=c * c + 1)[: c * c].reshape(c, c)


def _class_names(class_names: Sequence[str] | None, c: int) -> list[str]:
    names = [str(k) for k in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        raise ValueError(f"segmentation_metrics: {len(names)} class names for a {c}x{c} "
                         "confusion matrix")
    return names


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def segmentation_metrics(confusion: Any, class_names: Sequence[str] | None = None,
                         prefix: str = "eval_") -> dict[str, float]:
    """Accuracies and IoUs of a confusion matrix (on the host, float64).

    Args:
      confusion: ``[C, C]`` counts, rows = truth, columns = prediction.
      class_names: the ``C`` names for the per-class keys (default ``"0".."C-1"``).
      prefix: prepended to every key.
    Returns:
      ``{"eval_pixel_acc", "eval_class_acc", "eval_miou", "eval_acc/<class>",
      "eval_iou/<class>"}``; per-class values NaN where undefined (see the module docstring),
      left out of the means.
    Raises:
      ValueError: when the matrix is not square or counts no pixel.
    """
    h = np.asarray(confusion, np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"segmentation_metrics: confusion must be [C, C], got shape {h.shape}")
    names = _class_names(class_names, h.shape[0])
    total = h.sum()
    if total <= 0:
        raise ValueError("segmentation_metrics: the confusion matrix counts no pixel (every "
                         "pixel ignored or padding?)")
    diag, rows, cols = np.diag(h), h.sum(1), h.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = diag / rows  # NaN for a class absent from the truth
        iou = diag / (rows + cols - diag)  # NaN for a class absent from both
    out = {f"{prefix}pixel_acc": float(diag.sum() / total),
           f"{prefix}class_acc": _nanmean(acc),
           f"{prefix}miou": _nanmean(iou)}
    for name, a, i in zip(names, acc.tolist(), iou.tolist(), strict=True):
        out[f"{prefix}acc/{name}"] = a
        out[f"{prefix}iou/{name}"] = i
    return out


class ConfusionMatrix:
    """Host-side sum of per-batch confusion matrices (int64, so no count overflows).

    Args:
      num_classes: C.
      class_names: names for the per-class metrics (default ``"0".."C-1"``).
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None):
        self.num_classes = int(num_classes)
        self.class_names = _class_names(class_names, self.num_classes)
        self.reset()

    def reset(self) -> None:
        self.mat = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, confusion: Any) -> None:
        """Add one ``[C, C]`` count (a device array is fetched)."""
        m = np.asarray(jax.device_get(confusion))
        if m.shape != self.mat.shape:
            raise ValueError(f"ConfusionMatrix.update: expected a {self.mat.shape} count, got "
                             f"shape {m.shape}")
        self.mat += m.astype(np.int64)

    def compute(self, prefix: str = "eval_") -> dict[str, float]:
        """:func:`segmentation_metrics` of the sum."""
        return segmentation_metrics(self.mat, self.class_names, prefix)

    def table(self, digits: int = 3) -> str:
        """A markdown table: per class, pixels, accuracy and IoU; then the means."""
        m = self.compute()
        fmt = lambda v: "n/a" if np.isnan(v) else f"{v:.{digits}f}"
        lines = ["| class | pixels | accuracy | IoU |", "|---|---:|---:|---:|"]
        for k, name in enumerate(self.class_names):
            lines.append(f"| {name} | {self.mat[k].sum()} | {fmt(m[f'eval_acc/{name}'])} | "
                         f"{fmt(m[f'eval_iou/{name}'])} |")
        lines.append(f"| **mean** | {self.mat.sum()} | **{fmt(m['eval_class_acc'])}** | "
                     f"**{fmt(m['eval_miou'])}** |")
        lines.append(f"\nglobal pixel accuracy {fmt(m['eval_pixel_acc'])}")
        return "\n".join(lines)
