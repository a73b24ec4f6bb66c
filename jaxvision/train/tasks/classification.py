"""Image classification: softmax cross-entropy, top-1/top-5 accuracy, class probabilities."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxvision.data import VALID, augment
from jaxvision.models import get_model
from jaxvision.train import losses
from jaxvision.train.evaluators import Accuracy
from jaxvision.train.evaluators.base import Evaluator
from jaxvision.train.preprocess import normalize, preprocess_eval, preprocess_train
from jaxvision.train.tasks.base import Batch, Task, Variables

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_classifier(config: ml_collections.ConfigDict) -> nn.Module:
    """The zoo model of ``config.model``: compute in ``model.dtype``, parameters float32."""
    return get_model(config.model.name, num_classes=config.model.num_classes,
                     dtype=DTYPES[config.model.dtype], param_dtype=jnp.float32,
                     **dict(config.model.kwargs))


def eval_log_probs(model: nn.Module, config: ml_collections.ConfigDict,
                   size: tuple[int, int], variables: Variables, images: jax.Array,
                   logits_of: Any = None) -> jax.Array:
    """[B, K] float32 log-probabilities of ``images`` [B, H, W, C] uint8: one center crop,
    or with ``augment.eval_ten_crop`` the log of the softmax averaged over AlexNet's 10
    crops. ``logits_of`` picks the logits from the model's output (default: the output)."""
    logits_of = logits_of or (lambda out: out)
    if config.augment.eval_ten_crop:
        def probs(crops: jax.Array) -> jax.Array:
            logits = logits_of(model.apply(variables, normalize(config, crops), train=False))
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

        return jnp.log(augment.ten_crop_average(probs, images, size))
    logits = logits_of(model.apply(variables, preprocess_eval(config, images, size),
                                   train=False))
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


class Classification(Task):
    """``batch``: ``image`` [B, H, W, C] uint8, ``label`` [B] int32. Predictions:
    ``log_probs`` [B, K] float32."""

    name = "classification"

    def fields(self, config: ml_collections.ConfigDict) -> tuple[str, ...]:
        return ("image", "label")

    def build_model(self, config: ml_collections.ConfigDict) -> nn.Module:
        return build_classifier(config)

    def loss(self, model: nn.Module, config: ml_collections.ConfigDict, size: tuple[int, int],
             variables: Variables, batch: Batch, aug_key: jax.Array, dropout_key: jax.Array,
             ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Variables]]:
        images = preprocess_train(config, aug_key, batch["image"], size)
        labels, mask = batch["label"], batch[VALID]
        logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"],
                                      rngs={"dropout": dropout_key})
        per_example = losses.cross_entropy(logits, labels, config.classification.label_smoothing)
        loss = losses.masked_mean(per_example, mask)
        top1 = losses.masked_mean(losses.topk_correct(logits, labels, 1), mask)
        return loss, ({"top1": top1}, updates)

    def predict(self, model: nn.Module, config: ml_collections.ConfigDict,
                size: tuple[int, int], variables: Variables, batch: Batch,
                ) -> dict[str, jax.Array]:
        return {"log_probs": eval_log_probs(model, config, size, variables, batch["image"])}

    def evaluators(self, config: ml_collections.ConfigDict) -> list[Evaluator]:
        return [Accuracy()]

    def describe(self, m: dict[str, float], split: str) -> str:
        return (f"{split} accuracy {m['eval_top1']:.4f} (error "
                f"{100 * (1 - m['eval_top1']):.2f}%), top-5 {m['eval_top5']:.4f}, loss "
                f"{m['eval_loss']:.4f} on {int(m['eval_count'])} examples")

    def progress(self, m: dict[str, float]) -> str:
        return f"eval loss {m['eval_loss']:.4f}, top-1 {m['eval_top1']:.4f}"
