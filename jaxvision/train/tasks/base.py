"""The task interface: what the engine asks of a task, and nothing more."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from jaxvision.train.evaluators.base import Evaluator

Batch = dict[str, jax.Array]
Variables = dict[str, Any]


class Task:
    """One learning problem on the shared engine (Flax's flat step functions call these).

    A task names the batch fields it reads, builds its model, gives its training loss on a
    batch, its predictions in evaluation mode and the evaluators that score them. Steps,
    loop, checkpoints, sharding and writers are the engine's and know none of this.
    """

    name: str = ""

    def fields(self, config: ml_collections.ConfigDict) -> tuple[str, ...]:
        """The batch fields the task reads (the loader's padding flag comes on top)."""
        raise NotImplementedError

    def check_config(self, config: ml_collections.ConfigDict) -> None:
        """Raises :class:`~jaxvision.train.config.ConfigError` for settings the task cannot
        honour (called once, before training or evaluation)."""

    def build_model(self, config: ml_collections.ConfigDict) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, config: ml_collections.ConfigDict, size: tuple[int, int],
             variables: Variables, batch: Batch, aug_key: jax.Array, dropout_key: jax.Array,
             ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Variables]]:
        """Training-mode loss on ``batch`` (its ``_valid`` rows only).

        Returns ``(loss [] float32, (metrics, updates))``: ``metrics`` scalars logged with
        the loss, ``updates`` the model's mutated collections (``batch_stats``).
        """
        raise NotImplementedError

    def predict(self, model: nn.Module, config: ml_collections.ConfigDict,
                size: tuple[int, int], variables: Variables, batch: Batch,
                ) -> dict[str, jax.Array]:
        """Evaluation-mode predictions for ``batch`` (``image`` [B, H, W, C] uint8, and
        whatever else of :meth:`fields` the source gives, e.g. a canvas ``image_size`` to map
        boxes back; ``jaxvision predict`` passes ``image`` alone): a dict of arrays with
        leading axis B (what the evaluators and ``jaxvision predict`` read)."""
        raise NotImplementedError

    def evaluators(self, config: ml_collections.ConfigDict) -> list[Evaluator]:
        raise NotImplementedError

    #: Examples of the first evaluation batch that :meth:`images` is given.
    num_images: int = 4

    def images(self, config: ml_collections.ConfigDict, batch: dict[str, np.ndarray],
               predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Pictures of predictions, written at each evaluation of training (TensorBoard and
        ``<workdir>/images/<step>/``, :meth:`~jaxvision.train.writers.MetricWriter
        .write_images`); None (the default): none, and no cost.

        Args:
          batch: host arrays of the first ``num_images`` rows of the first evaluation
            batch (the :meth:`fields` and ``_valid``; padding rows have ``_valid`` False).
          predictions: :meth:`predict`'s output for those rows, host arrays.
        Returns:
          name -> [K, H, W, 3] uint8 pictures (e.g. :func:`jaxvision.visualize.panel`s).
        """
        return None

    def describe(self, metrics: dict[str, float], split: str) -> str:
        """One line of the evaluation ``metrics`` of ``split`` for people (the final print)."""
        raise NotImplementedError

    def progress(self, metrics: dict[str, float]) -> str:
        """A short form of ``metrics`` for the evaluation lines printed during training."""
        raise NotImplementedError


def moving_augmentations(config: ml_collections.ConfigDict,
                         pca_noise: bool = False) -> list[str]:
    """The ``augment.*`` keys turned on that move pixels on device (crops, flips, ten-crop
    evaluation; with ``pca_noise`` also the colour noise): a task whose targets are
    spatial (boxes, masks) refuses them, its targets would not move with the image."""
    aug = config.augment
    flags = [("augment.crop_padding", aug.crop_padding > 0), ("augment.flip", aug.flip),
             ("augment.random_resized_crop", aug.random_resized_crop),
             ("augment.eval_ten_crop", aug.eval_ten_crop)]
    if pca_noise:
        flags.append(("augment.pca_noise", aug.pca_noise > 0))
    return [k for k, on in flags if on]

