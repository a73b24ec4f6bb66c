"""Top-1 / top-5 accuracy and cross-entropy of class log-probabilities."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxvision.train import losses
from jaxvision.train.evaluators.base import Batch, SumEvaluator


class Accuracy(SumEvaluator):
    """``eval_loss`` (mean cross-entropy), ``eval_top1``, ``eval_top5``, ``eval_count``.

    Reads ``preds["log_probs"]`` ([B, K] float32) and ``batch["label"]`` ([B] int).
    """

    fields = ("label",)

    def batch_fn(self, preds: dict[str, jax.Array], batch: Batch,
                 valid: jax.Array) -> dict[str, jax.Array]:
        log_probs, labels = preds["log_probs"], batch["label"]
        # log_softmax is shift-invariant, so cross_entropy of log-probabilities is -log p[label].
        return {"loss": jnp.sum(losses.cross_entropy(log_probs, labels) * valid),
                "top1": jnp.sum(losses.topk_correct(log_probs, labels, 1) * valid),
                "top5": jnp.sum(losses.topk_correct(log_probs, labels, 5) * valid),
                "count": jnp.sum(valid)}

    def finalize(self, t: dict[str, float]) -> dict[str, float]:
        n = t["count"]
        return {"eval_loss": t["loss"] / n, "eval_top1": t["top1"] / n,
                "eval_top5": t["top5"] / n, "eval_count": n}
