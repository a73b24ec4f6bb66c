"""torchvision's semantic segmentation models on a dilated ResNet: FCN and DeepLabV3.

``torchvision.models.segmentation`` (``fcn.py``, ``deeplabv3.py``, ``_utils.py``) in Flax,
layer for layer: a ResNet-50/101 with ``replace_stride_with_dilation=(False, True, True)``
(output stride 8) seen through :class:`~jaxvision.models.backbone.IntermediateLayerGetter`
(``layer4`` -> ``"out"``, and ``layer3`` -> ``"aux"`` with ``aux_loss``), a head on each
map, and both logits upsampled to the input's size with torch's ``F.interpolate(...,
mode="bilinear", align_corners=False)``.

* :class:`FCNHead`: 3x3 conv (``in / 4`` channels, no bias), BN, ReLU, dropout 0.1, 1x1 conv.
* :class:`ASPP` (rates 12, 24, 36: a 1x1 branch, three dilated 3x3 branches, image pooling
  upsampled back) and :class:`DeepLabHead` (ASPP, 3x3 conv, BN, ReLU, 1x1 conv).
* :class:`SimpleSegmentationModel`: torchvision's ``_SimpleSegmentationModel`` (``FCN`` and
  ``DeepLabV3`` are that class with other heads).

Variables are named as torchvision's ``state_dict`` (``backbone.layer1.0.conv1.weight``,
``classifier.0.convs.4.1.weight``, ``aux_classifier.4.bias``), so
``jaxvision.weights.convert_torchvision("fcn_resnet50", state_dict)`` converts key for key
(``num_classes`` and ``aux_loss`` are read off the checkpoint, :func:`config_from_state_dict`).

Example::

    model = jaxvision.models.get_model("deeplabv3_resnet50", num_classes=21, aux_loss=True)
    out = model.apply(variables, images, train=False)  # images: [N, H, W, 3] float32
    out["out"], out["aux"]  # [N, H, W, 21] float32 logits each
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models import layers
from jaxvision.models.backbone import IntermediateLayerGetter
from jaxvision.models.registry import register_model
from jaxvision.models.resnet import resnet50, resnet101

Dtype = Any


def upsample_bilinear(x: jax.Array, size: Sequence[int]) -> jax.Array:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` on NHWC input.

    ``jax.image.resize`` with ``antialias=False`` samples at torch's source coordinates
    ``(i + 0.5) * in / out - 0.5`` and renormalizes the triangle weights at the borders,
    which is torch's clamping; measured equal to torch within float32 roundoff (up, down,
    from 1x1, odd sizes; tests/segmentation/test_torchvision_models.py).

    Args:
      x: ``[N, h, w, C]`` float.
      size: ``(H, W)`` output size.

    Returns:
      ``[N, H, W, C]`` in ``x.dtype``.
    """
    h, w = (int(s) for s in size)
    n, _, _, c = x.shape
    return jax.image.resize(x, (n, h, w, c), method="bilinear", antialias=False)


def _conv(features: int, kernel_size: int, *, padding: int = 0, dilation: int = 1,
          use_bias: bool = False, fan_in: int, dtype: Dtype, param_dtype: Dtype,
          name: str) -> nn.Conv:
    # torch.nn.Conv2d's default init (the heads keep it; only the backbone re-initializes).
    kernel_init, bias_init = layers.torch_linear_init(fan_in * kernel_size * kernel_size)
    return nn.Conv(features, (kernel_size, kernel_size), padding=layers.torch_padding(padding),
                   kernel_dilation=(dilation, dilation), use_bias=use_bias, dtype=dtype,
                   param_dtype=param_dtype, kernel_init=kernel_init, bias_init=bias_init,
                   conv_general_dilated=layers.conv_general_dilated, name=name)


def _bn(train: bool, dtype: Dtype, param_dtype: Dtype, name: str) -> layers.BatchNorm:
    return layers.BatchNorm(use_running_average=not train, dtype=dtype,
                            param_dtype=param_dtype, name=name)


class FCNHead(nn.Module):
    """torchvision's ``FCNHead``: ``Sequential(conv3x3, BN, ReLU, Dropout(0.1), conv1x1)``.

    Attributes:
      channels: output channels (the classes).
      dtype, param_dtype: computation and parameter dtypes.

    Variables ``0`` (3x3 conv, ``in // 4`` channels, no bias), ``1`` (BN), ``4`` (1x1 conv
    with bias), torchvision's indices. ``__call__(x: [N, h, w, in], train=False) ->
    [N, h, w, channels]``; dropout (rng ``"dropout"``) only with ``train``.
    """

    channels: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        cin = x.shape[-1]
        inter = cin // 4
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = _conv(inter, 3, padding=1, fan_in=cin, name="0", **kw)(x)
        x = nn.relu(_bn(train, name="1", **kw)(x))
        x = nn.Dropout(0.1, deterministic=not train)(x)
        return _conv(self.channels, 1, use_bias=True, fan_in=inter, name="4", **kw)(x)


