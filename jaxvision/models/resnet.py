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

As a backbone (:mod:`jaxvision.models.features`) it names its maps ``stem`` and ``layer1``
.. ``layer4``; ``replace_stride_with_dilation`` and ``frozen_bn`` are torchvision's dilated
(DeepLab) and ``FrozenBatchNorm2d`` (detection) variants, with the same variables.

Following the Flax ``examples/imagenet`` design, the blocks receive ``conv``, ``norm`` and
``act`` as fields (built once by the network with :func:`functools.partial`), and each
variant is one line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision import checks
from jaxvision.models import layers
from jaxvision.models.features import FeatureStream, collect
from jaxvision.models.registry import register_model

ModuleDef = Any
Dtype = Any
# A parameter-free shortcut ``(x, out_features, stride) -> y`` for blocks that change shape
# (the paper's option A, used by the CIFAR ResNets); None means a 1x1 projection (option B).
ShortcutFn = Callable[[jax.Array, int, int], jax.Array]


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
    dilation: int = 1
    shortcut: ShortcutFn | None = None
    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.groups != 1 or self.base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64 (as in "
                             f"torchvision), got groups={self.groups}, "
                             f"base_width={self.base_width}")
        if self.dilation != 1:
            raise ValueError("BasicBlock does not support dilation > 1 (as in torchvision: "
                             "replace_stride_with_dilation needs Bottleneck ResNets), got "
                             f"dilation={self.dilation}")
        y = self.conv(self.features, 3, self.strides, 1, name="conv1")(x)
        y = self.act(self.norm(name="bn1")(y))
        y = self.conv(self.features, 3, 1, 1, name="conv2")(y)
        y = self.norm(name="bn2")(y)
        return self.act(y + _shortcut(self, x, self.features))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, grouped, dilated), 1x1 expand (He et al. 2016, Fig. 5 right).

    torchvision's v1.5 ``Bottleneck``: the stride sits on the 3x3 ``conv2``, as does the
    dilation (padding = dilation, so a stride-1 block keeps the size). The inner width is
    ``int(features * base_width / 64) * groups``: ResNeXt (Xie et al. 2017) uses ``groups``
    > 1, Wide ResNet-50-2 ``base_width`` = 128. Output channels are ``4 * features``.

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
    dilation: int = 1
    shortcut: ShortcutFn | None = None
    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = int(self.features * (self.base_width / 64.0)) * self.groups
        out = self.features * self.expansion
        y = self.conv(width, 1, name="conv1")(x)
        y = self.act(self.norm(name="bn1")(y))
        y = self.conv(width, 3, self.strides, self.dilation, groups=self.groups,
                      dilation=self.dilation, name="conv2")(y)
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


# -- the parts every ResNet family shares (this file, CIFAR ResNets, Wide ResNets) ----------

def conv_and_norm(*, train: bool, dtype: Dtype, param_dtype: Dtype,
                  frozen_bn: bool = False, frozen_bn_eps: float = 1e-5
                  ) -> tuple[ModuleDef, ModuleDef]:
    """The ``conv`` (torch-padded, no bias) and ``norm`` factories handed to the blocks.

    ``norm`` is torch-exact BatchNorm in ``train`` mode or with running statistics, or
    :class:`~jaxvision.models.layers.FrozenBatchNorm` (torchvision's ``FrozenBatchNorm2d``,
    the detection backbones' choice) when ``frozen_bn``, in either mode.
    """
    conv = functools.partial(layers.conv2d, use_bias=False, dtype=dtype,
                             param_dtype=param_dtype)
    if frozen_bn:
        norm = functools.partial(layers.FrozenBatchNorm, epsilon=frozen_bn_eps, dtype=dtype,
                                 param_dtype=param_dtype)
    else:
        norm = functools.partial(layers.BatchNorm, use_running_average=not train, dtype=dtype,
                                 param_dtype=param_dtype)
    return conv, norm


def stem_names(*, norm: bool, max_pool: bool) -> tuple[str, ...]:
    """The feature names :func:`stem` yields."""
    return (("conv1",) + (("bn1", "relu") if norm else ()) + (("maxpool",) if max_pool else ())
            + ("stem",))


