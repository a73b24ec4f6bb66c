"""Float arithmetic that reproduces torch's C++ kernels bit for bit under XLA.

Two places where the obvious ``jnp`` spelling differs from the C++ one:

* ``torch.clamp`` passes the gradient only strictly inside its bounds (at a bound it is 0);
  ``jnp.clip`` splits it at a bound (a ``maximum``/``minimum`` tie). :func:`clamp` is torch's.
* ``jnp.round`` rounds halves to even; C ``round`` (used by ``roi_pool``) rounds them away
  from zero.
* XLA's CPU compiler rewrites ``x / broadcast(d)`` (a scalar or a broadcast divisor) as ``x *
  (1 / d)``, which is off by an ulp for most ``d`` that are not powers of two: ``21 / 7``
  becomes ``3.0000002``, and the ``ceil`` of it (RoIAlign's adaptive grid, RoIPool's bin
  ends) is then off by one. :func:`divide` hides the broadcast behind an optimization
  barrier so the division stays a true IEEE division.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["clamp", "divide", "round_half_away", "upcast"]


def divide(x: jax.Array, d: jax.Array | float) -> jax.Array:
    """``x / d`` correctly rounded, as C++ computes it (``d`` broadcast against ``x``)."""
    x = jnp.asarray(x)
    d = jnp.asarray(d, dtype=x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else None)
    shape = jnp.broadcast_shapes(x.shape, d.shape)
    x = jnp.broadcast_to(x, shape)
    return x / lax.optimization_barrier(jnp.broadcast_to(d.astype(x.dtype), shape))


def round_half_away(x: jax.Array) -> jax.Array:
    """C/C++ ``round``: nearest integer, halves away from zero (``2.5 -> 3``, ``-2.5 -> -3``).

    ``floor(x + 0.5)`` would be wrong for ``0.49999997`` (the sum rounds up to 1), so ties are
    detected exactly on the fractional part ``x - trunc(x)``, which float arithmetic computes
    without error.
    """
    t = jnp.trunc(x)
    tie = jnp.abs(x - t) == 0.5
    return jnp.where(tie, t + jnp.sign(x), jnp.round(x))


def clamp(x: jax.Array, lo: float | jax.Array | None = None,
          hi: float | jax.Array | None = None) -> jax.Array:
    """``torch.clamp(x, min=lo, max=hi)`` with torch's gradient.

    The value is ``min(max(x, lo), hi)``; the gradient w.r.t. ``x`` is 1 where ``lo < x < hi``
    (strictly) and 0 elsewhere, as torch's ``clamp_backward`` gives it (a bound given as a
    Python float is first cast to ``x``'s dtype, as torch casts its scalar). ``None`` leaves a
    side open.
    """
    x = jnp.asarray(x)
    inside = jnp.ones(x.shape, bool)
    clipped = x
    if lo is not None:
        lo = jnp.asarray(lo, x.dtype)
        inside = inside & (x > lo)
        clipped = jnp.maximum(clipped, lo)
    if hi is not None:
        hi = jnp.asarray(hi, x.dtype)
        inside = inside & (x < hi)
        clipped = jnp.minimum(clipped, hi)
    return jnp.where(inside, x, lax.stop_gradient(clipped))


def upcast(x: jax.Array) -> jax.Array:
    """torchvision's ``_upcast``: float16/bfloat16 to float32, narrow integers to int32.

    Box products (areas, intersections) of half-precision or int8/int16 boxes overflow
    otherwise; float32, float64, int32 and int64 are kept.
    """
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x if x.dtype in (jnp.float32, jnp.float64) else x.astype(jnp.float32)
    return x if x.dtype in (jnp.int32, jnp.int64) else x.astype(jnp.int32)
