"""FCN-32s, FCN-16s and FCN-8s on VGG-16, from "Fully Convolutional Networks for Semantic
Segmentation" (Long, Shelhamer, Darrell; CVPR 2015 / TPAMI 2017), as the Caffe ``voc-fcn*``
nets define them.

``images: [N, H, W, 3] float32 -> logits [N, H, W, num_classes]``:

* the VGG-16 conv stack (:class:`jaxvision.models.vgg.VGG`, Caffe's ceil-mode pooling) under
  ``backbone`` (its params convert from torchvision's ``vgg16`` as ``backbone/features.*``);
* ``fc6`` (7x7, 4096) and ``fc7`` (1x1, 4096) with ReLU and dropout: VGG's classifier made
  convolutional (:func:`jaxvision.models.convolutionize.convolutionize` gives those weights
  from a trained ``vgg16``; :func:`fcn_params_from_vgg16` places them here);
* ``score_fr`` (1x1 to classes) and, for 16s/8s, ``score_pool4`` / ``score_pool3`` on the
  pooled maps, zero-initialised as in the paper;
* transposed convolutions without bias (:class:`jaxvision.models.upsample.ConvTranspose2d`)
  initialised to bilinear upsampling: ``upscore`` (x32) for 32s; ``upscore2`` (x2),
  ``upscore16`` (x16) for 16s; ``upscore2``, ``upscore_pool4`` (x2), ``upscore8`` (x8) for
  8s; kernel ``2f``, stride ``f``.

Two alignments:

* ``pad100=True``: the original nets, ``conv1_1`` padded by 100 so that ``fc6``'s 7x7 window
  fits any input; the skips and the output are cropped at the Caffe offsets (score_pool4 at
  5, score_pool3 at 9; the output at 19 / 27 / 31 for 32s / 16s / 8s). These offsets follow
  from the layers' coordinate maps (a layer with kernel k, stride s, pad p maps output
  ``y`` to input ``s * y + (k - 1) / 2 - p``), and equal the ``crop_param`` offsets of the
  released prototxts.
* ``pad100=False`` (default): ``fc6`` padded by 3 and the upsamplers padded by ``f / 2``, so
  every map is aligned at offset 0 (same coordinate maps); the ceil-mode pooling makes each
  upsampled map at least as large as the map it meets, which is cropped at 0. Inputs smaller
  than 32 are zero-padded at the bottom/right to 32 and the output cropped back. Output size
  equals input size for every input size, with 32x less compute wasted on padding.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import checks
from jaxvision.models import layers
from jaxvision.models.registry import register_model
from jaxvision.models.upsample import ConvTranspose2d, bilinear_transpose_init
from jaxvision.models.vgg import CONFIGS, VGG

__all__ = ["FCN", "fcn8s", "fcn16s", "fcn32s", "fcn_params_from_vgg16"]

# Caffe crop offsets of the voc-fcn* prototxts (pad100=True): (score_pool4, score_pool3,
# output) per variant.
CROPS = {32: (None, None, 19), 16: (5, None, 27), 8: (5, 9, 31)}


def _crop(x: jax.Array, offset: int, size: tuple[int, int], what: str) -> jax.Array:
    """``x[:, o:o + h, o:o + w]``, with a clear error when ``x`` is too small."""
    h, w = size
    if x.shape[1] < offset + h or x.shape[2] < offset + w:
        raise ValueError(f"FCN: cannot crop {what} {x.shape[1]}x{x.shape[2]} at offset "
                         f"{offset} to {h}x{w}")
    return x[:, offset:offset + h, offset:offset + w]


class FCN(nn.Module):
    """FCN-``variant``s on VGG-16: ``[N, H, W, 3] float32 -> [N, H, W, num_classes]``.

    Attributes:
      variant: 32, 16 or 8 (the output stride of the finest skip used).
      num_classes: score channels (21 for PASCAL VOC).
      pad100: the original Caffe alignment (see the module docstring).
      dropout: rate after fc6 and fc7 (``'dropout'`` rng with ``train=True``).
      fc_width: channels of fc6 and fc7 (4096 in the paper; smaller only for tests).
      dtype, param_dtype: computation and parameter dtypes.
    """

    variant: int = 8
    num_classes: int = 21
    pad100: bool = False
    dropout: float = 0.5
    fc_width: int = 4096
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``images [N, H, W, 3]`` float -> ``logits [N, H, W, num_classes]`` in ``dtype``."""
        name = f"fcn{self.variant}s"
        if self.variant not in CROPS:
            raise ValueError(f"FCN: variant must be 32, 16 or 8, got {self.variant}")
        checks.check_images(x, model=name, channels=3)
        h, w = x.shape[1:3]
        if self.pad100:
            # conv1_1's pad 100 = 99 zeros here + the conv's own pad 1.
            x = jnp.pad(x, ((0, 0), (99, 99), (99, 99), (0, 0)))
        else:
            x = jnp.pad(x, ((0, 0), (0, max(0, 32 - h)), (0, max(0, 32 - w)), (0, 0)))
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        vgg = VGG(config=CONFIGS["D"], ceil_mode=True, name="backbone", **kw)
        f = vgg.feature_maps(x, train=train, last="pool5")
        y = f["pool5"]
        for layer, k in (("fc6", 7), ("fc7", 1)):
            pad = 0 if self.pad100 or k == 1 else k // 2
            y = nn.relu(layers.conv2d(self.fc_width, k, 1, pad, name=layer, **kw)(y))
            y = nn.Dropout(self.dropout, deterministic=not train)(y)

        def score(z: jax.Array, layer: str) -> jax.Array:
            return layers.conv2d(self.num_classes, 1, kernel_init=nn.initializers.zeros,
                                 name=layer, **kw)(z)

        def up(z: jax.Array, f_: int, layer: str) -> jax.Array:
            return ConvTranspose2d(self.num_classes, 2 * f_, f_, 0 if self.pad100 else f_ // 2,
                                   use_bias=False, kernel_init=bilinear_transpose_init,
                                   name=layer, **kw)(z)

        def fuse(upsampled: jax.Array, skip: jax.Array, offset: int, what: str) -> jax.Array:
            if self.pad100:  # Caffe crops the skip to the upsampled map
                return upsampled + _crop(skip, offset, upsampled.shape[1:3], what)
            return _crop(upsampled, 0, skip.shape[1:3], what) + skip

        y = score(y, "score_fr")
        off4, off3, off_out = CROPS[self.variant]
        if self.variant == 32:
            y = up(y, 32, "upscore")
        else:
            y = fuse(up(y, 2, "upscore2"), score(f["pool4"], "score_pool4"), off4,
                     "score_pool4")
            if self.variant == 16:
                y = up(y, 16, "upscore16")
            else:
                y = fuse(up(y, 2, "upscore_pool4"), score(f["pool3"], "score_pool3"), off3,
                         "score_pool3")
                y = up(y, 8, "upscore8")
        return _crop(y, off_out if self.pad100 else 0, (h, w), "the output")


