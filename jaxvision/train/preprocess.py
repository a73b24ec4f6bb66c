"""On-device image preprocessing shared by the tasks: augmentation and normalization."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxvision.data import augment


def normalize(config: ml_collections.ConfigDict, images: jax.Array) -> jax.Array:
    """[..., C] uint8 -> float32 ``(x / 255 - data.mean) / data.std``."""
    mean = jnp.asarray(config.data.mean, jnp.float32)
    std = jnp.asarray(config.data.std, jnp.float32)
    return augment.normalize(images, mean, std)


def preprocess_train(config: ml_collections.ConfigDict, key: jax.Array,
                     images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Training augmentation of ``config.augment`` on device.

    Args:
      key: the step's key; each augmentation draws per-example randomness from it.
      images: [B, H, W, C] uint8.
      size: ``(h, w)`` of the network input.
    Returns:
      [B, h, w, C] float32, normalized with ``data.mean``/``data.std``.
    """
    aug = config.augment
    k_crop, k_flip, k_color = jax.random.split(key, 3)
    x = images
    if aug.random_resized_crop:
        x = augment.random_resized_crop(k_crop, x, size)
    elif aug.crop_padding > 0 or x.shape[1:3] != tuple(size):
        x = augment.random_crop(k_crop, x, size, aug.crop_padding)
    if aug.flip:
        x = augment.random_flip(k_flip, x)
    if aug.pca_noise > 0:
        # Before normalization: the PCA eigenvalues are of raw RGB pixels (AlexNet, and
        # fb.resnet.torch's Lighting before ColorNormalize).
        x = augment.pca_color_noise(k_color, x, aug.pca_noise)
    return normalize(config, x)


def preprocess_eval(config: ml_collections.ConfigDict, images: jax.Array,
                    size: tuple[int, int]) -> jax.Array:
    """[B, H, W, C] uint8 -> [B, h, w, C] float32: center crop to ``size`` (if smaller),
    normalize."""
    x = images
    if x.shape[1:3] != tuple(size):
        x = augment.center_crop(x, size)
    return normalize(config, x)
