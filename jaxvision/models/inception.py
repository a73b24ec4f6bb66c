"""Inception v3, from "Rethinking the Inception Architecture for Computer Vision" (Szegedy,
Vanhoucke, Ioffe, Shlens, Wojna; CVPR 2016, arXiv:1512.00567), as torchvision builds it.

Every conv is conv (no bias) + BatchNorm (``eps=1e-3``) + ReLU (torchvision's
``BasicConv2d``, here :class:`jaxvision.models.layers.ConvBNAct`). The Inception modules
factorize large convolutions: 5x5 as two 3x3 (``InceptionA``), n x n as 1 x n then n x 1
(``InceptionC``, n = 7), and the last modules split 3x3 into parallel 1x3 and 3x1 outputs
(``InceptionE``); ``InceptionB`` and ``InceptionD`` reduce the grid with stride-2 branches
next to a max pool. The pooling branches average over 3x3 windows with the zero padding
counted (torch's ``count_include_pad=True``).

=====================================  ===============================  ===============
stage                                  layers                           output (299)
=====================================  ===============================  ===============
Conv2d_1a..2b, maxpool1                3x3/2 32, 3x3 32, 3x3 pad 64,    73x73x64
                                       3x3/2 max pool
Conv2d_3b, 4a, maxpool2                1x1 80, 3x3 192, 3x3/2 max pool  35x35x192
Mixed_5b, 5c, 5d                       InceptionA (pool 32, 64, 64)     35x35x288
Mixed_6a                               InceptionB                       17x17x768
Mixed_6b..6e                           InceptionC (c7 128, 160, 160,    17x17x768
                                       192)
AuxLogits (on Mixed_6e, training)      5x5/3 avg pool, 1x1 128,         N
                                       5x5 768, global avg, FC 768->N
Mixed_7a                               InceptionD                       8x8x1280
Mixed_7b, 7c                           InceptionE                       8x8x2048
avgpool, dropout, fc                   global average, dropout 0.5, FC  N
=====================================  ===============================  ===============

Parameters with 1000 classes: 27,161,264 with the auxiliary head (torchvision's count),
23,834,568 without. Evaluation runs on any input from 75x75 up (torchvision's ``min_size``);
in training mode the auxiliary head needs a 17x17 ``Mixed_6e`` map, i.e. inputs of at least
299x299, exactly as in torch. ``transform_input=True`` (set by torchvision with its
pretrained weights) maps ImageNet-normalized input to ``(raw - 0.5) / 0.5``, as GoogLeNet's.

In training mode with ``aux_logits`` the model returns :class:`InceptionOutputs`
``(logits, aux_logits)`` (torchvision's field order), otherwise logits, following
:mod:`jaxvision.models.googlenet`'s contract. Flax module names are torchvision's
``state_dict`` paths (``Conv2d_1a_3x3.conv``, ``Mixed_5b.branch5x5_1.bn``,
``AuxLogits.conv1.conv``, ``fc``), so torchvision checkpoints convert with
:func:`jaxvision.weights.convert.convert_state_dict`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision import checks
from jaxvision.models import layers
from jaxvision.models.googlenet import transform_input
from jaxvision.models.registry import register_model

ModuleDef = Callable[..., nn.Module]

# torchvision's Inception3.meta["min_size"]: below 75 Mixed_7a's stride-2 3x3 convs see a
# 2x2 map and torch fails.
MIN_SIZE = 75
# The auxiliary head's 5x5/3 average pool and 5x5 conv need a 17x17 map (299x299 input).
AUX_MIN_MAP = 17


class InceptionOutputs(NamedTuple):
    """Training-mode outputs with the auxiliary head, torchvision's field order.

    Each field is ``[N, num_classes]`` in the model's ``dtype``.
    """

    logits: jax.Array
    aux_logits: jax.Array


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """``F.avg_pool2d(x, 3, stride=1, padding=1)``: the pooling branch of A, C and E."""
    return layers.avg_pool(x, 3, 1, 1)


class InceptionA(nn.Module):
    """35x35 module: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1 (``pool_features``).

    ``x: [N, H, W, C] -> [N, H, W, 224 + pool_features]``.
    """

    pool_features: int
    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        b1 = self.conv(64, 1, name="branch1x1")(x, train)
        b5 = self.conv(48, 1, name="branch5x5_1")(x, train)
        b5 = self.conv(64, 5, padding=2, name="branch5x5_2")(b5, train)
        b3 = self.conv(64, 1, name="branch3x3dbl_1")(x, train)
        b3 = self.conv(96, 3, padding=1, name="branch3x3dbl_2")(b3, train)
        b3 = self.conv(96, 3, padding=1, name="branch3x3dbl_3")(b3, train)
        bp = self.conv(self.pool_features, 1, name="branch_pool")(_avg_pool_3x3(x), train)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | 3x3/2 max pool (no padding).

    ``x: [N, H, W, C] -> [N, (H - 3) // 2 + 1, (W - 3) // 2 + 1, 480 + C]``.
    """

    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        b3 = self.conv(384, 3, 2, name="branch3x3")(x, train)
        bd = self.conv(64, 1, name="branch3x3dbl_1")(x, train)
        bd = self.conv(96, 3, padding=1, name="branch3x3dbl_2")(bd, train)
        bd = self.conv(96, 3, 2, name="branch3x3dbl_3")(bd, train)
        return jnp.concatenate([b3, bd, layers.max_pool(x, 3, 2)], axis=-1)


