"""SegNet and SegNet-Basic, from "SegNet: A Deep Convolutional Encoder-Decoder Architecture
for Image Segmentation" (Badrinarayanan, Kendall, Cipolla; TPAMI 2017), as the
SegNet-Tutorial prototxts (``segnet_train.prototxt``, ``segnet_basic_train.prototxt``) define
them.

``images: [N, H, W, 3] float32 -> logits [N, H, W, num_classes]`` for any ``H, W`` (SegNet:
``>= 32``): Caffe's pooling is ceil-mode, and each max-unpooling restores the exact size of
the map its indices came from (the prototxts' ``upsample_h/w``), so odd sizes round-trip.

* **SegNet**: the VGG-16 encoder with BatchNorm (13 convs, :class:`jaxvision.models.vgg.VGG`
  with ``pool_indices=True`` under ``encoder``; its params convert from torchvision's
  ``vgg16_bn``), 5 pools whose argmax drive :func:`jaxvision.ops.max_unpool` in the mirrored
  decoder: 12 conv 3x3 + BN + ReLU (``conv5_3_D`` ... ``conv1_2_D``) and the 3x3 classifier
  ``conv1_1_D`` (13 decoder convs, as the paper counts them).
* **SegNet-Basic**: the input LRN (``norm``: size 5, alpha 1e-4, beta 0.75), 4 encoders
  (7x7 conv of 64 channels + BN + ReLU + 2x2 pool with indices) and 4 decoders (unpool + 7x7
  conv of 64 + BN, no ReLU, as the paper states), then the 1x1 ``conv_classifier``.

Convs keep their bias before BN as the prototxts do (Caffe's default ``bias_term: true``),
so parameter counts equal the published nets.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision import checks
from jaxvision.models import layers
from jaxvision.models.registry import register_model
from jaxvision.models.upsample import MaxUnpool2d
from jaxvision.models.vgg import CONFIGS, VGG
from jaxvision.ops.unpool import max_pool_with_argmax

__all__ = ["DECODER", "SegNet", "SegNetBasic", "segnet", "segnet_basic"]

# SegNet-Tutorial's decoder, per encoder stage (deepest first): output channels of the
# conv-BN-ReLU layers after that stage's upsampling; stage 1 ends with the classifier.
DECODER: tuple[tuple[int, tuple[int, ...]], ...] = (
    (5, (512, 512, 512)), (4, (512, 512, 256)), (3, (256, 256, 128)), (2, (128, 64)),
    (1, (64,)))


class SegNet(nn.Module):
    """SegNet (VGG-16 encoder-decoder): ``[N, H, W, 3] -> [N, H, W, num_classes]``.

    Attributes:
      num_classes: classifier channels (11 for CamVid).
      dtype, param_dtype: computation and parameter dtypes.

    ``train=True`` uses batch statistics (pass ``mutable=["batch_stats"]``).
    """

    num_classes: int = 11
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``images [N, H, W, 3]`` float -> ``logits [N, H, W, num_classes]`` in ``dtype``."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        enc = VGG(config=CONFIGS["D"], batch_norm=True, pool_indices=True, ceil_mode=True,
                  name="encoder", **kw)
        f = enc.feature_maps(x, train=train, last="pool5_indices")
        y = f["pool5"]
        for stage, widths in DECODER:
            n_convs = len(widths)
            before = f[f"conv{stage}_{3 if stage >= 3 else 2}"]
            y = MaxUnpool2d()(y, f[f"pool{stage}_indices"], before.shape[1:3])
            for i, width in enumerate(widths):
                name = f"conv{stage}_{n_convs - i + (1 if stage == 1 else 0)}_D"
                y = layers.conv2d(width, 3, 1, 1, name=name, **kw)(y)
                y = layers.BatchNorm(use_running_average=not train, name=f"{name}_bn", **kw)(y)
                y = nn.relu(y)
        return layers.conv2d(self.num_classes, 3, 1, 1, name="conv1_1_D", **kw)(y)


class SegNetBasic(nn.Module):
    """SegNet-Basic: ``[N, H, W, 3] -> [N, H, W, num_classes]``, any ``H, W``.

    Attributes:
      num_classes: classifier channels (11 for CamVid).
      input_lrn: the prototxt's LRN on the input (the paper's local contrast normalization).
      dtype, param_dtype: computation and parameter dtypes.
    """

    num_classes: int = 11
    input_lrn: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``images [N, H, W, 3]`` float -> ``logits [N, H, W, num_classes]`` in ``dtype``."""
        checks.check_images(x, model="segnet_basic", channels=3)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y = x.astype(self.dtype)
        if self.input_lrn:
            y = layers.local_response_norm(y, 5, 1e-4, 0.75, 1.0)
        skips = []
        for i in range(1, 5):
            y = layers.conv2d(64, 7, 1, 3, name=f"conv{i}", **kw)(y)
            y = layers.BatchNorm(use_running_average=not train, name=f"conv{i}_bn", **kw)(y)
            y = nn.relu(y)
            size = y.shape[1:3]
            y, idx = max_pool_with_argmax(y, 2, 2, ceil_mode=True)
            skips.append((idx, size))
        for i in range(4, 0, -1):
            idx, size = skips[i - 1]
            y = MaxUnpool2d()(y, idx, size)
            y = layers.conv2d(64, 7, 1, 3, name=f"conv_decode{i}", **kw)(y)
            y = layers.BatchNorm(use_running_average=not train, name=f"conv_decode{i}_bn",
                                 **kw)(y)
        return layers.conv2d(self.num_classes, 1, name="conv_classifier", **kw)(y)


@register_model
def segnet(**kwargs: Any) -> SegNet:
    """SegNet (VGG-16), 29,449,355 parameters at 11 classes (segnet_train.prototxt); kwargs
    are :class:`SegNet` fields."""
    return SegNet(**kwargs)


@register_model
def segnet_basic(**kwargs: Any) -> SegNetBasic:
    """SegNet-Basic, 1,416,587 parameters at 11 classes (segnet_basic_train.prototxt); kwargs
    are :class:`SegNetBasic` fields."""
    return SegNetBasic(**kwargs)
