"""Optimizers and learning-rate schedules from a config (optax).

SGD follows ``torch.optim.SGD`` exactly: weight decay is *coupled* (``g + wd * p`` before the
momentum buffer), momentum ``buf = m * buf + g``, Nesterov ``g + m * buf``, and the rate
multiplies the buffer at use, so a schedule change takes effect at once. AdamW's decay is
decoupled (Loshchilov & Hutter, 2019). By default biases and normalization parameters are
not decayed (every parameter with ``ndim <= 1``).

``optimizer.frozen`` keeps parameters fixed (the freeze-then-fine-tune recipe):
``optax.multi_transform`` routes the matching ones to ``optax.set_to_zero`` and the rest to
the optimizer above (so gradient clipping and weight decay see only the trained ones).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

Schedule = Callable[[jax.Array | int], jax.Array]


def make_schedule(config: ml_collections.ConfigDict, num_train_steps: int) -> Schedule:
    """The learning rate as a function of the number of optimizer steps already taken.

    ``step``: ``lr * decay_factor ** (number of boundaries <= step)``, like torch's
    ``MultiStepLR`` stepped once per iteration. ``cosine``: half-cosine from ``lr`` to
    ``lr * end_factor`` between the end of warmup and ``num_train_steps``. Warmup (any
    schedule): the rate grows linearly from ``lr / warmup_steps`` at step 0 to ``lr`` at
    step ``warmup_steps - 1``.
    """
    base = float(config.optimizer.learning_rate)
    sched = config.schedule
    warmup = int(sched.warmup_steps)
    boundaries = jnp.asarray(list(sched.boundaries) or [0], jnp.int32)
    has_boundaries = bool(list(sched.boundaries))
    decay_span = max(num_train_steps - warmup, 1)

    def schedule(step: jax.Array | int) -> jax.Array:
        step = jnp.asarray(step, jnp.int32)
        if sched.name == "constant":
            lr = jnp.asarray(base, jnp.float32)
        elif sched.name == "step":
            passed = jnp.sum(step >= boundaries) if has_boundaries else 0
            lr = base * jnp.power(jnp.float32(sched.decay_factor), passed)
        elif sched.name == "cosine":
            t = jnp.clip((step - warmup) / decay_span, 0.0, 1.0)
            end = base * sched.end_factor
            lr = end + (base - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
        else:  # validated by the schema
            raise ValueError(f"unknown schedule.name {sched.name!r}")
        if warmup > 0:
            lr = lr * jnp.minimum(1.0, (step + 1) / warmup)
        return lr.astype(jnp.float32)

    return schedule


def decay_mask(params: Any, decay_norm_and_bias: bool = False) -> Any:
    """A pytree of bools like ``params``: True where weight decay applies.

    Kernels (``ndim > 1``) decay; biases and BatchNorm scale/bias (``ndim <= 1``) do not,
    unless ``decay_norm_and_bias`` (He et al.'s CIFAR recipe decays everything).
    """
    return jax.tree_util.tree_map(lambda p: decay_norm_and_bias or p.ndim > 1, params)


def param_path(path: tuple[Any, ...]) -> str:
    """A pytree key path as a '/'-joined string: ``backbone/features.0/kernel``."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                    for k in path)


def frozen_mask(params: Any, patterns: Sequence[str]) -> Any:
    """A pytree of bools like ``params``: True where a parameter is kept fixed.

    A pattern (a regular expression) freezes a parameter when it matches the parameter's
    '/'-joined path, or the path of a module holding it, in full: ``backbone`` freezes
    everything under ``backbone/``, ``classifier\\..*`` every ``classifier.N`` layer,
    ``.*/bias`` every bias. A pattern that matches nothing is an error (a typo would
    otherwise train what was meant to stay fixed).
    """
    compiled = []
    for pat in patterns:
        try:
            compiled.append(re.compile(pat))
        except re.error as e:
            raise ValueError(f"optimizer.frozen: {pat!r} is not a regular expression ({e})"
                             ) from None
    leaves = jax.tree_util.tree_leaves_with_path(params)
    paths = [param_path(k) for k, _ in leaves]
    used = [False] * len(compiled)

    def frozen(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        hit = False
        for j, rx in enumerate(compiled):
            if any(rx.fullmatch(p) for p in prefixes):
                used[j] = hit = True
        return hit

    flags = [frozen(p) for p in paths]
    unused = [patterns[j] for j, u in enumerate(used) if not u]
    if unused:
        shown = ", ".join(paths[:8]) + (" ..." if len(paths) > 8 else "")
        raise ValueError(f"optimizer.frozen: {unused} match no parameter (patterns match "
                         f"whole '/'-joined paths or module paths; the parameters are: "
                         f"{shown})")
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), flags)


def make_optimizer(config: ml_collections.ConfigDict,
                   num_train_steps: int) -> tuple[optax.GradientTransformation, Schedule]:
    """Returns ``(tx, schedule)`` for ``config.optimizer`` and ``config.schedule``."""
    opt = config.optimizer
    schedule = make_schedule(config, num_train_steps)
    mask = lambda params: decay_mask(params, opt.decay_norm_and_bias)  # noqa: E731
    parts: list[optax.GradientTransformation] = []
    if opt.grad_clip_norm is not None:
        parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
    if opt.name == "sgd":
        if opt.weight_decay > 0:
            parts.append(optax.add_decayed_weights(opt.weight_decay, mask))
        parts.append(optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov))
    elif opt.name == "adamw":
        parts.append(optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps,
                                 weight_decay=opt.weight_decay, mask=mask))
    else:  # validated by the schema
        raise ValueError(f"unknown optimizer.name {opt.name!r}")
    tx = optax.chain(*parts)
    if opt.frozen:
        patterns = list(opt.frozen)

        def labels(params: Any) -> Any:
            return jax.tree_util.tree_map(lambda f: "frozen" if f else "train",
                                          frozen_mask(params, patterns))

        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    return tx, schedule
