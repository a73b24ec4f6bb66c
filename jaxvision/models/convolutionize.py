"""Convolutionize: turn a classifier's dense layers into convolutions (Overfeat, FCN).

A classifier whose dense layers follow a conv stack computes, at its training size, one
prediction from an ``h x w x C`` feature map. Rewriting the first dense layer as an ``h x w``
convolution and the others as ``1 x 1`` convolutions (the same weights, reshaped, not
retrained) gives a fully convolutional network: on a larger image it slides the classifier
over every ``h x w`` window of the feature map at once, sharing the conv computation between
overlapping windows (Sermanet et al., "OverFeat", ICLR 2014; Long et al., "Fully
Convolutional Networks for Semantic Segmentation", CVPR 2015).

Output position ``(i, j)`` of the result sees the input window whose top-left corner is
``(i * stride, j * stride)`` (``stride`` = the product of the conv stack's strides) and
whose size is the training size. For a conv stack without padding (LeNet-5, OverFeat) this
*equals* classifying that input crop; with padded convolutions (AlexNet, VGG) the feature
map of the big image continues across where a crop would see zero padding, so values near a
crop's border differ: dense evaluation then equals the dense layers applied to the windows of
the big image's feature map, not to crops.

Models opt in through a ``convolutionize_spec`` property returning a
:class:`ConvolutionizeSpec`, and a ``features(x, train)`` method returning the conv map that
enters the classifier (before any adaptive pooling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.models import layers


class ConvolutionizeSpec(NamedTuple):
    """How a classifier's head is laid out, for :func:`convolutionize`.

    Attributes:
      dense: names of the dense layers after the flatten, in order.
      activation: applied between dense layers (not after the last).
      adaptive_pool: output size of an adaptive average pooling between the conv stack and
        the flatten (AlexNet's 6x6, VGG's 7x7), or None.
      last_pool: ``(kernel, stride)`` of the conv stack's last max pooling when
        ``features(x, train, last_pool=False)`` can stop before it (OverFeat's offset
        pooling), else None.
      dropout: dropout rate between dense layers (used only with ``train=True``).
    """

    dense: tuple[str, ...]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    adaptive_pool: tuple[int, int] | None = None
    last_pool: tuple[int, int] | None = None
    dropout: float = 0.0


class FullyConvolutional(nn.Module):
    """A classifier's conv stack followed by its dense layers as convolutions.

    ``images: [N, H, W, C] float32 -> class maps [N, h, w, num_classes]``. Variables:
    ``params/backbone`` (the conv stack), ``params/<dense name>`` (the reshaped kernels),
    and ``batch_stats/backbone`` for nets with BatchNorm.

    With ``offset_pool`` set to the last pooling's ``(k, s)``, the last pooling is made dense
    (stride 1) and the first classifier convolution dilated by ``s``: this computes OverFeat's
    offset max-pooling for every shift ``(dx, dy)`` in ``0..s-1`` at once, interleaved, and
    divides the output stride by ``s``.
    """

    backbone: nn.Module
    dense: tuple[str, ...]
    widths: tuple[int, ...]
    window: tuple[int, int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    dropout: float = 0.0
    offset_pool: tuple[int, int] | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.offset_pool is None:
            f = self.backbone.features(x, train=train)
            dilation = 1
        else:
            k, s = self.offset_pool
            f = self.backbone.features(x, train=train, last_pool=False)
            f = layers.max_pool(f, k, 1)
            dilation = s
        need = [(w - 1) * dilation + 1 for w in self.window]
        if f.shape[1] < need[0] or f.shape[2] < need[1]:
            raise ValueError(f"input {x.shape[1]}x{x.shape[2]} is too small: the feature map "
                             f"{f.shape[1]}x{f.shape[2]} is smaller than the classifier's "
                             f"{need[0]}x{need[1]} window")
        for i, (name, width) in enumerate(zip(self.dense, self.widths, strict=True)):
            first = i == 0
            f = nn.Conv(width, self.window if first else (1, 1), padding="VALID",
                        kernel_dilation=dilation if first else 1, dtype=self.dtype,
                        conv_general_dilated=layers.conv_general_dilated, name=name)(f)
            if i < len(self.dense) - 1:
                f = self.activation(f)
                if self.dropout:
                    f = nn.Dropout(self.dropout, deterministic=not train)(f)
        return f


def get_spec(model: nn.Module) -> ConvolutionizeSpec:
    """``model.convolutionize_spec``: its conv stack and the dense layers after it; a
    TypeError naming the model when it has none."""
    spec = getattr(model, "convolutionize_spec", None)
    if spec is None:
        raise TypeError(
            f"{type(model).__name__} cannot be convolutionized: convolutionize needs dense "
            "layers that follow a conv stack (lenet5, alexnet, alexnet_2012, vgg*, overfeat*); "
            "this model ends otherwise (e.g. global average pooling + one dense layer, which is "
            "already a 1x1 convolution after the pooling)")
    return spec


def convolutionize(
    model: nn.Module, variables: dict, input_shape: Sequence[int], *,
    offset_pooling: bool = False,
) -> tuple[FullyConvolutional, dict]:
    """Converts a classifier into a fully convolutional model with the same weights.

    Args:
      model: a zoo classifier with dense layers after its conv stack (lenet5, alexnet,
        alexnet_2012, vgg*, overfeat_*).
      variables: its variables (``params`` and, with BatchNorm, ``batch_stats``).
      input_shape: ``(H, W, C)``, the size the classifier was trained at; its conv map sets
        the first convolution's kernel.
      offset_pooling: make the last max pooling dense and dilate the classifier (OverFeat's
        offset max-pooling); only for models whose spec has ``last_pool``.

    Returns:
      ``(fcn, fcn_variables)``; ``fcn.apply(fcn_variables, images, train=False)`` gives
      ``[N, h, w, num_classes]``, ``h = w = 1`` at ``input_shape``, where it equals the
      classifier's logits.

    Raises:
      TypeError: the model has no dense layers after a conv stack.
      ValueError: the adaptive pooling is not the identity at ``input_shape`` (the dense
        weights would then mix pooled cells, which no single convolution reproduces), or the
        variables do not fit.
    """
    spec = get_spec(model)
    name = type(model).__name__
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C), got {tuple(input_shape)}")
    params = variables["params"]
    missing = [d for d in spec.dense if d not in params]
    if missing:
        raise ValueError(f"variables of {name} lack the dense layers {missing}")
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    feat = jax.eval_shape(lambda v, x: model.apply(v, x, method="features"), variables, x)
    _, fh, fw, c = feat.shape
    if spec.adaptive_pool is not None and (fh, fw) != tuple(spec.adaptive_pool):
        raise ValueError(
            f"{name}'s adaptive pooling to {tuple(spec.adaptive_pool)} is not the identity at "
            f"input {tuple(input_shape)} (its conv map is {fh}x{fw}); convolutionize at the "
            "training size, where the pooling can be dropped")
    kernel = np.asarray(params[spec.dense[0]]["kernel"])
    if kernel.shape[0] != fh * fw * c:
        raise ValueError(
            f"{name}'s first dense layer {spec.dense[0]!r} takes {kernel.shape[0]} inputs but the "
            f"conv map at {tuple(input_shape)} has {fh}x{fw}x{c} = {fh * fw * c}")
    offset = None
    if offset_pooling:
        if spec.last_pool is None:
            raise ValueError(f"{name} has no last pooling that offset pooling can replace")
        offset = tuple(spec.last_pool)
    new_params: dict[str, Any] = {
        "backbone": {k: v for k, v in params.items() if k not in spec.dense}}
    widths = []
    for i, d in enumerate(spec.dense):
        k = params[d]["kernel"]
        widths.append(int(k.shape[-1]))
        shape = (fh, fw, c, k.shape[-1]) if i == 0 else (1, 1, *k.shape)
        new_params[d] = {"kernel": jnp.reshape(k, shape), "bias": params[d]["bias"]}
    new_vars = {"params": new_params}
    for col, tree in variables.items():
        if col != "params":
            new_vars[col] = {"backbone": tree}
    fcn = FullyConvolutional(
        backbone=model, dense=spec.dense, widths=tuple(widths), window=(fh, fw),
        activation=spec.activation, dropout=spec.dropout, offset_pool=offset,
        dtype=getattr(model, "dtype", jnp.float32))
    return fcn, new_vars


def network_stride(model: nn.Module, input_shape: Sequence[int], *,
                   offset_pooling: bool = False) -> int:
    """Pixels between neighbouring outputs of the convolutionized ``model`` (rows).

    Measured from the feature-map sizes at two input sizes, so it is right for any conv stack.
    """
    h, w, c = input_shape
    spec = get_spec(model)
    key = jax.random.key(0)
    v = jax.eval_shape(lambda x: model.init(key, x),
                       jax.ShapeDtypeStruct((1, h, w, c), jnp.float32))

    def fmap(size: int) -> int:
        x = jax.ShapeDtypeStruct((1, size, w, c), jnp.float32)
        return jax.eval_shape(lambda v, x: model.apply(v, x, method="features"), v, x).shape[1]

    # The map grows by one each time the input grows by the stride: time two growths.
    growths, prev = [], fmap(h)
    for extra in range(1, 513):
        cur = fmap(h + extra)
        if cur > prev:
            growths.append(extra)
            if len(growths) == 2:
                break
        prev = cur
    if len(growths) < 2:  # pragma: no cover - no zoo model has a stride above 256
        raise ValueError("could not determine the network stride")
    stride = growths[1] - growths[0]
    if offset_pooling and spec.last_pool is not None:
        stride //= spec.last_pool[1]
    return stride