def fcn_params_from_vgg16(fcn_params: dict, vgg16_params: dict) -> dict:
    """FCN params with the backbone and fc6/fc7 taken from a ``vgg16``'s params.

    ``vgg16_params``: ``params`` of :func:`jaxvision.models.vgg.vgg16` (e.g. converted from
    torchvision): ``features.*`` go to ``backbone``; ``classifier.0`` ``[25088, 4096]`` (rows
    in NHWC flatten order, ``(7, 7, 512)``) becomes ``fc6`` ``[7, 7, 512, 4096]`` and
    ``classifier.3`` becomes ``fc7`` ``[1, 1, 4096, 4096]`` (the convolutionized classifier).
    The score and upsampling layers keep their FCN init.
    """
    out = dict(fcn_params)
    out["backbone"] = {k: v for k, v in vgg16_params.items() if k.startswith("features.")}
    for src, dst, shape in (("classifier.0", "fc6", (7, 7, 512, 4096)),
                            ("classifier.3", "fc7", (1, 1, 4096, 4096))):
        kernel = vgg16_params[src]["kernel"]
        if int(np.prod(kernel.shape)) != int(np.prod(shape)):
            raise ValueError(f"fcn_params_from_vgg16: {src} kernel {kernel.shape} does not "
                             f"reshape to {dst} {shape}")
        out[dst] = {"kernel": kernel.reshape(shape), "bias": vgg16_params[src]["bias"]}
    return out


@register_model
def fcn32s(**kwargs: Any) -> FCN:
    """FCN-32s (VGG-16), 136,152,917 parameters at 21 classes (voc-fcn32s); kwargs are
    :class:`FCN` fields."""
    return FCN(variant=32, **kwargs)


@register_model
def fcn16s(**kwargs: Any) -> FCN:
    """FCN-16s (VGG-16), 134,815,994 parameters at 21 classes (voc-fcn16s); kwargs are
    :class:`FCN` fields."""
    return FCN(variant=16, **kwargs)


@register_model
def fcn8s(**kwargs: Any) -> FCN:
    """FCN-8s (VGG-16), 134,489,759 parameters at 21 classes (voc-fcn8s); kwargs are
    :class:`FCN` fields."""
    return FCN(variant=8, **kwargs)
