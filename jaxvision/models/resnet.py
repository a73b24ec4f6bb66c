"""ResNet, ResNeXt and Wide ResNet for ImageNet, exact to torchvision.

Papers:

* ResNet: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
  (arXiv:1512.03385).
* ResNeXt: Xie, Girshick, Dollar, Tu, He, "Aggregated Residual Transformations for Deep
  Neural Networks", CVPR 2017 (arXiv:1611.05431): the bottleneck's 3x3 conv is grouped
  (cardinality ``groups``), each group ``width_per_group`` channels wide at stage 1.
* Wide ResNet: Zagoruyko, Komodakis, "Wide Residual Networks", BMVC 2016
  (arXiv:1605.07146); torchvision's ``wide_resnet50_2``/``101_2`` are bottleneck ResNets
  whose inner (3x3) width is doubled, not the paper's CIFAR WRNs (those are in
  :mod:`jaxvision.models.wide_resnet`).

This is torchvision's ResNet "v1.5": in the bottleneck the stride sits on the 3x3 conv
(``conv2``), not on the first 1x1 as in the paper. Shortcuts are identities, or a strided
1x1 conv + BatchNorm (the paper's option B, named ``downsample.0``/``downsample.1``) where the
shape changes. All padding is explicit and symmetric like torch's, so torchvision weights
convert with :func:`jaxvision.weights.convert.convert_torchvision` and give the same logits
at any input size.

Structure (NHWC): ``conv1`` 7x7/2 (64) -> ``bn1`` -> ReLU -> max-pool 3x3/2 pad 1 ->
``layer1..layer4`` (64, 128, 256, 512 planes; stride 1, 2, 2, 2) -> global average pool ->
``fc``. Flax module names are torchvision's ``state_dict`` paths (``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``).

Following the Flax ``examples/imagenet`` design, the blocks receive ``conv``, ``norm`` and
``act`` as fields (built once by the network with :func:`functools.partial`), and each
variant is one line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models import layers
from jaxvision.models.registry import register_model

ModuleDef = Any
Dtype = Any
# A parameter-free shortcut ``(x, out_features, stride) -> y`` for blocks that change shape
# (the paper's option A, used by the CIFAR ResNets); None means a 1x1 projection (option B).
ShortcutFn = Callable[[jax.Array, int, int], jax.Array]


def torch_linear_init(fan_in: int) -> tuple[Callable, Callable]:
    """``torch.nn.Linear``'s default init: kernel and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Returns ``(kernel_init, bias_init)`` for ``nn.Dense``. (Kaiming uniform with ``a=sqrt(5)``
    reduces to that bound; Flax cannot see ``fan_in`` in a bias init, hence the closure.)
    """
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def bias_init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"), bias_init


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut (He et al. 2016, Fig. 2 left); torchvision ``BasicBlock``.

    ``y = act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x))`` where ``conv1`` carries the
    stride. The shortcut is the identity when the shape is kept, else ``shortcut(x,
    features, strides)`` if given (option A), else a strided 1x1 conv + norm named
    ``downsample.0``/``downsample.1`` (option B).

    Input ``[N, H, W, Cin]`` -> ``[N, ceil(H/strides), ceil(W/strides), features]``.
    Parameters (64 -> 64, BN): 2 * 3*3*64*64 + 2 * 2*64 = 73,984.
    """

    features: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable[[jax.Array], jax.Array] = nn.relu
    strides: int = 1
    groups: int = 1
    base_width: int = 64
    shortcut: ShortcutFn | None = None
    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.groups != 1 or self.base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64 (as in "
                             f"torchvision), got groups={self.groups}, "
                             f"base_width={self.base_width}")
        y = self.conv(self.features, 3, self.strides, 1, name="conv1")(x)
        y = self.act(self.norm(name="bn1")(y))
        y = self.conv(self.features, 3, 1, 1, name="conv2")(y)
        y = self.norm(name="bn2")(y)
        return self.act(y + _shortcut(self, x, self.features))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, grouped), 1x1 expand (He et al. 2016, Fig. 5 right).

    torchvision's v1.5 ``Bottleneck``: the stride sits on the 3x3 ``conv2``. The inner width
    is ``int(features * base_width / 64) * groups``: ResNeXt (Xie et al. 2017) uses
    ``groups`` > 1, Wide ResNet-50-2 ``base_width`` = 128. Output channels are
    ``4 * features``.

    Input ``[N, H, W, Cin]`` -> ``[N, ceil(H/strides), ceil(W/strides), 4 * features]``.
    Parameters (256 -> 64 -> 256, BN): 256*64 + 9*64*64 + 64*256 + 2*(64+64+256) = 70,400.
    """

    features: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable[[jax.Array], jax.Array] = nn.relu
    strides: int = 1
    groups: int = 1
    base_width: int = 64
    shortcut: ShortcutFn | None = None
    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = int(self.features * (self.base_width / 64.0)) * self.groups
        out = self.features * self.expansion
        y = self.conv(width, 1, name="conv1")(x)
        y = self.act(self.norm(name="bn1")(y))
        y = self.conv(width, 3, self.strides, 1, groups=self.groups, name="conv2")(y)
        y = self.act(self.norm(name="bn2")(y))
        y = self.conv(out, 1, name="conv3")(y)
        y = self.norm(name="bn3")(y)
        return self.act(y + _shortcut(self, x, out))


def _shortcut(block: BasicBlock | Bottleneck, x: jax.Array, out: int) -> jax.Array:
    """The block's shortcut branch; called inside the block's compact ``__call__``."""
    if block.strides == 1 and x.shape[-1] == out:
        return x
    if block.shortcut is not None:
        return block.shortcut(x, out, block.strides)
    # Same condition as torchvision's _make_layer (stride != 1 or inplanes != planes * exp).
    y = block.conv(out, 1, block.strides, name="downsample.0")(x)
    return block.norm(name="downsample.1")(y)


class ResNet(nn.Module):
    """ResNet / ResNeXt / Wide ResNet for ImageNet-sized images, torchvision-exact.

    Attributes:
      stage_sizes: number of blocks in ``layer1..layer4``.
      block_cls: :class:`BasicBlock` or :class:`Bottleneck`.
      num_classes: size of the ``fc`` output.
      groups: cardinality of the bottleneck's 3x3 conv (ResNeXt).
      width_per_group: channels per group at stage 1 (64 plain, 4 or 8 ResNeXt, 128 wide).
      act: activation (ReLU in every torchvision variant).
      dtype: computation dtype; param_dtype: parameter dtype.

    ``__call__(images: [N, H, W, 3] float32, train=False) -> logits [N, num_classes]`` in
    ``dtype``. Any ``H, W >= 1`` works (torch's shape arithmetic); ImageNet weights expect
    224x224 normalized images. ``train=True`` normalizes with batch statistics and updates
    ``batch_stats`` (call with ``mutable=["batch_stats"]``).
    """

    stage_sizes: Sequence[int]
    block_cls: type[BasicBlock] | type[Bottleneck]
    num_classes: int = 1000
    groups: int = 1
    width_per_group: int = 64
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 3)
    # Every conv/pool is torch-symmetric, so one pixel is the smallest input torch accepts.
    min_input_size: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        layers.check_images(x, model=type(self).__name__, channels=3,
                            min_size=self.min_input_size)
        conv = functools.partial(layers.conv2d, use_bias=False, dtype=self.dtype,
                                 param_dtype=self.param_dtype)
        norm = functools.partial(layers.BatchNorm, use_running_average=not train,
                                 dtype=self.dtype, param_dtype=self.param_dtype)
        x = jnp.asarray(x, self.dtype)
        x = conv(64, 7, 2, 3, name="conv1")(x)
        x = self.act(norm(name="bn1")(x))
        x = layers.max_pool(x, 3, 2, 1)
        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                x = self.block_cls(
                    features=64 * 2**i, conv=conv, norm=norm, act=self.act,
                    strides=2 if i > 0 and j == 0 else 1, groups=self.groups,
                    base_width=self.width_per_group, name=f"layer{i + 1}.{j}")(x)
        x = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)) + flatten
        kernel_init, bias_init = torch_linear_init(x.shape[-1])
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                        kernel_init=kernel_init, bias_init=bias_init, name="fc")(x)


# One-line variants, as in the Flax ImageNet example (classes, not registered builders).
ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block_cls=Bottleneck)
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block_cls=Bottleneck)


@register_model
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (He et al. 2016): basic blocks [2, 2, 2, 2]; 11,689,512 params."""
    return ResNet18(**kwargs)


@register_model
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 (He et al. 2016): basic blocks [3, 4, 6, 3]; 21,797,672 params."""
    return ResNet34(**kwargs)


@register_model
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 v1.5 (He et al. 2016): bottlenecks [3, 4, 6, 3]; 25,557,032 params."""
    return ResNet50(**kwargs)


@register_model
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101 v1.5 (He et al. 2016): bottlenecks [3, 4, 23, 3]; 44,549,160 params."""
    return ResNet101(**kwargs)


@register_model
def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152 v1.5 (He et al. 2016): bottlenecks [3, 8, 36, 3]; 60,192,808 params."""
    return ResNet152(**kwargs)


@register_model
def resnext50_32x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2017): 32 groups of 4 channels; 25,028,904 params."""
    return ResNet50(groups=32, width_per_group=4, **kwargs)


@register_model
def resnext101_32x8d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 32x8d (Xie et al. 2017): 32 groups of 8 channels; 88,791,336 params."""
    return ResNet101(groups=32, width_per_group=8, **kwargs)


@register_model
def resnext101_64x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 64x4d (Xie et al. 2017): 64 groups of 4 channels; 83,455,272 params."""
    return ResNet101(groups=64, width_per_group=4, **kwargs)


@register_model
def wide_resnet50_2(**kwargs: Any) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016; torchvision's bottleneck form).

    The bottleneck's inner width is doubled (``width_per_group=128``); 68,883,240 params.
    """
    return ResNet50(width_per_group=128, **kwargs)


@register_model
def wide_resnet101_2(**kwargs: Any) -> ResNet:
    """Wide ResNet-101-2 (Zagoruyko & Komodakis 2016; torchvision's bottleneck form).

    The bottleneck's inner width is doubled (``width_per_group=128``); 126,886,696 params.
    """
    return ResNet101(width_per_group=128, **kwargs)


__all__ = [
    "BasicBlock", "Bottleneck", "ResNet", "ResNet18", "ResNet34", "ResNet50", "ResNet101",
    "ResNet152", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
    "wide_resnet101_2", "torch_linear_init",
]