def stem(x: jax.Array, conv: ModuleDef, norm: ModuleDef | None,
         act: Callable[[jax.Array], jax.Array], *, features: int, kernel_size: int,
         stride: int, max_pool: bool) -> Generator[tuple[str, jax.Array], None, jax.Array]:
    """The stem ``conv1`` (-> ``bn1`` -> ReLU) (-> max-pool 3x3/2 pad 1), as named maps.

    ImageNet ResNets: 7x7/2 conv, BN, ReLU, max-pool (stride 4 in all); CIFAR ResNets: 3x3
    conv, BN, ReLU; pre-activation WRNs: the conv alone (``norm=None``). Yields torchvision's
    child names (``conv1``, ``bn1``, ``relu``, ``maxpool``) and then ``stem``, the stem's
    output (the input of ``layer1``), which it also returns (``x = yield from stem(...)``).
    Call inside a compact method (it creates the layers).
    """
    x = conv(features, kernel_size, stride, kernel_size // 2, name="conv1")(x)
    yield "conv1", x
    if norm is not None:
        x = norm(name="bn1")(x)
        yield "bn1", x
        x = act(x)
        yield "relu", x
    if max_pool:
        x = layers.max_pool(x, 3, 2, 1)
        yield "maxpool", x
    yield "stem", x
    return x


def stages(x: jax.Array, block: Callable[[int, int], Callable[[jax.Array], jax.Array]],
           stage_sizes: Sequence[int]) -> Generator[tuple[str, jax.Array], None, jax.Array]:
    """Runs the residual stages; yields ``layer{i}`` after stage ``i`` (1-based).

    ``block(i, j)`` builds block ``j`` of stage ``i`` (0-based), named ``layer{i+1}.{j}``.
    Returns the last map (``x = yield from stages(...)``).
    """
    for i, num_blocks in enumerate(stage_sizes):
        for j in range(num_blocks):
            x = block(i, j)(x)
        yield f"layer{i + 1}", x
    return x


def classifier_head(x: jax.Array, num_classes: int, *, dtype: Dtype,
                    param_dtype: Dtype) -> jax.Array:
    """Global average pooling and the ``fc`` layer (torch ``Linear`` init).

    ``x: [N, h, w, C] -> logits [N, num_classes]``; ``AdaptiveAvgPool2d((1, 1))`` + flatten +
    ``Linear``. Call inside a compact method (it creates ``fc``).
    """
    x = jnp.mean(x, axis=(1, 2))
    kernel_init, bias_init = layers.torch_linear_init(x.shape[-1])
    return nn.Dense(num_classes, dtype=dtype, param_dtype=param_dtype,
                    kernel_init=kernel_init, bias_init=bias_init, name="fc")(x)


class ResNet(nn.Module):
    """ResNet / ResNeXt / Wide ResNet for ImageNet-sized images, torchvision-exact.

    Attributes:
      stage_sizes: number of blocks in ``layer1..layer4``.
      block_cls: :class:`BasicBlock` or :class:`Bottleneck`.
      num_classes: size of the ``fc`` output.
      groups: cardinality of the bottleneck's 3x3 conv (ResNeXt).
      width_per_group: channels per group at stage 1 (64 plain, 4 or 8 ResNeXt, 128 wide).
      replace_stride_with_dilation: for ``layer2..layer4``, dilate the 3x3 convs instead of
        striding (torchvision's argument of that name; DeepLab uses ``(False, True, True)``
        for an output stride of 8). The first block of a dilated stage keeps the previous
        dilation, as in torchvision's ``_make_layer``. Bottleneck ResNets only.
      frozen_bn: torchvision's ``FrozenBatchNorm2d`` everywhere (statistics and affine fixed
        in every mode; the detection backbones' norm layer). Same variables as BatchNorm.
      act: activation (ReLU in every torchvision variant).
      dtype: computation dtype; param_dtype: parameter dtype.

    ``__call__(images: [N, H, W, 3] float32, train=False) -> logits [N, num_classes]`` in
    ``dtype``. Any ``H, W >= 1`` works (torch's shape arithmetic); ImageNet weights expect
    224x224 normalized images. ``train=True`` normalizes with batch statistics and updates
    ``batch_stats`` (call with ``mutable=["batch_stats"]``).

    ``feature_maps(images, train=False, last=None)`` returns the named maps
    (:mod:`jaxvision.models.features`): torchvision's children ``conv1``, ``bn1``, ``relu``
    (stride 2, 64 channels), ``maxpool`` (stride 4), ``stem`` (the same map as ``maxpool``),
    then ``layer1..layer4`` (strides 4, 8, 16, 32; 64 * expansion * 2**i channels).
    """

    stage_sizes: Sequence[int]
    block_cls: type[BasicBlock] | type[Bottleneck]
    num_classes: int = 1000
    groups: int = 1
    width_per_group: int = 64
    replace_stride_with_dilation: Sequence[bool] = (False, False, False)
    frozen_bn: bool = False
    # torchvision's overwrite_eps(model, 0.0) for the fasterrcnn_resnet50_fpn COCO weights.
    frozen_bn_eps: float = 1e-5
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 3)
    # Every conv/pool is torch-symmetric, so one pixel is the smallest input torch accepts.
    min_input_size: ClassVar[int] = 1

    def __post_init__(self) -> None:
        # torchvision takes a list; a tuple keeps the module hashable.
        object.__setattr__(self, "replace_stride_with_dilation",
                           tuple(bool(v) for v in self.replace_stride_with_dilation))
        super().__post_init__()

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of :meth:`feature_maps`, input to output."""
        return (stem_names(norm=True, max_pool=True)
                + tuple(f"layer{i + 1}" for i in range(len(self.stage_sizes))))

    def _dilations(self) -> list[tuple[int, int, int]]:
        """``(stride, first block's dilation, later blocks' dilation)`` per stage."""
        replace = tuple(self.replace_stride_with_dilation)
        if len(replace) != len(self.stage_sizes) - 1:
            raise ValueError("replace_stride_with_dilation should be None or a "
                             f"{len(self.stage_sizes) - 1}-element tuple (one flag per stage "
                             f"after the first), got {replace}")
        if any(replace) and self.block_cls is not Bottleneck:
            raise ValueError("replace_stride_with_dilation needs Bottleneck blocks (torchvision's "
                             "BasicBlock does not support dilation > 1)")
        out, dilation = [], 1
        for i in range(len(self.stage_sizes)):
            stride, previous = (1 if i == 0 else 2), dilation
            if i > 0 and replace[i - 1]:
                dilation, stride = dilation * stride, 1
            out.append((stride, previous, dilation))
        return out

    @nn.nowrap
    def _stream(self, x: jax.Array, train: bool) -> FeatureStream:
        checks.check_images(x, model=type(self).__name__, channels=3,
                            min_size=self.min_input_size)
        conv, norm = conv_and_norm(train=train, dtype=self.dtype, param_dtype=self.param_dtype,
                                   frozen_bn=self.frozen_bn, frozen_bn_eps=self.frozen_bn_eps)
        plan = self._dilations()
        x = yield from stem(jnp.asarray(x, self.dtype), conv, norm, self.act, features=64,
                            kernel_size=7, stride=2, max_pool=True)

        def block(i: int, j: int) -> nn.Module:
            stride, first_dilation, dilation = plan[i]
            return self.block_cls(
                features=64 * 2**i, conv=conv, norm=norm, act=self.act,
                strides=stride if j == 0 else 1, groups=self.groups,
                base_width=self.width_per_group,
                dilation=first_dilation if j == 0 else dilation, name=f"layer{i + 1}.{j}")

        yield from stages(x, block, self.stage_sizes)

    @nn.compact
    def feature_maps(self, x: jax.Array, train: bool = False,
                     last: str | None = None) -> dict[str, jax.Array]:
        """Named maps of ``images: [N, H, W, 3]`` up to ``last`` (all by default).

        Each ``[N, h, w, C]`` in ``dtype``; names in :attr:`feature_names`.
        """
        return collect(self._stream(x, train), self.feature_names, last, type(self).__name__)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.feature_maps(x, train=train)[f"layer{len(self.stage_sizes)}"]
        return classifier_head(x, self.num_classes, dtype=self.dtype,
                               param_dtype=self.param_dtype)


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
    "wide_resnet101_2", "classifier_head", "conv_and_norm", "stages", "stem", "stem_names",
]