class ASPP(nn.Module):
    """torchvision's ``ASPP`` (atrous spatial pyramid pooling, DeepLabV3).

    Attributes:
      atrous_rates: dilations of the three 3x3 branches (torchvision: 12, 24, 36).
      out_channels: channels of every branch and of the projection (256).
      dtype, param_dtype: computation and parameter dtypes.

    Branches ``convs.0`` (1x1 conv, BN, ReLU), ``convs.1..`` (dilated 3x3 conv, BN, ReLU),
    ``convs.{k}`` image pooling (global mean, 1x1 conv ``.1``, BN ``.2``, ReLU, upsampled
    back), concatenated and projected (``project.0`` 1x1 conv, ``.1`` BN, ReLU, dropout 0.5).
    ``__call__(x: [N, h, w, C], train=False) -> [N, h, w, out_channels]``.
    """

    atrous_rates: Sequence[int] = (12, 24, 36)
    out_channels: int = 256
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        cin, c = x.shape[-1], self.out_channels
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}

        def branch(y: jax.Array, name: str, k: int = 1, rate: int = 1, conv: str = "0",
                   bn: str = "1") -> jax.Array:
            y = _conv(c, k, padding=rate if k == 3 else 0, dilation=rate, fan_in=cin,
                      name=f"{name}.{conv}", **kw)(y)
            return nn.relu(_bn(train, name=f"{name}.{bn}", **kw)(y))

        res = [branch(x, "convs.0")]
        res += [branch(x, f"convs.{i + 1}", 3, int(r)) for i, r in enumerate(self.atrous_rates)]
        pooled = jnp.mean(x, axis=(1, 2), keepdims=True)  # AdaptiveAvgPool2d(1)
        pooled = branch(pooled, f"convs.{len(res)}", conv="1", bn="2")
        # Bilinear upsampling of a 1x1 map is the constant map (torch's interpolate clamps
        # every source index to 0), so broadcasting is exact.
        res.append(jnp.broadcast_to(pooled, (*x.shape[:3], c)))
        y = jnp.concatenate(res, axis=-1)
        y = _conv(c, 1, fan_in=y.shape[-1], name="project.0", **kw)(y)
        y = nn.relu(_bn(train, name="project.1", **kw)(y))
        return nn.Dropout(0.5, deterministic=not train)(y)


class DeepLabHead(nn.Module):
    """torchvision's ``DeepLabHead``: ``Sequential(ASPP, conv3x3, BN, ReLU, conv1x1)``.

    Attributes:
      num_classes: output channels.
      atrous_rates: the ASPP's dilations.
      dtype, param_dtype: computation and parameter dtypes.

    Variables ``0`` (:class:`ASPP`), ``1`` (3x3 conv 256, no bias), ``2`` (BN), ``4`` (1x1
    conv with bias). ``__call__(x: [N, h, w, C], train=False) -> [N, h, w, num_classes]``.
    """

    num_classes: int
    atrous_rates: Sequence[int] = (12, 24, 36)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = ASPP(tuple(self.atrous_rates), name="0", **kw)(x, train=train)
        x = _conv(256, 3, padding=1, fan_in=x.shape[-1], name="1", **kw)(x)
        x = nn.relu(_bn(train, name="2", **kw)(x))
        return _conv(self.num_classes, 1, use_bias=True, fan_in=256, name="4", **kw)(x)


class SimpleSegmentationModel(nn.Module):
    """torchvision's ``_SimpleSegmentationModel`` (``FCN``, ``DeepLabV3``).

    Attributes:
      encoder: a zoo model with named feature maps (a dilated ResNet).
      head: head on the ``out_layer`` map.
      aux_head: head on the ``aux_layer`` map, or None.
      out_layer, aux_layer: the encoder's map names (``layer4``, ``layer3``).

    ``__call__(images: [N, H, W, 3] float32 normalized, train=False) -> {"out": [N, H, W,
    C]}`` plus ``"aux"`` (same shape) with an aux head; logits in the model's dtype.
    ``train=True`` uses batch statistics (``mutable=["batch_stats"]``) and dropout (rng
    ``"dropout"``). Variables: ``backbone/...`` (the ResNet's, up to its last used map),
    ``classifier/...``, ``aux_classifier/...``: torchvision's names.
    """

    encoder: nn.Module
    head: nn.Module
    aux_head: nn.Module | None = None
    out_layer: str = "layer4"
    aux_layer: str = "layer3"

    def setup(self) -> None:
        return_layers = {self.out_layer: "out"}
        if self.aux_head is not None:
            return_layers[self.aux_layer] = "aux"
        # Unbound copies, so that each variable lives under torchvision's name only.
        self.backbone = IntermediateLayerGetter(self.encoder.clone(parent=None), return_layers)
        self.classifier = self.head.clone(parent=None)
        self.aux_classifier = (None if self.aux_head is None
                               else self.aux_head.clone(parent=None))

    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        size = x.shape[1:3]
        features = self.backbone(x, train=train)
        result = {"out": upsample_bilinear(self.classifier(features["out"], train=train), size)}
        if self.aux_classifier is not None:
            aux = self.aux_classifier(features["aux"], train=train)
            result["aux"] = upsample_bilinear(aux, size)
        return result


