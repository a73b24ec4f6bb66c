"""GoogLeNet (Inception v1), from "Going Deeper with Convolutions" (Szegedy, Liu, Jia,
Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich; CVPR 2015), as torchvision builds it.

torchvision's version (and so this one) departs from the paper in ways that change numbers:

- every conv is conv (no bias) + BatchNorm (``eps=1e-3``) + ReLU (``BasicConv2d``, here
  :class:`jaxvision.models.layers.ConvBNAct`); the paper has no BatchNorm and uses LRN;
- every max pool uses ``ceil_mode=True``;
- the "5x5" branch of each Inception module is a 3x3 conv: an upstream quirk kept for
  compatibility with the pretrained weights;
- ``transform_input=True`` (set by torchvision when loading its pretrained weights) maps
  ImageNet-normalized input back to ``(raw - 0.5) / 0.5`` per channel, the normalization the
  ported weights were trained with.

========================  ===========================================  ================
stage                     layers                                       output (224x224)
========================  ===========================================  ================
conv1, maxpool1           7x7/2 conv 64, 3x3/2 max pool                56x56x64
conv2, conv3, maxpool2    1x1 conv 64, 3x3 conv 192, 3x3/2 max pool    28x28x192
inception3a, 3b, maxpool3                                              14x14x480
inception4a..4e, maxpool4 2x2/2 max pool after 4e                      7x7x832
inception5a, 5b                                                        7x7x1024
avgpool, dropout, fc      global average, dropout 0.2, FC 1024->N      N
aux1 (after 4a, 512 ch)   adaptive avg pool 4x4, 1x1 conv 128,         N
aux2 (after 4d, 528 ch)   FC 2048->1024, ReLU, dropout 0.7, FC->N
========================  ===========================================  ================

Parameters with 1000 classes: 6,624,904 without the auxiliary heads, 13,004,888 with both.
The auxiliary classifiers are evaluated only in training mode, where the model returns
:class:`GoogLeNetOutputs` ``(logits, aux_logits2, aux_logits1)`` in torchvision's field order.

Flax module names are torchvision's ``state_dict`` paths (``conv1.conv``, ``conv1.bn``,
``inception3a.branch2.0.conv``, ``aux1.fc1``), so torchvision checkpoints convert with
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
from jaxvision.models.registry import register_model

ModuleDef = Callable[..., nn.Module]

# ImageNet normalization constants that transform_input undoes (torchvision's values).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) per Inception module (paper Table 1).
INCEPTION_CONFIG: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}

# Smallest input torchvision's GoogLeNet accepts: below 15x15 maxpool3 sees a 1x1 map and
# its ceil-mode output would be empty.
MIN_SIZE = 15


class GoogLeNetOutputs(NamedTuple):
    """Training-mode outputs with auxiliary heads, torchvision's field order.

    Each field is ``[N, num_classes]`` in the model's ``dtype``.
    """

    logits: jax.Array
    aux_logits2: jax.Array
    aux_logits1: jax.Array


def transform_input(x: jax.Array) -> jax.Array:
    """Maps ImageNet-normalized images to ``(raw - 0.5) / 0.5`` per channel.

    ``x: [N, H, W, 3]`` -> same shape and dtype; ``x_c * (std_c / 0.5) + (mean_c - 0.5) /
    0.5``, torchvision's ``_transform_input`` (GoogLeNet and Inception v3).
    """
    scale = jnp.asarray([s / 0.5 for s in IMAGENET_STD], x.dtype)
    shift = jnp.asarray([(m - 0.5) / 0.5 for m in IMAGENET_MEAN], x.dtype)
    return x * scale + shift


class Inception(nn.Module):
    """An Inception module: four parallel branches concatenated on channels.

    ``x: [N, H, W, Cin] -> [N, H, W, ch1x1 + ch3x3 + ch5x5 + pool_proj]``. Branch 3 (the
    paper's 5x5) uses a 3x3 kernel, as torchvision does.
    """

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        b1 = self.conv(self.ch1x1, 1, name="branch1")(x, train)
        b2 = self.conv(self.ch3x3red, 1, name="branch2.0")(x, train)
        b2 = self.conv(self.ch3x3, 3, padding=1, name="branch2.1")(b2, train)
        b3 = self.conv(self.ch5x5red, 1, name="branch3.0")(x, train)
        b3 = self.conv(self.ch5x5, 3, padding=1, name="branch3.1")(b3, train)  # sic: 3x3
        b4 = layers.max_pool(x, 3, 1, 1, ceil_mode=True)
        b4 = self.conv(self.pool_proj, 1, name="branch4.1")(b4, train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: ``x: [N, H, W, C] -> [N, num_classes]`` (any ``H, W``).

    Adaptive average pool to 4x4, 1x1 conv to 128, FC 2048->1024, ReLU, dropout, FC.
    """

    num_classes: int
    dropout: float
    conv: ModuleDef
    dense: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = layers.adaptive_avg_pool(x, 4)
        x = self.conv(128, 1, name="conv")(x, train)
        x = layers.flatten_nchw(x)  # fc1 rows are permuted at conversion (torch_flatten_shapes)
        x = nn.relu(self.dense(1024, name="fc1")(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return self.dense(self.num_classes, name="fc2")(x)


class GoogLeNet(nn.Module):
    """GoogLeNet: ``images: [N, H, W, 3] float -> logits [N, num_classes]``, any ``H, W >= 15``.

    Attributes:
      num_classes: output size of ``fc`` (and of the auxiliary heads).
      aux_logits: build the two auxiliary classifiers (torchvision's default, and needed to
        load torchvision's checkpoints). Their variables are created by ``init`` in either
        mode; they run only with ``train=True``.
      transform_input: map ImageNet-normalized input to ``(raw - 0.5) / 0.5`` first (set it
        for torchvision's pretrained weights, as torchvision does).
      dropout: dropout rate before ``fc``.
      dropout_aux: dropout rate inside the auxiliary heads.
      dtype: computation dtype.
      param_dtype: parameter dtype.

    ``__call__(x, train=False)`` returns logits ``[N, num_classes]``; with ``train=True``
    and ``aux_logits`` it returns :class:`GoogLeNetOutputs`. Training mode needs
    ``mutable=["batch_stats"]`` and, with non-zero dropout, a ``"dropout"`` rng.

    Initialization: ``fc`` and the aux FCs draw from N(0, 0.01) as in torchvision; conv
    kernels use the zoo's He init (torchvision: N(0, 0.01)), which BatchNorm makes
    immaterial to the function computed.
    """

    num_classes: int = 1000
    aux_logits: bool = True
    transform_input: bool = False
    dropout: float = 0.2
    dropout_aux: float = 0.7
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 3)
    torch_flatten_shapes: ClassVar[dict[str, tuple[int, int, int]]] = {
        "aux1.fc1": (128, 4, 4), "aux2.fc1": (128, 4, 4)}

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array | GoogLeNetOutputs:
        checks.check_images(x, model="googlenet", min_size=MIN_SIZE)
        x = x.astype(self.dtype)
        if self.transform_input:
            x = transform_input(x)
        conv = functools.partial(layers.ConvBNAct, eps=1e-3, dtype=self.dtype,
                                 param_dtype=self.param_dtype)
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype,
                                  kernel_init=nn.initializers.normal(0.01))

        def inception(name: str, y: jax.Array) -> jax.Array:
            return Inception(*INCEPTION_CONFIG[name], conv=conv, name=name)(y, train)

        def aux(name: str, y: jax.Array) -> jax.Array:
            return InceptionAux(self.num_classes, self.dropout_aux, conv=conv, dense=dense,
                                name=name)(y, train)

        # The aux heads also run at init in eval mode, so that init(train=False) creates
        # every variable a torchvision checkpoint (and later training) needs.
        run_aux = self.aux_logits and (train or self.is_initializing())

        x = conv(64, 7, 2, 3, name="conv1")(x, train)
        x = layers.max_pool(x, 3, 2, ceil_mode=True)
        x = conv(64, 1, name="conv2")(x, train)
        x = conv(192, 3, padding=1, name="conv3")(x, train)
        x = layers.max_pool(x, 3, 2, ceil_mode=True)
        x = inception("inception3a", x)
        x = inception("inception3b", x)
        x = layers.max_pool(x, 3, 2, ceil_mode=True)
        x = inception("inception4a", x)
        aux1 = aux("aux1", x) if run_aux else None
        x = inception("inception4b", x)
        x = inception("inception4c", x)
        x = inception("inception4d", x)
        aux2 = aux("aux2", x) if run_aux else None
        x = inception("inception4e", x)
        x = layers.max_pool(x, 2, 2, ceil_mode=True)
        x = inception("inception5a", x)
        x = inception("inception5b", x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        logits = dense(self.num_classes, name="fc")(x)
        if train and self.aux_logits:
            return GoogLeNetOutputs(logits, aux2, aux1)
        return logits


@register_model
def googlenet(**kwargs: Any) -> GoogLeNet:
    """GoogLeNet (Inception v1), torchvision's ``googlenet``.

    Keyword arguments are :class:`GoogLeNet` fields (``num_classes``, ``aux_logits``,
    ``transform_input``, ``dropout``, ``dropout_aux``, ``dtype``, ``param_dtype``). For
    torchvision's ``IMAGENET1K_V1`` weights use ``transform_input=True`` (torchvision sets
    it when loading them); 6,624,904 parameters without the aux heads, 13,004,888 with.
    """
    return GoogLeNet(**kwargs)
