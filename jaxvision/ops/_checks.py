"""Trace-time input validation shared by the ``jaxvision.ops`` functions.

Every op calls these on its array arguments before any compute, so a wrong rank, dtype or
last-axis size fails when the function is traced (under ``jax.jit`` too: shapes and dtypes
are static) with a message naming the op, the argument, what was expected and what was
given. They only read ``.shape`` and ``.dtype``, so they work on numpy arrays, jax arrays
and tracers alike and cost nothing at run time.

Conventions: ``name`` is the argument name as the user wrote it (``"boxes"``), ``op`` the
public function name (``"box_iou"``); messages read ``"box_iou: boxes must ..."``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

__all__ = [
    "check_array",
    "check_boxes",
    "check_floating",
    "check_integer",
    "check_last_dim",
    "check_rank",
    "check_same_length",
]


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
                fmt: str = "(x1, y1, x2, y2)") -> None:
    """Checks ``boxes`` is a floating array ``[K, 4]`` (``rank=2``) or ``[..., 4]`` (``rank=None``).

    ``fmt`` names the coordinate layout quoted in errors (``"(cx, cy, w, h)"`` for instance).
    """
    check_array(boxes, name, op)
    if rank is not None:
        layout = "[" + ", ".join(["K"] if rank == 2 else [f"D{i}" for i in range(rank - 1)])
        check_rank(boxes, rank, name, op, layout=layout + f", 4] {fmt}")
    elif len(_shape(boxes)) == 0:
        raise ValueError(f"{op}: {name} must have shape [..., 4] {fmt}, got a scalar")
    check_last_dim(boxes, 4, name, op, meaning=fmt)
    check_floating(boxes, name, op)


def check_same_length(x: Any, length: int, name: str, op: str, other: str) -> None:
    """Raises ``ValueError`` unless ``x.shape[0] == length`` (the length of argument ``other``)."""
    check_array(x, name, op)
    shape = _shape(x)
    if len(shape) == 0 or shape[0] != length:
        got = shape[0] if shape else "a scalar"
        raise ValueError(f"{op}: {name} must have one entry per row of {other} ({length}), got "
                         f"{got} (shape {shape})")
