"""Float arithmetic that reproduces torch's C++ kernels bit for bit under XLA.

Two places where the obvious ``jnp`` spelling differs from the C++ one:

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

__all__ = ["divide", "round_half_away"]


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