def _segmentation_model(backbone: Callable[..., nn.Module], head: str, num_classes: int | None,
                        aux_loss: bool | None, dtype: Dtype, param_dtype: Dtype,
                        **backbone_kwargs: Any) -> SimpleSegmentationModel:
    num_classes = 21 if num_classes is None else int(num_classes)  # torchvision's default
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if "replace_stride_with_dilation" in backbone_kwargs:
        raise TypeError("the segmentation models fix replace_stride_with_dilation to "
                        "(False, True, True), as torchvision's builders do")
    kw = {"dtype": dtype, "param_dtype": param_dtype}
    net = backbone(replace_stride_with_dilation=(False, True, True), **kw, **backbone_kwargs)
    classifier = (FCNHead(num_classes, **kw) if head == "fcn"
                  else DeepLabHead(num_classes, **kw))
    aux = FCNHead(num_classes, **kw) if aux_loss else None
    return SimpleSegmentationModel(net, classifier, aux)


_DOC = """torchvision's ``{name}``: {head} on a dilated {resnet} (output stride 8).

    Args:
      num_classes: classes including the background (torchvision's default 21, the VOC
        labels of the COCO_WITH_VOC_LABELS_V1 weights).
      aux_loss: add the auxiliary FCNHead on ``layer3`` (``"aux"`` output); torchvision's
        default None means no; its pretrained weights have one.
      dtype, param_dtype: computation and parameter dtypes.
      **backbone_kwargs: more :class:`~jaxvision.models.resnet.ResNet` fields (``frozen_bn``).

    Returns:
      :class:`SimpleSegmentationModel`; {params:,} parameters with ``num_classes=21,
      aux_loss=True`` (torchvision's count).
    """


@register_model
def fcn_resnet50(num_classes: int | None = None, aux_loss: bool | None = None,
                 dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
                 **backbone_kwargs: Any) -> SimpleSegmentationModel:
    return _segmentation_model(resnet50, "fcn", num_classes, aux_loss, dtype, param_dtype,
                               **backbone_kwargs)


@register_model
def fcn_resnet101(num_classes: int | None = None, aux_loss: bool | None = None,
                  dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
                  **backbone_kwargs: Any) -> SimpleSegmentationModel:
    return _segmentation_model(resnet101, "fcn", num_classes, aux_loss, dtype, param_dtype,
                               **backbone_kwargs)


@register_model
def deeplabv3_resnet50(num_classes: int | None = None, aux_loss: bool | None = None,
                       dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
                       **backbone_kwargs: Any) -> SimpleSegmentationModel:
    return _segmentation_model(resnet50, "deeplab", num_classes, aux_loss, dtype, param_dtype,
                               **backbone_kwargs)


@register_model
def deeplabv3_resnet101(num_classes: int | None = None, aux_loss: bool | None = None,
                        dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
                        **backbone_kwargs: Any) -> SimpleSegmentationModel:
    return _segmentation_model(resnet101, "deeplab", num_classes, aux_loss, dtype, param_dtype,
                               **backbone_kwargs)


for _fn, _head, _resnet, _params in (
        (fcn_resnet50, "FCNHead", "ResNet-50", 35_322_218),
        (fcn_resnet101, "FCNHead", "ResNet-101", 54_314_346),
        (deeplabv3_resnet50, "DeepLabHead (ASPP)", "ResNet-50", 42_004_074),
        (deeplabv3_resnet101, "DeepLabHead (ASPP)", "ResNet-101", 60_996_202)):
    _fn.__doc__ = _DOC.format(name=_fn.__name__, head=_head, resnet=_resnet, params=_params)


def config_from_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``num_classes`` and ``aux_loss`` of a torchvision FCN/DeepLabV3 ``state_dict``.

    Both heads end in a 1x1 conv at index 4 (``classifier.4.weight``: ``[C, 256 or 512, 1,
    1]``); the auxiliary head is there when any ``aux_classifier.`` key is.
    """
    out: dict[str, Any] = {"aux_loss": any(k.startswith("aux_classifier.") for k in state_dict)}
    w = state_dict.get("classifier.4.weight")
    if w is not None:
        out["num_classes"] = int(w.shape[0])
    return out


for _fn in (fcn_resnet50, fcn_resnet101, deeplabv3_resnet50, deeplabv3_resnet101):
    _fn.config_from_state_dict = config_from_state_dict  # type: ignore[attr-defined]
