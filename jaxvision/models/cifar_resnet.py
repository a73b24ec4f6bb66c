"""The CIFAR-10 ResNets of He et al. 2016 (ResNet-20/32/44/56/110).

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385), Section 4.2: a 3x3 conv (16 filters) on 32x32 images, then three stages
of ``n`` basic blocks with 16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps (the first
conv of stages 2 and 3 has stride 2), global average pooling and a fully connected layer:
``6n + 2`` weighted layers. Every conv is followed by BatchNorm; no conv has a bias.

Shortcuts are identities; where the shape changes the paper uses option A, a
parameter-free shortcut: subsample by 2 and pad the new channels with zeros
(:func:`zero_pad_shortcut`). ``shortcut="B"`` selects torchvision-style 1x1 projections
instead. Parameter counts for 10 classes (option A / option B):

==========  =====  ===========  ===========  =============
model       n      option A     option B     paper
==========  =====  ===========  ===========  =============
resnet20    3      269,722      272,474      0.27M
resnet32    5      464,154      466,906      0.46M
resnet44    7      658,586      661,338      0.66M
resnet56    9      853,018      855,770      0.85M
resnet110   18     1,727,962    1,730,714    1.7M
==========  =====  ===========  ===========  =============

The residual block is :class:`jaxvision.models.resnet.BasicBlock` (the same block as
ResNet-18/34, here given the option-A shortcut), so the variable names follow the same
torchvision scheme: ``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``.

The builders are registered under the paper's names ``resnet20`` ... ``resnet110`` (no
torchvision ImageNet builder uses those depths).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision import checks
from jaxvision.models.features import FeatureStream, collect
from jaxvision.models.registry import register_model
from jaxvision.models.resnet import (
    BasicBlock,
    classifier_head,
    conv_and_norm,
    stages,
    stem,
    stem_names,
)

Dtype = Any


def zero_pad_shortcut(x: jax.Array, features: int, strides: int) -> jax.Array:
    """Option-A shortcut (He et al. 2016): subsample by ``strides``, zero-pad new channels.

    ``x: [N, H, W, C]`` -> ``[N, ceil(H/strides), ceil(W/strides), features]`` with channels
    ``C..features-1`` zero (the padding is appended after the existing channels; the paper
    does not fix where, and any placement is equivalent up to a channel permutation).
    Subsampling keeps pixels ``0, s, 2s, ...``: the centres of a 3x3, stride-s, pad-1 conv's
    windows, so the shortcut and the residual branch stay aligned.
    """
    if features < x.shape[-1]:
        raise ValueError(f"option-A shortcut can only add channels: {x.shape[-1]} -> {features}")
    y = x[:, ::strides, ::strides, :]
    return jnp.pad(y, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))


class CifarResNet(nn.Module):
    """He et al. 2016's CIFAR ResNet with ``6 * blocks_per_stage + 2`` layers.

    Attributes:
      blocks_per_stage: ``n`` (3, 5, 7, 9, 18 for ResNet-20/32/44/56/110).
      num_classes: size of the ``fc`` output (10 for CIFAR-10).
      shortcut: ``"A"`` (zero-padding, the paper's CIFAR choice) or ``"B"`` (1x1 projection
        + BatchNorm named ``downsample.0``/``downsample.1``).
      widths: filters of the three stages.
      dtype: computation dtype; param_dtype: parameter dtype.

    ``__call__(images: [N, H, W, 3] float32, train=False) -> logits [N, num_classes]``.
    Designed for 32x32 images; every size ``>= 1`` works (global average pooling).

    ``feature_maps(images, train=False, last=None)``: ``conv1``, ``bn1``, ``relu``, ``stem``
    (the same map as ``relu``), ``layer1..layer3`` (strides 1, 2, 4).
    """

    blocks_per_stage: int
    num_classes: int = 10
    shortcut: Literal["A", "B"] = "A"
    widths: tuple[int, int, int] = (16, 32, 64)
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    default_input_shape: ClassVar[tuple[int, int, int]] = (32, 32, 3)
    min_input_size: ClassVar[int] = 1

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of :meth:`feature_maps`, input to output."""
        return (stem_names(norm=True, max_pool=False)
                + tuple(f"layer{i + 1}" for i in range(len(self.widths))))

    @nn.nowrap
    def _stream(self, x: jax.Array, train: bool) -> FeatureStream:
        checks.check_images(x, model=type(self).__name__, channels=3,
                            min_size=self.min_input_size)
        if self.shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' (zero-padding) or 'B' (projection), got "
                             f"{self.shortcut!r}")
        conv, norm = conv_and_norm(train=train, dtype=self.dtype, param_dtype=self.param_dtype)
        shortcut = zero_pad_shortcut if self.shortcut == "A" else None
        x = yield from stem(jnp.asarray(x, self.dtype), conv, norm, self.act,
                            features=self.widths[0], kernel_size=3, stride=1, max_pool=False)

        def block(i: int, j: int) -> nn.Module:
            return BasicBlock(features=self.widths[i], conv=conv, norm=norm, act=self.act,
                              strides=2 if i > 0 and j == 0 else 1, shortcut=shortcut,
                              name=f"layer{i + 1}.{j}")

        yield from stages(x, block, [self.blocks_per_stage] * len(self.widths))

    @nn.compact
    def feature_maps(self, x: jax.Array, train: bool = False,
                     last: str | None = None) -> dict[str, jax.Array]:
        """Named maps ``[N, h, w, C]`` of ``images: [N, H, W, 3]`` up to ``last``."""
        return collect(self._stream(x, train), self.feature_names, last, type(self).__name__)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.feature_maps(x, train=train)[f"layer{len(self.widths)}"]
        return classifier_head(x, self.num_classes, dtype=self.dtype,
                               param_dtype=self.param_dtype)


ResNet20 = functools.partial(CifarResNet, blocks_per_stage=3)
ResNet32 = functools.partial(CifarResNet, blocks_per_stage=5)
ResNet44 = functools.partial(CifarResNet, blocks_per_stage=7)
ResNet56 = functools.partial(CifarResNet, blocks_per_stage=9)
ResNet110 = functools.partial(CifarResNet, blocks_per_stage=18)


@register_model
def resnet20(**kwargs: Any) -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016): n=3; 0.27M params; 8.75% CIFAR-10 error."""
    return ResNet20(**kwargs)


@register_model
def resnet32(**kwargs: Any) -> CifarResNet:
    """ResNet-32 for CIFAR (He et al. 2016): n=5; 0.46M params; 7.51% CIFAR-10 error."""
    return ResNet32(**kwargs)


@register_model
def resnet44(**kwargs: Any) -> CifarResNet:
    """ResNet-44 for CIFAR (He et al. 2016): n=7; 0.66M params; 7.17% CIFAR-10 error."""
    return ResNet44(**kwargs)


@register_model
def resnet56(**kwargs: Any) -> CifarResNet:
    """ResNet-56 for CIFAR (He et al. 2016): n=9; 0.85M params; 6.97% CIFAR-10 error."""
    return ResNet56(**kwargs)


@register_model
def resnet110(**kwargs: Any) -> CifarResNet:
    """ResNet-110 for CIFAR (He et al. 2016): n=18; 1.7M params; 6.43% CIFAR-10 error."""
    return ResNet110(**kwargs)


__all__ = [
    "CifarResNet", "ResNet20", "ResNet32", "ResNet44", "ResNet56", "ResNet110", "resnet20",
    "resnet32", "resnet44", "resnet56", "resnet110", "zero_pad_shortcut",
]
