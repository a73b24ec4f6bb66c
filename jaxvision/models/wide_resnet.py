"""Wide Residual Networks for CIFAR (WRN-d-k), as in Zagoruyko & Komodakis 2016.

Zagoruyko, Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv:1605.07146), Table 1:
a 3x3 conv with 16 filters, then three groups (``conv2..conv4``) of ``N = (d - 4) / 6``
pre-activation basic blocks B(3,3) with ``16k``, ``32k`` and ``64k`` filters on 32x32,
16x16 and 8x8 maps (the first block of groups 3 and 4 has stride 2), a final BatchNorm +
ReLU, 8x8 average pooling and a fully connected layer. The block is the pre-activation
form of He et al. (ECCV 2016): ``BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3``. Convs have no
bias (the authors' code removes them). Where the shape changes the shortcut is a 1x1
strided conv applied, as in the authors' code, to the *activated* input ``relu(bn1(x))``,
which the block's first conv shares.

WRN-28-10 (``N = 4``, ``k = 10``) has 36,479,194 parameters for 10 classes (the paper's
36.5M) and 4.00% / 19.25% CIFAR-10 / CIFAR-100 error without dropout; with dropout 0.3
between the convs of each block, 3.89% / 18.85% (``dropout_rate=0.3``).

This is not torchvision's ``wide_resnet50_2`` (an ImageNet bottleneck ResNet with doubled
inner width, in :mod:`jaxvision.models.resnet`). Variable names (no torch counterpart):
``conv1``, ``layer{g}.{i}.{bn1, conv1, bn2, conv2, shortcut}``, ``bn``, ``fc``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision import checks
from jaxvision.models.features import FeatureStream, collect
from jaxvision.models.registry import register_model
from jaxvision.models.resnet import (
    ModuleDef,
    classifier_head,
    conv_and_norm,
    stages,
    stem,
    stem_names,
)

Dtype = Any


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block B(3,3) with optional dropout between the convs.

    ``a = act(bn1(x)); y = conv2(dropout(act(bn2(conv1(a))))) + s`` with ``s = x`` when the
    shape is kept, else ``s = shortcut(a)`` (1x1, strided, no bias).

    Input ``[N, H, W, Cin]`` -> ``[N, ceil(H/strides), ceil(W/strides), features]``.
    """

    features: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable[[jax.Array], jax.Array] = nn.relu
    strides: int = 1
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        a = self.act(self.norm(name="bn1")(x))
        y = self.conv(self.features, 3, self.strides, 1, name="conv1")(a)
        y = self.act(self.norm(name="bn2")(y))
        y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        y = self.conv(self.features, 3, 1, 1, name="conv2")(y)
        if self.strides == 1 and x.shape[-1] == self.features:
            return y + x
        return y + self.conv(self.features, 1, self.strides, name="shortcut")(a)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` (Zagoruyko & Komodakis 2016) for 32x32 images.

    Attributes:
      depth: ``6N + 4`` (28 for WRN-28-10); raises ``ValueError`` otherwise.
      widen_factor: ``k``; the groups have ``16k``, ``32k``, ``64k`` filters.
      num_classes: size of the ``fc`` output.
      dropout_rate: dropout between the two convs of each block (paper: 0 or 0.3); needs
        the ``'dropout'`` rng when ``train=True`` and ``dropout_rate > 0``.
      dtype: computation dtype; param_dtype: parameter dtype.

    ``__call__(images: [N, H, W, 3] float32, train=False) -> logits [N, num_classes]``.
    The final pooling is global (the paper's 8x8 average pool at 32x32), so any
    ``H, W >= 1`` works.

    ``feature_maps(images, train=False, last=None)``: ``conv1``, ``stem`` (the same map),
    ``layer1..layer3`` (strides 1, 2, 4; pre-activation, so not normalized) and ``final``
    (``relu(bn(layer3))``, the map the head pools).
    """

    depth: int = 28
    widen_factor: int = 10
    num_classes: int = 10
    dropout_rate: float = 0.0
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    default_input_shape: ClassVar[tuple[int, int, int]] = (32, 32, 3)
    min_input_size: ClassVar[int] = 1
    feature_names: ClassVar[tuple[str, ...]] = (
        *stem_names(norm=False, max_pool=False), "layer1", "layer2", "layer3", "final")

    @nn.nowrap
    def _stream(self, x: jax.Array, train: bool) -> FeatureStream:
        checks.check_images(x, model=type(self).__name__, channels=3,
                            min_size=self.min_input_size)
        if self.depth < 10 or (self.depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6N + 4 with N >= 1 (10, 16, 22, 28, "
                             f"40, ...), got {self.depth}")
        if self.widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {self.widen_factor}")
        n = (self.depth - 4) // 6
        conv, norm = conv_and_norm(train=train, dtype=self.dtype, param_dtype=self.param_dtype)
        x = yield from stem(jnp.asarray(x, self.dtype), conv, None, self.act, features=16,
                            kernel_size=3, stride=1, max_pool=False)

        def block(i: int, j: int) -> Callable[[jax.Array], jax.Array]:
            return functools.partial(PreActBasicBlock(
                features=(16, 32, 64)[i] * self.widen_factor, conv=conv, norm=norm,
                act=self.act, strides=2 if i > 0 and j == 0 else 1,
                dropout_rate=self.dropout_rate, name=f"layer{i + 1}.{j}"), train=train)

        x = yield from stages(x, block, (n, n, n))
        yield "final", self.act(norm(name="bn")(x))

    @nn.compact
    def feature_maps(self, x: jax.Array, train: bool = False,
                     last: str | None = None) -> dict[str, jax.Array]:
        """Named maps ``[N, h, w, C]`` of ``images: [N, H, W, 3]`` up to ``last``."""
        return collect(self._stream(x, train), self.feature_names, last, type(self).__name__)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.feature_maps(x, train=train)["final"]
        return classifier_head(x, self.num_classes, dtype=self.dtype,
                               param_dtype=self.param_dtype)


WRN28_10 = functools.partial(WideResNet, depth=28, widen_factor=10)


@register_model
def wrn28_10(**kwargs: Any) -> WideResNet:
    """WRN-28-10 (Zagoruyko & Komodakis 2016): 36,479,194 params for 10 classes.

    CIFAR-10 / CIFAR-100 error 4.00 / 19.25 (3.89 / 18.85 with ``dropout_rate=0.3``).
    """
    return WRN28_10(**kwargs)


__all__ = ["PreActBasicBlock", "WRN28_10", "WideResNet", "wrn28_10"]
