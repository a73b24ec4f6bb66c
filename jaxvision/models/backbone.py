"""Backbones for dense tasks: named feature maps, FPN on top, which stages to train.

torchvision's ``models/_utils.py`` and ``models/detection/backbone_utils.py`` in Flax:

* :class:`IntermediateLayerGetter` returns chosen maps of any zoo model that follows the
  feature-map protocol (:mod:`jaxvision.models.features`: VGG, AlexNet, the ResNets), renamed,
  with the model's variables at its own top level (so torchvision's ``state_dict`` of an
  ``IntermediateLayerGetter`` converts key for key), and no variables past the last map.
* :class:`BackboneWithFPN` is that getter (``body``) plus a
  :class:`~jaxvision.models.fpn.FeaturePyramidNetwork` (``fpn``); :func:`resnet_fpn_backbone`
  builds torchvision's ResNet-FPN (FrozenBatchNorm, ``returned_layers``, 256 channels,
  ``LastLevelMaxPool``); its variables convert from torchvision's ``resnet_fpn_backbone``
  state dict (``body.layer1.0.conv1.weight``, ``fpn.inner_blocks.0.0.weight``) with
  :func:`jaxvision.weights.convert.convert_state_dict`.
* :func:`frozen_patterns` gives the parameters torchvision's ``trainable_layers`` freezes, as
  regular expressions for the training engine's ``optimizer.frozen``.

Example::

    model = resnet_fpn_backbone("resnet50", trainable_layers=3)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 800, 1216, 3)))
    maps = model.apply(variables, images)  # {"0": [N, H/4, W/4, 256], ..., "pool": H/64}
    config.optimizer.frozen = model.frozen_patterns(prefix="backbone")  # inside a detector
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.features import check_feature_name
from jaxvision.models.fpn import FeaturePyramidNetwork, LastLevelMaxPool
from jaxvision.models.registry import get_model
from jaxvision.models.resnet import ResNet

ReturnLayers = Mapping[str, str] | Sequence[str]

# torchvision's _resnet_fpn_extractor: the stages trained for trainable_layers = 1, 2, ...
_TRAINABLE_ORDER = ("layer4", "layer3", "layer2", "layer1", "conv1")


def _as_pairs(return_layers: ReturnLayers) -> tuple[tuple[str, str], ...]:
    """``{name: new_name}`` or ``[name, ...]`` (kept names) as hashable pairs."""
    if isinstance(return_layers, str):
        raise TypeError(f"return_layers must be a mapping or a list of names, got the string "
                        f"{return_layers!r}")
    if isinstance(return_layers, Mapping):
        return tuple((str(k), str(v)) for k, v in return_layers.items())
    # Pairs come back here when Flax clones the module.
    return tuple((str(k[0]), str(k[1])) if isinstance(k, tuple) else (str(k), str(k))
                 for k in return_layers)


class IntermediateLayerGetter(nn.Module):
    """torchvision's ``IntermediateLayerGetter`` over a zoo model's named feature maps.

    Attributes:
      model: a zoo model with ``feature_names`` and ``feature_maps`` (VGG, AlexNet, ResNet,
        ...). Its variables live at this module's top level (``conv1``, ``layer1.0``, ...,
        not under ``model/``), as in torchvision, and stop at the last returned map.
      return_layers: ``{map name: output name}`` (torchvision's form, e.g. ``{"layer4":
        "out"}``) or a list of map names kept as they are.

    ``__call__(images: [N, H, W, 3], train=False) -> {output name: [N, h, w, C]}`` in the
    model's order of the maps (as torchvision), whatever the order of ``return_layers``.
    """

    model: nn.Module
    return_layers: ReturnLayers

    def __post_init__(self) -> None:
        # A tuple keeps the module hashable (a dict field is not).
        object.__setattr__(self, "return_layers", _as_pairs(self.return_layers))
        super().__post_init__()

    def setup(self) -> None:
        nn.share_scope(self, self.model)

    @property
    def ordered_layers(self) -> tuple[tuple[str, str], ...]:
        """``(map name, output name)`` pairs in the model's order of the maps."""
        names = tuple(self.model.feature_names)
        model = type(self.model).__name__
        if not self.return_layers:
            raise ValueError("return_layers is empty; name at least one of the maps: "
                             f"{', '.join(names)}")
        for name, _ in self.return_layers:
            check_feature_name(name, names, model)
        return tuple(sorted(self.return_layers, key=lambda p: names.index(p[0])))

    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        order = self.ordered_layers
        maps = self.model.feature_maps(x, train=train, last=order[-1][0])
        return {out: maps[name] for name, out in order}


def frozen_patterns(trainable_layers: int, prefix: str = "",
                    frozen_bn: bool = True) -> list[str]:
    """Regexes of the ResNet parameters that torchvision's ``trainable_layers`` freezes.

    torchvision's ``_resnet_fpn_extractor`` trains the last ``trainable_layers`` of
    ``layer4, layer3, layer2, layer1, conv1`` (5 adds ``bn1``: everything) and freezes the
    rest (``fc`` included). With ``frozen_bn`` every BatchNorm's ``scale``/``bias`` is frozen
    too (torchvision's ``FrozenBatchNorm2d`` holds them as buffers); keep them out of the
    optimizer, where weight decay would otherwise move them.

    Args:
      trainable_layers: 0..5.
      prefix: '/'-joined path of the ResNet's parameters in the whole model, e.g.
        ``"backbone/body"`` in a detector; ``""`` for a bare ResNet.
      frozen_bn: also freeze every norm layer's parameters.

    Returns:
      Regular expressions over '/'-joined parameter paths (``layer1.0/conv1/kernel``),
      anchored at both ends, for ``optimizer.frozen``.
    """
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers should be in the range [0, 5] (as torchvision's), "
                         f"got {trainable_layers}")
    train = list(_TRAINABLE_ORDER[:trainable_layers]) + (["bn1"] if trainable_layers == 5 else [])
    frozen = [n for n in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")
              if n not in train]
    p = re.escape(prefix.strip("/") + "/") if prefix.strip("/") else ""
    # "layer1" must not match "layer10" (torch's startswith would): stages end at the dot.
    heads = [f"{n}\\." if n.startswith("layer") else f"{n}/" for n in frozen]
    out = [f"^{p}(?:{'|'.join(heads)}).*$"] if heads else []
    if frozen_bn:
        out.append(f"^{p}(?:bn1|layer\\d+\\.\\d+/(?:bn\\d+|downsample\\.1))/.*$")
    return out


