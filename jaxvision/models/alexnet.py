"""AlexNet: torchvision's variant and the original of Krizhevsky, Sutskever and Hinton.

* :func:`alexnet` is torchvision's ``alexnet``, the single-tower model of "One weird trick
  for parallelizing convolutional neural networks" (Krizhevsky, 2014): 64-192-384-256-256
  conv channels, no LRN, ``AdaptiveAvgPool2d(6)`` and a dropout-FC-FC-FC classifier;
  61,100,840 parameters. Converted torchvision weights give the same logits.
* :func:`alexnet_2012` is the network of "ImageNet Classification with Deep Convolutional
  Neural Networks" (Krizhevsky, Sutskever, Hinton; NIPS 2012), Figure 2 and Section 3:

  ======  ===============================================  =======================
  layer   operation                                        output (227x227 input)
  ======  ===============================================  =======================
  conv1   96 kernels 11x11x3, stride 4, ReLU, LRN, pool    55x55x96 -> 27x27x96
  conv2   256 kernels 5x5x48 (2 groups), pad 2, ReLU,      27x27x256 -> 13x13x256
          LRN, pool
  conv3   384 kernels 3x3x256 (sees both groups), pad 1    13x13x384
  conv4   384 kernels 3x3x192 (2 groups), pad 1            13x13x384
  conv5   256 kernels 3x3x192 (2 groups), pad 1, pool      13x13x256 -> 6x6x256
  fc6     9216 -> 4096, ReLU, dropout 0.5                  4096
  fc7     4096 -> 4096, ReLU, dropout 0.5                  4096
  fc8     4096 -> 1000                                     1000
  ======  ===============================================  =======================

  Pooling is the paper's overlapping 3x3 stride-2 max pooling. LRN is the paper's
  ``b = a / (k + alpha * sum_{5 neighbouring maps} a^2) ** beta`` with k = 2, n = 5,
  alpha = 1e-4, beta = 0.75 (alpha *not* divided by n, unlike torch's and Caffe's
  ``LocalResponseNorm``; we pass ``alpha * n`` to the torch-convention layer). The two-GPU
  split is expressed as grouped convolutions (``feature_group_count=2``), which computes
  exactly what the two towers did: group g of conv2/conv4/conv5 only sees the maps of group g
  of the previous layer, conv3 and the dense layers see both.

  **Input size.** The paper says 224x224, but an unpadded 11x11 stride-4 conv maps 224 to
  54.25, not the 55 of its Figure 2; 227x227 (as in Caffe's ``bvlc_alexnet``) gives 55 with
  no padding, and we use that (any input from 227 to 258 pixels gives the 6x6 map that the
  classifier needs; the floor-mode pools drop the rest).

  **Parameters** (60,965,224 for 1000 classes; the paper's "60 million"):
  conv1 96*(11*11*3)+96 = 34,944; conv2 256*(5*5*48)+256 = 307,456; conv3
  384*(3*3*256)+384 = 885,120; conv4 384*(3*3*192)+384 = 663,936; conv5 256*(3*3*192)+256
  = 442,624; fc6 9216*4096+4096 = 37,752,832; fc7 4096*4096+4096 = 16,781,312; fc8
  4096*1000+1000 = 4,097,000.

  Module names follow a PyTorch ``nn.Sequential`` port (``features.0`` conv1, ``.4``
  conv2, ``.8`` conv3, ``.10`` conv4, ``.12`` conv5; ``classifier.0``, ``.3``, ``.6``),
  which is how the tests check it against torch (``nn.Conv2d(groups=2)``,
  ``nn.LocalResponseNorm``). Initialization follows the paper: weights N(0, 0.01), biases 1
  in conv2, conv4, conv5 and the hidden dense layers, 0 elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision import checks
from jaxvision.models import layers
from jaxvision.models.convolutionize import ConvolutionizeSpec
from jaxvision.models.features import collect
from jaxvision.models.registry import register_model

# PyTorch's default init for Conv2d/Linear weights (kaiming_uniform with a=sqrt(5)) is
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)); torchvision's AlexNet keeps it. (torch also draws
# biases from that range; Flax bias initializers do not see fan_in, so ours start at 0.)
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class AlexNet(nn.Module):
    """torchvision's AlexNet: ``images: [N, H, W, 3] float32 -> logits [N, num_classes]``.

    Any ``H, W >= 63``: the conv map is average-pooled to 6x6 (torch's adaptive bins).

    Attributes:
      num_classes: output size of the last dense layer.
      dropout: dropout rate before the first two dense layers (active when ``train``).
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    num_classes: int = 1000
    dropout: float = 0.5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 3)
    # Where the conv stack ends (for convolutionize and weight conversion): ``features``
    # returns the map that ``adaptive_pool`` brings to 6x6, then the dense layers below run
    # in order, the first on the (C, H, W) flatten.
    dense_names: ClassVar[tuple[str, ...]] = ("classifier.1", "classifier.4", "classifier.6")
    adaptive_pool: ClassVar[tuple[int, int] | None] = (6, 6)
    torch_flatten_shapes: ClassVar[dict[str, tuple[int, int, int]]] = {
        "classifier.1": (256, 6, 6)}

    @property
    def convolutionize_spec(self) -> ConvolutionizeSpec:
        """The dense head for :func:`jaxvision.models.convolutionize.convolutionize`."""
        return ConvolutionizeSpec(dense=self.dense_names, activation=nn.relu,
                                  adaptive_pool=self.adaptive_pool, dropout=self.dropout)

    feature_names: ClassVar[tuple[str, ...]] = (
        "conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")

    @nn.nowrap
    def _stream(self, x: jax.Array) -> Iterator[tuple[str, jax.Array]]:
        # Smallest input with a 1x1 map: 3 (pool3) <- 7 (pool2) <- 15 (pool1) <- 63 (conv1).
        checks.check_images(x, model="alexnet", channels=3, min_size=63)
        x = x.astype(self.dtype)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                  kernel_init=torch_default_kernel_init)
        x = nn.relu(layers.conv2d(64, 11, 4, 2, name="features.0", **kw)(x))
        yield "conv1", x
        x = layers.max_pool(x, 3, 2)
        yield "pool1", x
        x = nn.relu(layers.conv2d(192, 5, 1, 2, name="features.3", **kw)(x))
        yield "conv2", x
        x = layers.max_pool(x, 3, 2)
        yield "pool2", x
        x = nn.relu(layers.conv2d(384, 3, 1, 1, name="features.6", **kw)(x))
        yield "conv3", x
        x = nn.relu(layers.conv2d(256, 3, 1, 1, name="features.8", **kw)(x))
        yield "conv4", x
        x = nn.relu(layers.conv2d(256, 3, 1, 1, name="features.10", **kw)(x))
        yield "conv5", x
        yield "pool5", layers.max_pool(x, 3, 2)

    @nn.compact
    def feature_maps(self, x: jax.Array, train: bool = False,
                     last: str | None = None) -> dict[str, jax.Array]:
        """Named maps ``[N, h, w, C]`` of ``images: [N, H, W, 3]`` up to ``last``.

        ``conv1``..``conv5`` after their ReLU, ``pool1``, ``pool2``, ``pool5`` (Caffe's
        names; torchvision's ``features.1``, ``.4``, ``.7``, ``.9``, ``.11`` and the pools
        ``.2``, ``.5``, ``.12``).
        """
        del train  # no dropout or BatchNorm in the conv stack
        return collect(self._stream(x), self.feature_names, last, "alexnet")

    @nn.compact
    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The conv stack: ``[N, H, W, 3] -> [N, h, w, 256]`` (6x6 at 224x224)."""
        return self.feature_maps(x, train=train)["pool5"]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``images: [N, H, W, 3] float -> logits [N, num_classes]`` in ``dtype``.

        ``train=True`` enables dropout and needs a ``'dropout'`` rng.
        """
        x = self.features(x, train=train)
        x = layers.adaptive_avg_pool(x, self.adaptive_pool)
        x = layers.flatten_nchw(x)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                  kernel_init=torch_default_kernel_init)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.relu(nn.Dense(4096, name="classifier.1", **kw)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.relu(nn.Dense(4096, name="classifier.4", **kw)(x))
        return nn.Dense(self.num_classes, name="classifier.6", **kw)(x)


class AlexNet2012(nn.Module):
    """The NIPS 2012 AlexNet: ``images: [N, 227, 227, 3] float32 -> [N, num_classes]``.

    Attributes:
      num_classes: output size of the last dense layer.
      dropout: dropout rate after the ReLUs of fc6 and fc7 (active when ``train``).
      groups: convolution groups of conv2, conv4 and conv5 (2: the paper's two GPUs; 1
        gives a single-tower network with full connectivity).
      lrn_size, lrn_alpha, lrn_beta, lrn_k: the paper's LRN constants n, alpha, beta, k, in
        the paper's convention (alpha multiplies the plain sum of squares).
      dtype: computation dtype (LRN is computed in float32).
      param_dtype: parameter dtype.
    """

    num_classes: int = 1000
    dropout: float = 0.5
    groups: int = 2
    lrn_size: int = 5
    lrn_alpha: float = 1e-4
    lrn_beta: float = 0.75
    lrn_k: float = 2.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    default_input_shape: ClassVar[tuple[int, int, int]] = (227, 227, 3)
    # No adaptive pool: the classifier needs exactly the 6x6x256 map of a 227x227 input.
    dense_names: ClassVar[tuple[str, ...]] = ("classifier.0", "classifier.3", "classifier.6")
    adaptive_pool: ClassVar[tuple[int, int] | None] = None
    torch_flatten_shapes: ClassVar[dict[str, tuple[int, int, int]]] = {
        "classifier.0": (256, 6, 6)}

    @property
    def convolutionize_spec(self) -> ConvolutionizeSpec:
        """The dense head for :func:`jaxvision.models.convolutionize.convolutionize`."""
        return ConvolutionizeSpec(dense=self.dense_names, activation=nn.relu,
                                  dropout=self.dropout)

    def lrn(self, x: jax.Array) -> jax.Array:
        """The paper's response normalization over channels of ``x: [N, H, W, C]``."""
        # layers.local_response_norm uses torch's alpha / size convention.
        y = layers.local_response_norm(x.astype(jnp.float32), self.lrn_size,
                                       alpha=self.lrn_alpha * self.lrn_size,
                                       beta=self.lrn_beta, k=self.lrn_k)
        return y.astype(self.dtype)

    feature_names: ClassVar[tuple[str, ...]] = (
        "conv1", "norm1", "pool1", "conv2", "norm2", "pool2", "conv3", "conv4", "conv5",
        "pool5")

    @nn.nowrap
    def _stream(self, x: jax.Array) -> Iterator[tuple[str, jax.Array]]:
        # Smallest input with a 1x1 map: 3 (pool5) <- 7 (pool2) <- 15 (pool1) <- 67 (conv1).
        checks.check_images(x, model="alexnet_2012", channels=3, min_size=67)
        x = x.astype(self.dtype)
        init_w = nn.initializers.normal(0.01)
        one = nn.initializers.ones

        def conv(c: int, k: int, s: int, p: int, groups: int, bias_one: bool,
                 name: str) -> nn.Conv:
            return nn.Conv(c, (k, k), strides=(s, s), padding=layers.torch_padding(p),
                           feature_group_count=groups, dtype=self.dtype,
                           param_dtype=self.param_dtype, kernel_init=init_w,
                           bias_init=one if bias_one else nn.initializers.zeros,
                           conv_general_dilated=layers.conv_general_dilated, name=name)

        g = self.groups
        x = nn.relu(conv(96, 11, 4, 0, 1, False, "features.0")(x))
        yield "conv1", x
        x = self.lrn(x)
        yield "norm1", x
        x = layers.max_pool(x, 3, 2)
        yield "pool1", x
        x = nn.relu(conv(256, 5, 1, 2, g, True, "features.4")(x))
        yield "conv2", x
        x = self.lrn(x)
        yield "norm2", x
        x = layers.max_pool(x, 3, 2)
        yield "pool2", x
        x = nn.relu(conv(384, 3, 1, 1, 1, False, "features.8")(x))
        yield "conv3", x
        x = nn.relu(conv(384, 3, 1, 1, g, True, "features.10")(x))
        yield "conv4", x
        x = nn.relu(conv(256, 3, 1, 1, g, True, "features.12")(x))
        yield "conv5", x
        yield "pool5", layers.max_pool(x, 3, 2)

    @nn.compact
    def feature_maps(self, x: jax.Array, train: bool = False,
                     last: str | None = None) -> dict[str, jax.Array]:
        """Named maps ``[N, h, w, C]`` of ``images: [N, H, W, 3]`` up to ``last``.

        ``conv1``..``conv5`` after their ReLU, ``norm1``/``norm2`` after the LRNs, ``pool1``,
        ``pool2``, ``pool5`` (the names of Caffe's ``bvlc_alexnet``).
        """
        del train  # no dropout or BatchNorm in the conv stack
        return collect(self._stream(x), self.feature_names, last, "alexnet_2012")

    @nn.compact
    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """conv1-conv5 with LRN and pooling: ``[N, H, W, 3] -> [N, h, w, 256]`` (6x6 at 227)."""
        return self.feature_maps(x, train=train)["pool5"]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``images: [N, 227, 227, 3] float -> logits [N, num_classes]`` in ``dtype``.

        ``train=True`` enables dropout and needs a ``'dropout'`` rng.
        """
        x = self.features(x, train=train)
        layers.check_flatten_shape(x, self.torch_flatten_shapes["classifier.0"],
                                   "alexnet_2012", self.default_input_shape)
        x = layers.flatten_nchw(x)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                  kernel_init=nn.initializers.normal(0.01))
        x = nn.relu(nn.Dense(4096, bias_init=nn.initializers.ones, name="classifier.0",
                             **kw)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.relu(nn.Dense(4096, bias_init=nn.initializers.ones, name="classifier.3",
                             **kw)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="classifier.6", **kw)(x)


@register_model
def alexnet(**kwargs: Any) -> AlexNet:
    """torchvision's AlexNet ("one weird trick" variant), 61,100,840 parameters.

    Keyword arguments are :class:`AlexNet` fields (``num_classes``, ``dropout``, ``dtype``,
    ``param_dtype``). torchvision ``IMAGENET1K_V1`` weights convert with
    :func:`jaxvision.weights.convert.convert_torchvision`.
    """
    return AlexNet(**kwargs)


@register_model
def alexnet_2012(**kwargs: Any) -> AlexNet2012:
    """The original AlexNet of Krizhevsky et al. (NIPS 2012), 227x227 input, 60,965,224
    parameters (two-group conv2/4/5, LRN, overlapping pooling).

    Keyword arguments are :class:`AlexNet2012` fields.
    """
    return AlexNet2012(**kwargs)
