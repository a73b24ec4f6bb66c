"""VGG, from "Very Deep Convolutional Networks for Large-Scale Image Recognition" (Simonyan,
Zisserman; ICLR 2015), in torchvision's layout.

Configurations A, B, D and E of the paper's Table 1 (11, 13, 16 and 19 weight layers):
stacks of 3x3 pad-1 convolutions with ReLU (and, for the ``_bn`` variants, BatchNorm after
each conv, as torchvision adds), 2x2 stride-2 max pooling between stages, then
``AdaptiveAvgPool2d(7)`` and the classifier FC 25088->4096, ReLU, dropout, FC 4096->4096,
ReLU, dropout, FC 4096->num_classes. Module names are torchvision's (``features.0``,
``features.1`` (a BatchNorm in ``_bn`` models), ..., ``classifier.0``, ``classifier.3``,
``classifier.6``), so torchvision weights convert with
:func:`jaxvision.weights.convert.convert_torchvision`.

As a backbone (:mod:`jaxvision.models.features`), ``feature_maps`` names the maps as the
paper's Caffe models do: ``conv{s}_{k}`` is the k-th conv of stage s after its ReLU (and
BatchNorm), ``pool{s}`` the stage's max pool (``conv5_3`` is VGG-16's last map before the last
pool; FCN-8s reads ``pool3``, ``pool4``); with ``pool_indices=True`` also ``pool{s}_indices``,
the argmax of each pool as torch's ``max_pool2d(return_indices=True)`` gives it (flat ``row *
W + col`` in the map before the pool), which SegNet's decoder feeds to
:func:`jaxvision.ops.max_unpool`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision import checks
from jaxvision.models import layers
from jaxvision.models.convolutionize import ConvolutionizeSpec
from jaxvision.models.features import collect
from jaxvision.models.registry import register_model
from jaxvision.ops.unpool import max_pool_with_argmax

# Conv output channels per layer, "M" for a 2x2 max pool (the paper's Table 1).
CONFIGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"),
}

# torchvision's VGG init: Linear weights N(0, 0.01) and zero biases (convs use kaiming
# normal, fan_out, the default of layers.conv2d).
dense_kernel_init = nn.initializers.normal(0.01)


class VGG(nn.Module):
    """VGG: ``images: [N, H, W, 3] float32 -> logits [N, num_classes]``, any ``H, W >= 32``.

    Attributes:
      config: conv channels per layer and ``"M"`` for max pooling (see ``CONFIGS``).
      batch_norm: BatchNorm after every conv (torchvision's ``vgg*_bn``).
      num_classes: output size of the last dense layer.
      dropout: dropout rate after the ReLUs of the first two dense layers.
      pool_indices: :meth:`feature_maps` also returns each pool's argmax
        (``pool{s}_indices``, int32, torch's flat convention) for SegNet-style decoders.
      dtype: computation dtype.
      param_dtype: parameter dtype.

    ``train=True`` uses batch statistics (and updates ``batch_stats``, pass
    ``mutable=["batch_stats"]``) and enables dropout (``'dropout'`` rng).
    """

    config: Sequence[int | str] = CONFIGS["D"]
    batch_norm: bool = False
    num_classes: int = 1000
    dropout: float = 0.5
    pool_indices: bool = False
    ceil_mode: bool = False  # Caffe's pooling (FCN, SegNet); torchvision floors
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 3)
    # Where the conv stack ends (for convolutionize and weight conversion): ``features``
    # returns the map that ``adaptive_pool`` brings to 7x7 (7x7 already at 224x224), then
    # the dense layers run in order, the first on the (C, H, W) flatten.
    dense_names: ClassVar[tuple[str, ...]] = ("classifier.0", "classifier.3", "classifier.6")
    adaptive_pool: ClassVar[tuple[int, int] | None] = (7, 7)
    torch_flatten_shapes: ClassVar[dict[str, tuple[int, int, int]]] = {
        "classifier.0": (512, 7, 7)}

    @property
    def convolutionize_spec(self) -> ConvolutionizeSpec:
        """The dense head for :func:`jaxvision.models.convolutionize.convolutionize`."""
        return ConvolutionizeSpec(dense=self.dense_names, activation=nn.relu,
                                  adaptive_pool=self.adaptive_pool, dropout=self.dropout)

    @property
    def model_name(self) -> str:
        """The builder's name, e.g. ``vgg16_bn`` (convs + 3 dense layers = the depth)."""
        depth = sum(1 for v in self.config if v != "M") + 3
        return f"vgg{depth}{'_bn' if self.batch_norm else ''}"

    @property
    def min_size(self) -> int:
        """Smallest input side: every 2x2 pool needs at least 2 pixels."""
        return 2 ** sum(1 for v in self.config if v == "M")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of :meth:`feature_maps`, input to output (``conv1_1``, ..., ``pool5``)."""
        names, stage, k = [], 1, 1
        for v in self.config:
            if v == "M":
                names.append(f"pool{stage}")
                if self.pool_indices:
                    names.append(f"pool{stage}_indices")
                stage, k = stage + 1, 1
            else:
                names.append(f"conv{stage}_{k}")
                k += 1
        return tuple(names)

    @nn.nowrap
    def _stream(self, x: jax.Array, train: bool) -> Iterator[tuple[str, jax.Array]]:
        checks.check_images(x, model=self.model_name, channels=3, min_size=self.min_size)
        x = x.astype(self.dtype)
        idx, stage, k = 0, 1, 1  # idx: torchvision's index in the features nn.Sequential
        for v in self.config:
            if v == "M":
                if self.pool_indices:
                    x, indices = max_pool_with_argmax(x, 2, 2, ceil_mode=self.ceil_mode)
                    yield f"pool{stage}", x
                    yield f"pool{stage}_indices", indices
                else:
                    x = layers.max_pool(x, 2, 2, ceil_mode=self.ceil_mode)
                    yield f"pool{stage}", x
                idx, stage, k = idx + 1, stage + 1, 1
                continue
            x = layers.conv2d(int(v), 3, 1, 1, dtype=self.dtype, param_dtype=self.param_dtype,
                              name=f"features.{idx}")(x)
            if self.batch_norm:
                x = layers.BatchNorm(use_running_average=not train, dtype=self.dtype,
                                     param_dtype=self.param_dtype,
                                     name=f"features.{idx + 1}")(x)
            x = nn.relu(x)
            yield f"conv{stage}_{k}", x
            idx += 3 if self.batch_norm else 2
            k += 1

    @nn.compact
    def feature_maps(self, x: jax.Array, train: bool = False,
                     last: str | None = None) -> dict[str, jax.Array]:
        """Named maps of ``images: [N, H, W, 3]`` up to ``last`` (all by default).

        ``conv{s}_{k}``, ``pool{s}``: ``[N, h, w, C]`` in ``dtype``; ``pool{s}_indices``
        (``pool_indices=True``): ``[N, h, w, C]`` int32. Names in :attr:`feature_names`.
        """
        return collect(self._stream(x, train), self.feature_names, last, self.model_name)

    @nn.compact
    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The conv stack: ``[N, H, W, 3] -> [N, H // 32, W // 32, 512]`` (``pool5``)."""
        last = f"pool{sum(1 for v in self.config if v == 'M')}"
        return self.feature_maps(x, train=train, last=last)[last]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``images: [N, H, W, 3] float -> logits [N, num_classes]`` in ``dtype``."""
        x = self.features(x, train=train)
        x = layers.adaptive_avg_pool(x, self.adaptive_pool)
        x = layers.flatten_nchw(x)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                  kernel_init=dense_kernel_init)
        x = nn.relu(nn.Dense(4096, name="classifier.0", **kw)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.relu(nn.Dense(4096, name="classifier.3", **kw)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="classifier.6", **kw)(x)


def _vgg(config: str, batch_norm: bool, **kwargs: Any) -> VGG:
    return VGG(config=CONFIGS[config], batch_norm=batch_norm, **kwargs)


@register_model
def vgg11(**kwargs: Any) -> VGG:
    """VGG-11 (configuration A), 132,863,336 parameters. Kwargs are :class:`VGG` fields."""
    return _vgg("A", False, **kwargs)


@register_model
def vgg11_bn(**kwargs: Any) -> VGG:
    """VGG-11 with BatchNorm, 132,868,840 parameters. Kwargs are :class:`VGG` fields."""
    return _vgg("A", True, **kwargs)


@register_model
def vgg13(**kwargs: Any) -> VGG:
    """VGG-13 (configuration B), 133,047,848 parameters. Kwargs are :class:`VGG` fields."""
    return _vgg("B", False, **kwargs)


@register_model
def vgg13_bn(**kwargs: Any) -> VGG:
    """VGG-13 with BatchNorm, 133,053,736 parameters. Kwargs are :class:`VGG` fields."""
    return _vgg("B", True, **kwargs)


@register_model
def vgg16(**kwargs: Any) -> VGG:
    """VGG-16 (configuration D), 138,357,544 parameters. Kwargs are :class:`VGG` fields."""
    return _vgg("D", False, **kwargs)


@register_model
def vgg16_bn(**kwargs: Any) -> VGG:
    """VGG-16 with BatchNorm, 138,365,992 parameters. Kwargs are :class:`VGG` fields."""
    return _vgg("D", True, **kwargs)


@register_model
def vgg19(**kwargs: Any) -> VGG:
    """VGG-19 (configuration E), 143,667,240 parameters. Kwargs are :class:`VGG` fields."""
    return _vgg("E", False, **kwargs)


@register_model
def vgg19_bn(**kwargs: Any) -> VGG:
    """VGG-19 with BatchNorm, 143,678,248 parameters. Kwargs are :class:`VGG` fields."""
    return _vgg("E", True, **kwargs)