class InceptionC(nn.Module):
    """17x17 module with 7x7 convs factorized into 1x7 and 7x1 (``channels_7x7`` wide).

    ``x: [N, H, W, C] -> [N, H, W, 768]``.
    """

    channels_7x7: int
    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        c7 = self.channels_7x7
        b1 = self.conv(192, 1, name="branch1x1")(x, train)
        b7 = self.conv(c7, 1, name="branch7x7_1")(x, train)
        b7 = self.conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7, train)
        b7 = self.conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7, train)
        bd = self.conv(c7, 1, name="branch7x7dbl_1")(x, train)
        bd = self.conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd, train)
        bd = self.conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd, train)
        bd = self.conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd, train)
        bd = self.conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd, train)
        bp = self.conv(192, 1, name="branch_pool")(_avg_pool_3x3(x), train)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | 3x3/2 max pool.

    ``x: [N, H, W, C] -> [N, (H - 3) // 2 + 1, (W - 3) // 2 + 1, 512 + C]``.
    """

    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        b3 = self.conv(192, 1, name="branch3x3_1")(x, train)
        b3 = self.conv(320, 3, 2, name="branch3x3_2")(b3, train)
        b7 = self.conv(192, 1, name="branch7x7x3_1")(x, train)
        b7 = self.conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7, train)
        b7 = self.conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7, train)
        b7 = self.conv(192, 3, 2, name="branch7x7x3_4")(b7, train)
        return jnp.concatenate([b3, b7, layers.max_pool(x, 3, 2)], axis=-1)


class InceptionE(nn.Module):
    """8x8 module whose 3x3 branches end in parallel 1x3 and 3x1 convs (concatenated).

    ``x: [N, H, W, C] -> [N, H, W, 2048]``.
    """

    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        b1 = self.conv(320, 1, name="branch1x1")(x, train)
        b3 = self.conv(384, 1, name="branch3x3_1")(x, train)
        b3 = jnp.concatenate([
            self.conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3, train),
            self.conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3, train),
        ], axis=-1)
        bd = self.conv(448, 1, name="branch3x3dbl_1")(x, train)
        bd = self.conv(384, 3, padding=1, name="branch3x3dbl_2")(bd, train)
        bd = jnp.concatenate([
            self.conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd, train),
            self.conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd, train),
        ], axis=-1)
        bp = self.conv(192, 1, name="branch_pool")(_avg_pool_3x3(x), train)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on ``Mixed_6e``: ``x: [N, H, W, 768] -> [N, num_classes]``.

    5x5/3 average pool, 1x1 conv 128, 5x5 conv 768, global average pool, FC. Needs
    ``H, W >= 17`` (torch fails below that too).
    """

    num_classes: int
    conv: ModuleDef
    dense: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        h, w = x.shape[1:3]
        if min(h, w) < AUX_MIN_MAP:
            if not self.is_initializing() or train:
                raise ValueError(
                    f"inception_v3's auxiliary classifier needs a {AUX_MIN_MAP}x{AUX_MIN_MAP} "
                    f"Mixed_6e map, i.e. images of at least 299x299 in training mode, got a "
                    f"{h}x{w} map; use larger images or aux_logits=False")
            # init in eval mode at a small size: the head's variables do not depend on the
            # spatial size, so build them on a placeholder map (its output is not used).
            x = jnp.zeros((x.shape[0], AUX_MIN_MAP, AUX_MIN_MAP, x.shape[3]), x.dtype)
        x = layers.avg_pool(x, 5, 3)
        x = self.conv(128, 1, name="conv0")(x, train)
        x = self.conv(768, 5, name="conv1")(x, train)
        x = jnp.mean(x, axis=(1, 2))  # adaptive_avg_pool2d((1, 1)) + flatten
        return self.dense(self.num_classes, name="fc")(x)


class Inception3(nn.Module):
    """Inception v3: ``images: [N, H, W, 3] float -> logits [N, num_classes]``, ``H, W >= 75``.

    Attributes:
      num_classes: output size of ``fc`` (and of the auxiliary head).
      aux_logits: build the auxiliary classifier (torchvision's default, and needed to load
        torchvision's checkpoints). Its variables are created by ``init`` in either mode; it
        runs only with ``train=True`` (inputs of at least 299x299 then).
      transform_input: map ImageNet-normalized input to ``(raw - 0.5) / 0.5`` first (set it
        for torchvision's pretrained weights, as torchvision does).
      dropout: dropout rate before ``fc``.
      dtype: computation dtype.
      param_dtype: parameter dtype.

    ``__call__(x, train=False)`` returns logits ``[N, num_classes]``; with ``train=True``
    and ``aux_logits`` it returns :class:`InceptionOutputs`. Training mode needs
    ``mutable=["batch_stats"]`` and, with non-zero dropout, a ``"dropout"`` rng.

    Initialization: ``fc`` draws from N(0, 0.1) and the aux ``fc`` from N(0, 0.001) as in
    torchvision (whose truncation at +-2 is immaterial at these scales), biases from
    torch's default uniform; conv kernels use the zoo's He init (torchvision: N(0, 0.1)),
    which BatchNorm makes immaterial to the function computed.
    """

    num_classes: int = 1000
    aux_logits: bool = True
    transform_input: bool = False
    dropout: float = 0.5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    default_input_shape: ClassVar[tuple[int, int, int]] = (299, 299, 3)
    min_input_size: ClassVar[int] = MIN_SIZE

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array | InceptionOutputs:
        checks.check_images(x, model="inception_v3", min_size=MIN_SIZE)
        x = x.astype(self.dtype)
        if self.transform_input:
            x = transform_input(x)
        conv = functools.partial(layers.ConvBNAct, eps=1e-3, dtype=self.dtype,
                                 param_dtype=self.param_dtype)

        def dense(features: int, std: float, name: str, fan_in: int) -> nn.Dense:
            return nn.Dense(features, dtype=self.dtype, param_dtype=self.param_dtype,
                            kernel_init=nn.initializers.normal(std),
                            bias_init=layers.torch_linear_init(fan_in)[1], name=name)

        x = conv(32, 3, 2, name="Conv2d_1a_3x3")(x, train)
        x = conv(32, 3, name="Conv2d_2a_3x3")(x, train)
        x = conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x, train)
        x = layers.max_pool(x, 3, 2)
        x = conv(80, 1, name="Conv2d_3b_1x1")(x, train)
        x = conv(192, 3, name="Conv2d_4a_3x3")(x, train)
        x = layers.max_pool(x, 3, 2)
        x = InceptionA(32, conv, name="Mixed_5b")(x, train)
        x = InceptionA(64, conv, name="Mixed_5c")(x, train)
        x = InceptionA(64, conv, name="Mixed_5d")(x, train)
        x = InceptionB(conv, name="Mixed_6a")(x, train)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                         ("Mixed_6e", 192)):
            x = InceptionC(c7, conv, name=name)(x, train)
        aux = None
        # The head also runs at init in eval mode, so that init(train=False) creates every
        # variable a torchvision checkpoint (and later training) needs.
        if self.aux_logits and (train or self.is_initializing()):
            aux_dense = functools.partial(dense, std=0.001, fan_in=768)
            aux = InceptionAux(self.num_classes, conv, aux_dense, name="AuxLogits")(x, train)
        x = InceptionD(conv, name="Mixed_7a")(x, train)
        x = InceptionE(conv, name="Mixed_7b")(x, train)
        x = InceptionE(conv, name="Mixed_7c")(x, train)
        x = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)) + flatten
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        logits = dense(self.num_classes, 0.1, "fc", x.shape[-1])(x)
        if train and self.aux_logits:
            return InceptionOutputs(logits, aux)
        return logits


@register_model
def inception_v3(**kwargs: Any) -> Inception3:
    """Inception v3, torchvision's ``inception_v3``; 27,161,264 parameters (aux included).

    Keyword arguments are :class:`Inception3` fields (``num_classes``, ``aux_logits``,
    ``transform_input``, ``dropout``, ``dtype``, ``param_dtype``). For torchvision's
    ``IMAGENET1K_V1`` weights use ``transform_input=True`` (torchvision sets it when loading
    them) and 299x299 crops of images resized to 342.
    """
    return Inception3(**kwargs)


__all__ = [
    "Inception3", "InceptionA", "InceptionAux", "InceptionB", "InceptionC", "InceptionD",
    "InceptionE", "InceptionOutputs", "inception_v3",
]
