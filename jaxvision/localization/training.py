"""The lecture's localization recipe, with optax parameter partitioning.

1. ``"classifier"``: train the classifier (conv stack + dense layers) with cross-entropy.
2. ``"regressor"``: freeze it; train only the regression head with SGD on an L2 (or
   smooth-L1) loss.
3. ``"joint"`` (optional): fine-tune everything on cross-entropy + ``box_weight`` x regression.

A stage freezes parameters with ``optax.multi_transform`` (``optax.set_to_zero`` on the
frozen partition), so one optimizer state layout serves every stage.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from tqdm.auto import tqdm

from jaxvision.localization.heads import Localizer
from jaxvision.localization.losses import class_boxes, l2_loss, smooth_l1_loss

Stage = Literal["classifier", "regressor", "joint"]
STAGES = ("classifier", "regressor", "joint")


def partition(params: Any, stage: Stage) -> Any:
    """Labels every parameter ``"train"`` or ``"freeze"`` for ``stage``."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    flat = traverse_util.flatten_dict(params)

    def label(path: tuple[str, ...]) -> str:
        head = path[0].startswith("regressor.")
        if stage == "joint" or (stage == "regressor") == head:
            return "train"
        return "freeze"

    return traverse_util.unflatten_dict({p: label(p) for p in flat})


def make_optimizer(params: Any, stage: Stage, learning_rate: float | optax.Schedule,
                   momentum: float = 0.9) -> optax.GradientTransformation:
    """SGD with momentum on the stage's trainable partition; the rest frozen.

    ``learning_rate`` is a constant or an optax schedule (a function of the step).
    """
    return optax.multi_transform(
        {"train": optax.sgd(learning_rate, momentum), "freeze": optax.set_to_zero()},
        partition(params, stage))


def loss_fn(localizer: Localizer, params: Any, state: dict, images: jax.Array,
            labels: jax.Array, targets: jax.Array, rng: jax.Array, stage: Stage,
            box_weight: float = 1.0, regression: str = "l2",
            ) -> tuple[jax.Array, tuple[dict, dict]]:
    """The stage's loss; returns ``(loss, (new_state, metrics))``.

    images: ``[N, H, W, C] float32``; labels: ``[N] int32``; targets: ``[N, num_outputs]``.
    """
    mutable = list(state)
    out = localizer.apply({"params": params, **state}, images, train=True,
                          rngs={"dropout": rng}, mutable=mutable or False)
    (logits, reg), new_state = out if mutable else (out, {})
    if localizer.per_class:
        reg = class_boxes(reg, labels)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    rl = l2_loss(reg, targets) if regression == "l2" else smooth_l1_loss(reg, targets)
    loss = {"classifier": ce, "regressor": rl, "joint": ce + box_weight * rl}[stage]
    acc = jnp.mean(jnp.argmax(logits, -1) == labels)
    return loss, (dict(new_state), {"loss": loss, "ce": ce, "regression": rl, "accuracy": acc})


def fit(
    localizer: Localizer, variables: dict, images: np.ndarray, labels: np.ndarray,
    targets: np.ndarray, *, stage: Stage, steps: int, batch_size: int = 128,
    learning_rate: float = 0.01, momentum: float = 0.9,
    schedule: Literal["constant", "cosine"] = "constant", box_weight: float = 1.0,
    regression: str = "l2", preprocess: Callable[[jax.Array], jax.Array] | None = None,
    seed: int = 0, progress: bool = True,
) -> tuple[dict, list[dict]]:
    """Runs one stage of the recipe; returns ``(variables, history)``.

    Args:
      images: ``[M, H, W, C] uint8``; labels: ``[M]``; targets: ``[M, num_outputs]`` float32
        (boxes or keypoints). Standardise them first
        (:class:`jaxvision.localization.TargetScaler`): raw boxes in ``[0, 1]`` image units
        are small and off-centre for a zero-initialised head, and SGD on them stalls.
      learning_rate, momentum: SGD's; ``schedule="cosine"`` decays the rate to 0 over
        ``steps`` (a short run then ends at a low-noise point).
      preprocess: uint8 batch -> float32 model input (default: ``x / 255``).
    """
    preprocess = preprocess or (lambda x: x.astype(jnp.float32) / 255.0)
    # Copies, so that donating the step's buffers never deletes the caller's variables.
    params = jax.tree_util.tree_map(jnp.array, variables["params"])
    state = jax.tree_util.tree_map(jnp.array, {k: v for k, v in variables.items()
                                                if k != "params"})
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    lr = (optax.cosine_decay_schedule(learning_rate, steps) if schedule == "cosine"
          else learning_rate)
    tx = make_optimizer(params, stage, lr, momentum)
    opt_state = tx.init(params)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def step(params, state, opt_state, x, y, t, rng):
        grad_fn = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)
        (_, (new_state, metrics)), grads = grad_fn(
            localizer, params, state, preprocess(x), y, t, rng, stage, box_weight, regression)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state, metrics

    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    history = []
    for i in tqdm(range(steps), desc=f"localizer/{stage}", disable=not progress):
        idx = rng.integers(0, len(images), batch_size)
        params, state, opt_state, metrics = step(
            params, state, opt_state, images[idx], labels[idx], targets[idx],
            jax.random.fold_in(key, i))
        if i % 50 == 0 or i == steps - 1:
            history.append({"step": i, **{k: float(v) for k, v in metrics.items()}})
    return {"params": params, **state}, history


def predict(localizer: Localizer, variables: dict, images: np.ndarray, *,
            batch_size: int = 512,
            preprocess: Callable[[jax.Array], jax.Array] | None = None,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 labels ``[M]`` and their regressions ``[M, num_outputs]`` for ``images``."""
    preprocess = preprocess or (lambda x: x.astype(jnp.float32) / 255.0)

    @jax.jit
    def run(x):
        logits, reg = localizer.apply(variables, preprocess(x), train=False)
        labels = jnp.argmax(logits, -1)
        if localizer.per_class:
            reg = class_boxes(reg, labels)
        return labels, reg

    outs = [run(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    return (np.concatenate([np.asarray(o[0]) for o in outs]),
            np.concatenate([np.asarray(o[1]) for o in outs]))
