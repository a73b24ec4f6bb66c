"""The training state and the model it trains, built from a config."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training, as one pytree (what a checkpoint holds).

    Attributes:
      step: [] int32, optimizer steps taken.
      params: the model's ``params`` collection (float32 even with bfloat16 compute).
      batch_stats: the ``batch_stats`` collection (``{}`` for models without BatchNorm).
      opt_state: the optax state.
      rng: [2] uint32, the base key; step ``s`` uses ``fold_in(rng, s)`` so a resumed run
        draws the same augmentation and dropout as an uninterrupted one.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """The model of ``config``'s task (:mod:`jaxvision.train.tasks`) for ``config.model``:
    compute in ``model.dtype``, parameters in float32."""
    from jaxvision.train.tasks import get_task

    return get_task(config).build_model(config)


def input_shape(config: ml_collections.ConfigDict, model: nn.Module,
                image_shape: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """``(H, W, C)`` of the network input: ``dense.canvas`` if set (dense tasks), else
    ``data.image_size`` if set, else the stored image size ``image_shape`` if known, else the
    model's ``default_input_shape``."""
    default = tuple(getattr(model, "default_input_shape", (224, 224, 3)))
    if image_shape is not None:
        default = tuple(image_shape)
    if config.dense.canvas is not None:
        return (*(int(v) for v in config.dense.canvas), default[2])  # type: ignore[return-value]
    size = config.data.image_size
    if size is None:
        return default  # type: ignore[return-value]
    return (size, size, default[2])


def init_variables(model: nn.Module, rng: jax.Array,
                   shape: tuple[int, int, int]) -> dict[str, Any]:
    """``model.init`` on a zero batch of one image ``[1, *shape]`` float32."""
    params_rng, dropout_rng = jax.random.split(rng)
    return model.init({"params": params_rng, "dropout": dropout_rng},
                      jnp.zeros((1, *shape), jnp.float32), train=False)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                       shape: tuple[int, int, int]) -> TrainState:
    """A fresh state at step 0. ``rng``: [2] uint32; ``shape``: ``(H, W, C)`` of the input."""
    init_rng, train_rng = jax.random.split(rng)
    variables = init_variables(model, init_rng, shape)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params), rng=train_rng)
