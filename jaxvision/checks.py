"""Argument checks shared by the whole package: int-or-pair sizes, images, boxes, arrays.

Every public function that takes a size, an image batch or boxes validates it here, so a
wrong argument fails at once (at trace time under ``jax.jit`` too: shapes and dtypes are
static) with one kind of message: who complains, which argument, what was expected, what
was given (``"box_iou: boxes1 must have 4 entries in its last axis (x1, y1, x2, y2), got
shape (3, 5)"``). The checks only read ``.shape`` and ``.dtype``, so they work on numpy
arrays, jax arrays and tracers alike and cost nothing at run time.

Conventions: ``name`` is the argument as the user wrote it (``"boxes"``, ``"kernel_size"``);
``op`` the public function or model that complains (``"box_iou"``); messages read
``"<op>: <name> must ..."``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

__all__ = [
    "check_array",
    "check_boxes",
    "check_floating",
    "check_images",
    "check_integer",
    "check_last_dim",
    "check_rank",
    "check_roi_inputs",
    "check_same_length",
    "pair",
]


def _prefix(op: str | None) -> str:
    return f"{op}: " if op else ""


def _as_int(v: Any) -> int | None:
    """``v`` as a Python int when it is an integer (Python, numpy or a concrete jax scalar)."""
    if isinstance(v, (bool, str, bytes)) or isinstance(v, float):
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


def pair(value: int | Sequence[int], name: str = "value", *, minimum: int | None = 1,
         op: str | None = None) -> tuple[int, int]:
    """``(v, v)`` for an int ``v``, ``(a, b)`` for a pair of ints: a size, stride or padding.

    Args:
      value: an int or a length-2 sequence of ints (Python or numpy integers), e.g. a kernel
        size or an ``(height, width)``.
      name: the argument's name, quoted in the error.
      minimum: smallest allowed entry (``1`` for sizes and strides, ``0`` for padding),
        ``None`` for no bound.
      op: the function or model that takes the argument, quoted in the error.

    Returns:
      ``(a, b)`` as Python ints.

    Raises:
      TypeError: ``value`` is neither an int nor a sequence of two ints.
      ValueError: an entry is below ``minimum``.
    """
    bound = "" if minimum is None else f" >= {minimum}"
    what = f"{_prefix(op)}{name} must be an int{bound} or a pair of them (height, width)"
    single = _as_int(value)
    if single is not None:
        entries: list[int | None] = [single, single]
    else:
        try:
            entries = [_as_int(v) for v in value]  # type: ignore[union-attr]
        except TypeError:
            entries = []
        if isinstance(value, (str, bytes)):
            entries = []
    if len(entries) != 2 or any(e is None for e in entries):
        raise TypeError(f"{what}, got {value!r}")
    a, b = entries
    if minimum is not None and min(a, b) < minimum:  # type: ignore[type-var]
        raise ValueError(f"{what}, got {value!r}")
    return a, b  # type: ignore[return-value]


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape)


def check_array(x: Any, name: str, op: str) -> None:
    """Raises ``TypeError`` when ``x`` is not an array (has no ``shape`` and ``dtype``)."""
    if getattr(x, "shape", None) is None or getattr(x, "dtype", None) is None:
        raise TypeError(f"{op}: {name} must be an array (jax or numpy), got {type(x).__name__}; "
                        f"wrap Python lists with jnp.asarray")


def check_rank(x: Any, rank: int | Sequence[int], name: str, op: str,
               layout: str | None = None) -> None:
    """Raises ``ValueError`` unless ``x.ndim`` is ``rank`` (or one of ``rank``).

    ``layout`` (e.g. ``"[K, 4]"``) is quoted in the message when given.
    """
    check_array(x, name, op)
    allowed = (rank,) if isinstance(rank, int) else tuple(rank)
    if len(_shape(x)) not in allowed:
        want = " or ".join(str(r) for r in allowed)
        lay = f" {layout}" if layout else ""
        raise ValueError(f"{op}: {name} must have rank {want}{lay}, got shape {_shape(x)} "
                         f"(rank {len(_shape(x))})")


def check_floating(x: Any, name: str, op: str) -> None:
    """Raises ``TypeError`` unless ``x`` has a floating-point dtype."""
    check_array(x, name, op)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{op}: {name} must be floating point (e.g. float32), got dtype "
                        f"{x.dtype}; convert with {name}.astype(jnp.float32)")


def check_integer(x: Any, name: str, op: str) -> None:
    """Raises ``TypeError`` unless ``x`` has an integer dtype (bool is rejected)."""
    check_array(x, name, op)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{op}: {name} must have an integer dtype (e.g. int32), got dtype "
                        f"{x.dtype}")


def check_last_dim(x: Any, size: int, name: str, op: str, meaning: str | None = None) -> None:
    """Raises ``ValueError`` unless the last axis of ``x`` has ``size`` entries.

    ``meaning`` (e.g. ``"(x1, y1, x2, y2)"``) explains the expected layout in the message.
    """
    check_array(x, name, op)
    shape = _shape(x)
    if len(shape) == 0 or shape[-1] != size:
        what = f" {meaning}" if meaning else ""
        raise ValueError(f"{op}: {name} must have {size} entries in its last axis{what}, got "
                         f"shape {shape}")


def check_boxes(boxes: Any, name: str, op: str, rank: int | None = 2,
                fmt: str = "(x1, y1, x2, y2)", integer_ok: bool = False) -> None:
    """Checks ``boxes`` is an array ``[K, 4]`` (``rank=2``) or ``[..., 4]`` (``rank=None``).

    The dtype must be floating, or also integer with ``integer_ok`` (the box-area and IoU
    family accept pixel-integer boxes, as torchvision does). ``fmt`` names the coordinate
    layout quoted in errors (``"(cx, cy, w, h)"`` for instance).
    """
    check_array(boxes, name, op)
    if rank is not None:
        layout = "[" + ", ".join(["K"] if rank == 2 else [f"D{i}" for i in range(rank - 1)])
        check_rank(boxes, rank, name, op, layout=layout + f", 4] {fmt}")
    elif len(_shape(boxes)) == 0:
        raise ValueError(f"{op}: {name} must have shape [..., 4] {fmt}, got a scalar")
    check_last_dim(boxes, 4, name, op, meaning=fmt)
    if integer_ok and jnp.issubdtype(boxes.dtype, jnp.integer):
        return
    check_floating(boxes, name, op)


def check_roi_inputs(features: Any, rois: Any, op: str) -> None:
    """Validates ``features: [N, H, W, C]`` floating and ``rois: [K, 5]`` floating."""
    check_rank(features, 4, "features", op, layout="[N, H, W, C] (NHWC)")
    check_floating(features, "features", op)
    check_rank(rois, 2, "rois", op, layout="[K, 5] (batch_index, x1, y1, x2, y2)")
    if rois.shape[-1] == 4:
        raise ValueError(
            f"{op}: rois must be [K, 5] (batch_index, x1, y1, x2, y2), got shape "
            f"{tuple(rois.shape)}: prepend the batch index column, e.g. "
            f"jnp.concatenate([jnp.zeros((K, 1)), boxes], axis=1) for a single image")
    if rois.shape[-1] != 5:
        raise ValueError(f"{op}: rois must be [K, 5] (batch_index, x1, y1, x2, y2), got shape "
                         f"{tuple(rois.shape)}")
    check_floating(rois, "rois", op)


def check_same_length(x: Any, length: int, name: str, op: str, other: str) -> None:
    """Raises ``ValueError`` unless ``x.shape[0] == length`` (the length of argument ``other``)."""
    check_array(x, name, op)
    shape = _shape(x)
    if len(shape) == 0 or shape[0] != length:
        got = shape[0] if shape else "a scalar"
        raise ValueError(f"{op}: {name} must have one entry per row of {other} ({length}), got "
                         f"{got} (shape {shape})")


def check_images(x: Any, *, model: str, channels: int = 3, min_size: int = 1) -> None:
    """Raises a clear error when ``x`` is not ``[N, H, W, channels]`` floating images.

    Called at trace time by every model (``model`` names it in the message), so a wrong input
    fails before any compute with a message naming what the model expects.
    """
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(f"{model} expects an array of images [N, H, W, {channels}], "
                        f"got {type(x).__name__}")
    if len(shape) != 4:
        raise ValueError(f"{model} expects images of rank 4, [N, H, W, {channels}] (NHWC), "
                         f"got shape {tuple(shape)} (rank {len(shape)}); add a batch axis "
                         "with images[None] for a single image")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{model} expects floating-point images (float32, normalized), got "
                        f"dtype {dtype}; convert uint8 pixels with "
                        "jaxvision.weights.preprocess or images.astype(jnp.float32) / 255")
    if shape[-1] != channels:
        hint = (" (this looks like NCHW: jaxvision models take NHWC, use "
                "images.transpose(0, 2, 3, 1))" if shape[1] == channels else "")
        raise ValueError(f"{model} expects {channels} input channels in the last axis, "
                         f"[N, H, W, {channels}], got shape {tuple(shape)}{hint}")
    if shape[1] < min_size or shape[2] < min_size:
        raise ValueError(f"{model} needs images of at least {min_size}x{min_size} pixels, got "
                         f"{shape[1]}x{shape[2]}")
