"""Bilinear-upsampling initializer for transposed convolutions (Long et al., "Fully
Convolutional Networks for Semantic Segmentation", CVPR 2015).

FCN initializes its ``ConvTranspose`` upsampling layers (kernel ``2f``, stride ``f``) to
bilinear interpolation with ``get_upsampling_weight`` (the Caffe ``BilinearFiller``, kept in
pytorch-fcn): a separable tent ``(1 - |i - center| / factor)`` per axis with ``factor = (k +
1) // 2`` and ``center = factor - 1`` (odd ``k``) or ``factor - 0.5`` (even ``k``), placed on
the channel diagonal (channel ``i`` upsamples channel ``i``). The tent is symmetric, so it
gives the same result whether or not the convolution flips its kernel (flax's
``transpose_kernel``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["bilinear_kernel", "bilinear_upsampling_init"]


def bilinear_kernel(kernel_size: int, in_channels: int, out_channels: int,
                    dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """FCN's upsampling weight in flax ``ConvTranspose`` layout.

    Returns:
      ``[k, k, in_channels, out_channels]`` (HWIO): the bilinear tent on ``[:, :, i, i]`` for
      ``i < min(in_channels, out_channels)``, zeros elsewhere. Computed in float64 then cast,
      like the reference.
    """
    if kernel_size < 1:
        raise ValueError(f"bilinear_kernel: kernel_size must be >= 1, got {kernel_size}")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = np.arange(kernel_size, dtype=np.float64)
    tent = 1 - np.abs(og - center) / factor
    filt = tent[:, None] * tent[None, :]
    w = np.zeros((kernel_size, kernel_size, in_channels, out_channels), np.float64)
    d = np.arange(min(in_channels, out_channels))
    w[:, :, d, d] = filt[:, :, None]
    return jnp.asarray(w.astype(np.float32), dtype)


def bilinear_upsampling_init(key: jax.Array, shape: Sequence[int],
                             dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """Flax initializer: ``kernel_init=bilinear_upsampling_init`` on an ``nn.ConvTranspose``.

    ``shape`` is ``(k, k, in, out)`` (square kernel); ``key`` is unused (deterministic).
    """
    del key
    if len(shape) != 4 or shape[0] != shape[1]:
        raise ValueError(f"bilinear_upsampling_init: expected a square (k, k, in, out) kernel "
                         f"shape, got {tuple(shape)}")
    return bilinear_kernel(int(shape[0]), int(shape[2]), int(shape[3]), dtype)