class BackboneWithFPN(nn.Module):
    """torchvision's ``BackboneWithFPN``: ``fpn(body(images))``.

    Attributes:
      backbone: a zoo model with named feature maps (:mod:`jaxvision.models.features`).
      return_layers: ``{map name: FPN level name}`` (torchvision's ``{"layer1": "0", ...}``),
        maps ordered from the finest to the coarsest.
      out_channels: FPN channels (256).
      extra_blocks: FPN extra levels; None means :class:`LastLevelMaxPool` (as torchvision).
      trainable_layers: for a ResNet body, the number of trainable stages (0..5) that
        :meth:`frozen_patterns` reports; None freezes nothing.

    Variables: ``body/...`` (the backbone's, up to its last returned map) and
    ``fpn/{inner,layer}_blocks.{i}.0/...``, torchvision's ``state_dict`` keys.
    ``__call__(images: [N, H, W, 3], train=False) -> {level: [N, h, w, out_channels]}``.
    """

    backbone: nn.Module
    return_layers: ReturnLayers
    out_channels: int = 256
    extra_blocks: nn.Module | None = None
    trainable_layers: int | None = None
    fpn_batch_norm: bool = False  # torchvision's FPN norm_layer=BatchNorm2d (Faster R-CNN v2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "return_layers", _as_pairs(self.return_layers))
        super().__post_init__()

    def setup(self) -> None:
        # An unbound copy, so that the backbone's variables live under "body" only.
        self.body = IntermediateLayerGetter(self.backbone.clone(parent=None), self.return_layers)
        extra = self.extra_blocks if self.extra_blocks is not None else LastLevelMaxPool()
        self.fpn = FeaturePyramidNetwork(
            self.out_channels, extra_blocks=extra.clone(parent=None),
            dtype=getattr(self.backbone, "dtype", jnp.float32),
            param_dtype=getattr(self.backbone, "param_dtype", jnp.float32),
            batch_norm=self.fpn_batch_norm)

    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        return self.fpn(self.body(x, train=train), train=train)

    def frozen_patterns(self, prefix: str = "") -> list[str]:
        """:func:`frozen_patterns` for this module's ResNet body, its path under ``prefix``.

        ``prefix`` is this module's own path in the whole model (``"backbone"`` in a
        detector); returns ``[]`` when ``trainable_layers`` is None.
        """
        if self.trainable_layers is None:
            return []
        body = "/".join(p for p in (prefix.strip("/"), "body") if p)
        return frozen_patterns(self.trainable_layers, body,
                               frozen_bn=bool(getattr(self.backbone, "frozen_bn", False)))


def resnet_fpn_backbone(backbone_name: str, *, trainable_layers: int = 3,
                        returned_layers: Sequence[int] | None = None,
                        extra_blocks: nn.Module | None = None, frozen_bn: bool = True,
                        **config: Any) -> BackboneWithFPN:
    """torchvision's ``resnet_fpn_backbone`` / ``_resnet_fpn_extractor``.

    Args:
      backbone_name: a zoo ResNet (``resnet50``, ``resnext101_32x8d``, ``wide_resnet50_2``,
        ...).
      trainable_layers: stages left trainable, 0..5 (torchvision's default 3: ``layer2`` ..
        ``layer4``); the rest is reported by :meth:`BackboneWithFPN.frozen_patterns`.
      returned_layers: stages fed to the FPN, each in 1..4 (default all four), named
        ``"0"``, ``"1"``, ... in that order.
      extra_blocks: FPN extra levels (default :class:`LastLevelMaxPool`, level ``"pool"``).
      frozen_bn: torchvision's ``norm_layer=FrozenBatchNorm2d`` (its default).
      **config: further ResNet fields (``replace_stride_with_dilation``, ``dtype``, ...).

    Returns:
      A :class:`BackboneWithFPN` with 256 output channels; at 800x1216 its levels are
      200x304, 100x152, 50x76, 25x38 and 13x19 (``"pool"``).
    """
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers should be in the range [0, 5], got "
                         f"{trainable_layers}")
    returned = [1, 2, 3, 4] if returned_layers is None else [int(k) for k in returned_layers]
    if not returned or min(returned) <= 0 or max(returned) >= 5:
        raise ValueError(f"each returned layer should be in the range [1, 4], got "
                         f"{returned_layers}")
    backbone = get_model(backbone_name, **config)
    if not isinstance(backbone, ResNet):
        raise ValueError(f"resnet_fpn_backbone needs an ImageNet ResNet (resnet50, "
                         f"resnext50_32x4d, ...), got {backbone_name!r}")
    backbone = backbone.clone(frozen_bn=frozen_bn)
    return BackboneWithFPN(backbone, {f"layer{k}": str(v) for v, k in enumerate(returned)},
                           out_channels=256, extra_blocks=extra_blocks,
                           trainable_layers=trainable_layers)


__all__ = ["BackboneWithFPN", "IntermediateLayerGetter", "frozen_patterns",
           "resnet_fpn_backbone"]
