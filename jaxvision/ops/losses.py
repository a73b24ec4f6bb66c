"""Elementwise losses shared by the localization and detection heads."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def smooth_l1(pred: jax.Array, target: jax.Array, beta: float = 1.0) -> jax.Array:
    """Elementwise ``torch.nn.functional.smooth_l1_loss(..., reduction="none")``.

    ``0.5 * d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 * beta``; ``beta = 0`` is L1.
    """
    d = jnp.abs(pred - target)
    return jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta) if beta > 0 else d
