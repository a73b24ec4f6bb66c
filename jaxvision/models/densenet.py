"""DenseNet, from "Densely Connected Convolutional Networks" (Huang, Liu, van der Maaten,
Weinberger; CVPR 2017, arXiv:1608.06993), as torchvision builds it, plus the paper's CIFAR
DenseNet-BC (L=100, k=12).

Every layer of a dense block sees the concatenation of all earlier feature maps of the block
and adds ``growth_rate`` (the paper's k) channels. The torchvision models are DenseNet-BC:
each layer is a bottleneck, BN-ReLU-1x1 conv to ``bn_size * k`` channels then BN-ReLU-3x3
conv to k (pre-activation, so :class:`jaxvision.models.layers.ConvBNAct`'s conv-BN-ReLU
order does not apply), and each transition halves the channels (compression 0.5) with
BN-ReLU-1x1 conv and a 2x2/2 average pool.

==================  ===============================================  ==================
stage               layers                                           output (224x224)
==================  ===============================================  ==================
features.conv0..    7x7/2 conv, BN, ReLU, 3x3/2 max pool (pad 1)     56x56x(2k)
denseblock1..4      (6, 12, 24, 16) layers for densenet121;          7x7xC
transition1..3      (6, 12, 32, 32) 169; (6, 12, 48, 32) 201;
                    (6, 12, 36, 24) with k=48 and 96 stem channels
                    for 161; transitions halve H, W and channels
norm5, classifier   BN, ReLU, global average pool, FC C->N           N
==================  ===============================================  ==================

Parameters with 1000 classes: densenet121 7,978,856; densenet161 28,681,000; densenet169
14,149,480; densenet201 20,013,928 (torchvision's counts).

The CIFAR model (paper Sec. 3 and 4.1): a 3x3 conv to ``2k`` channels (no BN, ReLU or pool),
three dense blocks of ``(L - 4) / 6 = 16`` bottleneck layers joined by compressing
transitions, then BN, ReLU, global average pool and FC; 769,162 parameters for 10 classes
(the paper's "0.8M"), 4.51% CIFAR-10+ error in the paper.

Flax module names are torchvision's ``state_dict`` paths (``features.conv0``,
``features.denseblock1.denselayer1.norm1``, ``features.transition1.conv``, ``classifier``),
so torchvision checkpoints convert with :func:`jaxvision.weights.convert.convert_state_dict`.
(The published files use the older ``norm.1`` spelling; :func:`jaxvision.weights.load`
renames it as torchvision does.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision import checks
from jaxvision.models import layers
from jaxvision.models.registry import register_model

ModuleDef = Callable[..., nn.Module]
Dtype = Any

# torchvision's DenseNet initializes convs with kaiming_normal_ (fan_in, ReLU gain).
_conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def _min_input_size(stem: str, num_transitions: int) -> int:
    """Smallest H (and W) torch accepts: every transition's 2x2 pool needs a 2x2 map.

    The ImageNet stem maps ``H`` to ``ceil(H / 4)``, the CIFAR stem keeps ``H``; each
    transition floors ``H / 2``. 29 for the torchvision models, 4 for the CIFAR one.
    """
    need = 2 ** num_transitions if num_transitions else 1  # floor(h/2) >= n <=> h >= 2n
    return 4 * (need - 1) + 1 if stem == "imagenet" else need


class DenseLayer(nn.Module):
    """One bottleneck layer: BN-ReLU-1x1 conv (``bn_size * k``) then BN-ReLU-3x3 conv (k).

    ``x: [N, H, W, C] -> [N, H, W, C + growth_rate]``: the input with the layer's ``k`` new
    channels concatenated after it, as the next layer sees it (torchvision concatenates the
    list of earlier outputs; same values, same order).

    Attributes:
      growth_rate: k, channels added by the layer.
      bn_size: bottleneck width factor (4 in DenseNet-BC).
      drop_rate: dropout on the new channels (training only).
      conv: ``layers.conv2d`` partial; norm: ``layers.BatchNorm`` partial (mode set).
      deterministic: disables dropout (evaluation).
    """

    growth_rate: int
    bn_size: int
    drop_rate: float
    conv: ModuleDef
    norm: ModuleDef
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(self.bn_size * self.growth_rate, 1, name="conv1")(
            nn.relu(self.norm(name="norm1")(x)))
        y = self.conv(self.growth_rate, 3, 1, 1, name="conv2")(
            nn.relu(self.norm(name="norm2")(y)))
        y = nn.Dropout(self.drop_rate, deterministic=self.deterministic)(y)
        return jnp.concatenate([x, y], axis=-1)


class Transition(nn.Module):
    """BN-ReLU-1x1 conv to ``features`` channels, 2x2/2 average pool (floor mode).

    ``x: [N, H, W, C] -> [N, H // 2, W // 2, features]``.
    """

    features: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv(self.features, 1, name="conv")(nn.relu(self.norm(name="norm")(x)))
        return layers.avg_pool(x, 2, 2)


class DenseNet(nn.Module):
    """DenseNet-BC: ``images: [N, H, W, 3] float -> logits [N, num_classes]``.

    Attributes:
      growth_rate: k, channels each dense layer adds.
      block_config: number of layers in each dense block.
      num_init_features: channels of the stem conv.
      bn_size: bottleneck width factor (``bn_size * k`` channels before the 3x3 conv).
      drop_rate: dropout after each dense layer (training only; needs a ``"dropout"`` rng).
      num_classes: size of the ``classifier`` output.
      stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max pool; torchvision) or
        ``"cifar"`` (one 3x3 conv, stride 1; the paper's CIFAR/SVHN networks).
      memory_efficient: recompute each dense layer in the backward pass instead of storing
        its activations (``nn.remat``), torchvision's option of the same name; the numbers
        are unchanged.
      dtype: computation dtype; param_dtype: parameter dtype.

    ``__call__(x, train=False)``; ``train=True`` normalizes with batch statistics and
    updates ``batch_stats`` (``mutable=["batch_stats"]``). Any ``H, W`` from
    :attr:`min_input_size` up works, as in torch; ImageNet weights expect 224x224.
    """

    growth_rate: int = 32
    block_config: Sequence[int] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    drop_rate: float = 0.0
    num_classes: int = 1000
    stem: str = "imagenet"
    memory_efficient: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 3)

    @property
    def min_input_size(self) -> int:
        return _min_input_size(self.stem, len(self.block_config) - 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")
        name = "densenet" if self.stem == "imagenet" else "densenet (CIFAR)"
        checks.check_images(x, model=name, min_size=self.min_input_size)
        conv = functools.partial(layers.conv2d, use_bias=False, dtype=self.dtype,
                                 param_dtype=self.param_dtype, kernel_init=_conv_init)
        norm = functools.partial(layers.BatchNorm, use_running_average=not train,
                                 dtype=self.dtype, param_dtype=self.param_dtype)
        dense_layer = nn.remat(DenseLayer) if self.memory_efficient else DenseLayer
        x = jnp.asarray(x, self.dtype)

        if self.stem == "imagenet":
            x = conv(self.num_init_features, 7, 2, 3, name="features.conv0")(x)
            x = nn.relu(norm(name="features.norm0")(x))
            x = layers.max_pool(x, 3, 2, 1)
        else:  # the first dense layer starts with BN-ReLU, so the stem is a bare conv
            x = conv(self.num_init_features, 3, 1, 1, name="features.conv0")(x)

        for i, num_layers in enumerate(self.block_config):
            block = f"features.denseblock{i + 1}"
            for j in range(num_layers):
                x = dense_layer(self.growth_rate, self.bn_size, self.drop_rate, conv, norm,
                                deterministic=not train, name=f"{block}.denselayer{j + 1}")(x)
            if i != len(self.block_config) - 1:
                x = Transition(x.shape[-1] // 2, conv, norm,
                               name=f"features.transition{i + 1}")(x)

        x = nn.relu(norm(name="features.norm5")(x))
        x = jnp.mean(x, axis=(1, 2))  # adaptive_avg_pool2d((1, 1)) + flatten
        kernel_init, _ = layers.torch_linear_init(x.shape[-1])
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                        kernel_init=kernel_init, bias_init=nn.initializers.zeros,
                        name="classifier")(x)


# One-line variants (classes, as in resnet.py); torchvision's configurations.
DenseNet121 = functools.partial(DenseNet, growth_rate=32, block_config=(6, 12, 24, 16),
                                num_init_features=64)
DenseNet161 = functools.partial(DenseNet, growth_rate=48, block_config=(6, 12, 36, 24),
                                num_init_features=96)
DenseNet169 = functools.partial(DenseNet, growth_rate=32, block_config=(6, 12, 32, 32),
                                num_init_features=64)
DenseNet201 = functools.partial(DenseNet, growth_rate=32, block_config=(6, 12, 48, 32),
                                num_init_features=64)
# Paper Sec. 4.1: L = 100 = 3 blocks * 16 layers * 2 convs + 4; 2k stem channels.
DenseNetBC100k12 = functools.partial(DenseNet, growth_rate=12, block_config=(16, 16, 16),
                                     num_init_features=24, stem="cifar", num_classes=10)


@register_model
def densenet121(**kwargs: Any) -> DenseNet:
    """DenseNet-121 (Huang et al. 2017), torchvision's ``densenet121``; 7,978,856 params.

    Keyword arguments are :class:`DenseNet` fields (``num_classes``, ``drop_rate``,
    ``memory_efficient``, ``dtype``, ``param_dtype``).
    """
    return DenseNet121(**kwargs)


@register_model
def densenet161(**kwargs: Any) -> DenseNet:
    """DenseNet-161 (k=48, 96 stem channels), torchvision's ``densenet161``; 28,681,000 params.
    """
    return DenseNet161(**kwargs)


@register_model
def densenet169(**kwargs: Any) -> DenseNet:
    """DenseNet-169, torchvision's ``densenet169``; 14,149,480 params."""
    return DenseNet169(**kwargs)


@register_model
def densenet201(**kwargs: Any) -> DenseNet:
    """DenseNet-201, torchvision's ``densenet201``; 20,013,928 params."""
    return DenseNet201(**kwargs)


@register_model
def densenet_bc_100_12(**kwargs: Any) -> DenseNet:
    """DenseNet-BC (L=100, k=12) for 32x32 CIFAR images (Huang et al. 2017, Table 2).

    10 classes by default; 769,162 parameters (the paper's 0.8M). The paper trains it with
    ``drop_rate=0`` on augmented CIFAR (4.51% CIFAR-10+ error) and 0.2 without augmentation.
    """
    return DenseNetBC100k12(**kwargs)


__all__ = [
    "DenseLayer", "DenseNet", "DenseNet121", "DenseNet161", "DenseNet169", "DenseNet201",
    "DenseNetBC100k12", "Transition", "densenet121", "densenet161", "densenet169",
    "densenet201", "densenet_bc_100_12",
]
