"""OverFeat, from "OverFeat: Integrated Recognition, Localization and Detection using
Convolutional Networks" (Sermanet, Eigen, Zhang, Mathieu, Fergus, LeCun; ICLR 2014).

Two models (the paper's Tables 1 and 3). No LRN, non-overlapping pooling, no padding in the
first two layers. At test time the network is run fully convolutionally over larger images
(:func:`jaxvision.models.convolutionize`) with the paper's offset ("dense") max-pooling over
the last pooling layer (:mod:`jaxvision.dense.overfeat`).

The paper's layers 3-5 (3-6 accurate) are zero-padded by 1 pixel, as here. So the dense
evaluation equals the classifier applied to every window of the big image's *conv map*, but
not exactly to the matching input crop: a crop's 3x3 convolutions see zero padding at the
crop's border where the big image's see real neighbours (the tests check both facts; without
that padding the dense output equals crop-and-classify exactly, as for LeNet-5).

=========  ==========================================  ==========================================
layer      fast (input 231x231)                        accurate (input 221x221)
=========  ==========================================  ==========================================
1          conv 96 11x11 /4, pool 2x2 /2               conv 96 7x7 /2, pool 3x3 /3
2          conv 256 5x5, pool 2x2 /2                   conv 256 7x7, pool 2x2 /2
3          conv 512 3x3 pad 1                          conv 512 3x3 pad 1
4          conv 1024 3x3 pad 1                         conv 512 3x3 pad 1
5          conv 1024 3x3 pad 1, pool 2x2 /2 (-> 6x6)   conv 1024 3x3 pad 1
6          FC 3072                                     conv 1024 3x3 pad 1, pool 3x3 /3 (-> 5x5)
7          FC 4096                                     FC 4096
8          FC 1000                                     FC 4096
9                                                      FC 1000
=========  ==========================================  ==========================================

About 145.9M (fast) and 144.7M (accurate) parameters, as the paper's 145M / 144M.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision import checks
from jaxvision.models import layers
from jaxvision.models.convolutionize import ConvolutionizeSpec
from jaxvision.models.registry import register_model

# (out_channels, kernel, stride, padding, pool) per conv layer; pool = (k, s) or None.
ConvSpec = tuple[int, int, int, int, tuple[int, int] | None]

FAST: tuple[ConvSpec, ...] = (
    (96, 11, 4, 0, (2, 2)),
    (256, 5, 1, 0, (2, 2)),
    (512, 3, 1, 1, None),
    (1024, 3, 1, 1, None),
    (1024, 3, 1, 1, (2, 2)),
)
ACCURATE: tuple[ConvSpec, ...] = (
    (96, 7, 2, 0, (3, 3)),
    (256, 7, 1, 0, (2, 2)),
    (512, 3, 1, 1, None),
    (512, 3, 1, 1, None),
    (1024, 3, 1, 1, None),
    (1024, 3, 1, 1, (3, 3)),
)


class OverFeat(nn.Module):
    """OverFeat classifier; ``images: [N, H, W, 3] float32 -> logits [N, num_classes]``.

    At the training size (231 fast, 221 accurate) the last pooled map is 6x6 (fast) or 5x5
    (accurate) and feeds the dense classifier. ``features`` exposes the conv stack for
    :func:`jaxvision.models.convolutionize`; ``features(..., last_pool=False)`` stops before
    the last pooling, which offset max-pooling replaces.
    """

    convs: Sequence[ConvSpec] = ACCURATE
    hidden: Sequence[int] = (4096, 4096)
    num_classes: int = 1000
    input_size: int = 221
    dropout: float = 0.5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def default_input_shape(self) -> tuple[int, int, int]:  # type: ignore[override]
        return (self.input_size, self.input_size, 3)

    @property
    def convolutionize_spec(self) -> ConvolutionizeSpec:
        """Dense layers ``classifier.0..``; the last pooling is the one offset pooling replaces."""
        return ConvolutionizeSpec(
            dense=tuple(f"classifier.{i}" for i in range(len(self.hidden) + 1)),
            last_pool=self.convs[-1][4], dropout=self.dropout)

    def _map_size(self) -> int:
        """Side of the last pooled map at the training size (6 fast, 5 accurate)."""
        size = self.input_size
        for _, k, s, p, pool in self.convs:
            size = (size + 2 * p - k) // s + 1
            if pool is not None:
                size = (size - pool[0]) // pool[1] + 1
        return size

    def _min_size(self) -> int:
        size = 1
        for _, k, s, p, pool in reversed(self.convs):
            if pool is not None:
                size = (size - 1) * pool[1] + pool[0]
            size = (size - 1) * s + k - 2 * p
        return size

    @nn.compact
    def features(self, x: jax.Array, train: bool = False, last_pool: bool = True) -> jax.Array:
        """The conv stack: ``[N, H, W, 3] -> [N, h, w, C]`` (after the last pool by default)."""
        checks.check_images(x, model=type(self).__name__, min_size=self._min_size())
        x = x.astype(self.dtype)
        for i, (c, k, s, p, pool) in enumerate(self.convs):
            x = layers.conv2d(c, k, s, p, dtype=self.dtype, param_dtype=self.param_dtype,
                              name=f"features.{i}")(x)
            x = nn.relu(x)
            if pool is not None and (last_pool or i < len(self.convs) - 1):
                x = layers.max_pool(x, pool[0], pool[1])
        return x

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.features(x, train=train)
        side = self._map_size()
        layers.check_flatten_shape(x, (self.convs[-1][0], side, side), type(self).__name__,
                                   self.default_input_shape)
        x = layers.flatten_nchw(x)
        for i, width in enumerate((*self.hidden, self.num_classes)):
            if i < len(self.hidden):
                x = nn.relu(nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype,
                                     name=f"classifier.{i}")(x))
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            else:
                x = nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype,
                             name=f"classifier.{i}")(x)
        return x


@register_model
def overfeat_fast(**kwargs: Any) -> OverFeat:
    """OverFeat "fast" model (Table 1): 231x231 input, 5 conv + 3 FC layers, ~145.9M params."""
    kwargs.setdefault("hidden", (3072, 4096))
    return OverFeat(convs=FAST, input_size=231, **kwargs)


@register_model
def overfeat_accurate(**kwargs: Any) -> OverFeat:
    """OverFeat "accurate" model (Table 3): 221x221 input, 6 conv + 3 FC layers, ~144.7M params."""
    kwargs.setdefault("hidden", (4096, 4096))
    return OverFeat(convs=ACCURATE, input_size=221, **kwargs)
