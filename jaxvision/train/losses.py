"""Classification losses and metrics, per example, so masked (padded) examples drop out."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array,
                  label_smoothing: float = 0.0) -> jax.Array:
    """Softmax cross-entropy per example, computed in float32.

    Args:
      logits: [B, K] any float dtype.
      labels: [B] int class indices.
      label_smoothing: epsilon; targets are ``(1 - eps) * onehot + eps / K`` as in
        ``torch.nn.CrossEntropyLoss(label_smoothing=eps)``.
    Returns:
      [B] float32.
    """
    logits = logits.astype(jnp.float32)
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """[B] float32: 1 where ``labels`` is among the ``k`` largest ``logits`` [B, K].

    Ties count against the label (its rank is the number of strictly larger logits plus
    the number of equal logits before it), like ``torch.topk``'s lowest-index tie break.
    """
    logits = logits.astype(jnp.float32)
    k = min(k, logits.shape[-1])
    label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    larger = jnp.sum(logits > label_logit, axis=-1)
    idx = jnp.arange(logits.shape[-1])
    equal_before = jnp.sum((logits == label_logit) & (idx[None, :] < labels[:, None]), axis=-1)
    return (larger + equal_before < k).astype(jnp.float32)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values`` [B] over examples where ``mask`` [B] bool is True (0 if none)."""
    mask = mask.astype(jnp.float32)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)
