"""Feature Pyramid Network, exact to torchvision's ``torchvision.ops.FeaturePyramidNetwork``.

Lin, Dollar, Girshick, He, Hariharan, Belongie, "Feature Pyramid Networks for Object
Detection", CVPR 2017 (arXiv:1612.03144). Each backbone map gets a 1x1 lateral conv
(``inner_blocks.{i}.0``) to ``out_channels``; from the coarsest level down, the running top-down
map is upsampled (nearest, to the lateral's exact size, torch's ``F.interpolate`` index rule)
and added to the lateral; a 3x3 conv (``layer_blocks.{i}.0``) smooths each sum. Extra blocks
add coarser levels (:class:`LastLevelMaxPool`: ``"pool"``, the coarsest output subsampled by
2, as in Faster/Mask R-CNN). Module names are torchvision's, so its ``state_dict`` converts
with :func:`jaxvision.weights.convert.torch_to_flax` (``fpn.inner_blocks.0.0.weight``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.models import layers

Dtype = Any

# torchvision's FPN init: kaiming_uniform_(a=1), i.e. U(-sqrt(3 / fan_in), sqrt(3 / fan_in)),
# and zero biases.
fpn_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output cell, as ATen's ``nearest_idx`` (CPU) computes it."""
    if out_size == in_size:
        return np.arange(out_size)
    if out_size == 2 * in_size:
        return np.arange(out_size) >> 1
    # float32 arithmetic throughout, as ATen's kernel (scale = (float)in / out).
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def upsample_nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``F.interpolate(x, size=size, mode="nearest")`` on NHWC input, index for index.

    Args:
      x: ``[N, h, w, C]``.
      size: static output ``(H, W)`` (any, not only integer multiples).
    Returns:
      ``[N, H, W, C]``, output row ``i`` copies input row ``floor(i * (h / H))`` (float32
      arithmetic, clamped to ``h - 1``), likewise for columns.
    """
    h_idx = _nearest_indices(x.shape[1], int(size[0]))
    w_idx = _nearest_indices(x.shape[2], int(size[1]))
    return jnp.take(jnp.take(x, h_idx, axis=1), w_idx, axis=2)


class LastLevelMaxPool(nn.Module):
    """torchvision's ``LastLevelMaxPool``: adds ``"pool"``, the last FPN level subsampled.

    ``max_pool2d(kernel_size=1, stride=2)`` of the coarsest output: ``[N, h, w, C] ->
    [N, ceil(h / 2), ceil(w / 2), C]``. No parameters.
    """

    def __call__(self, results: list[jax.Array], inputs: list[jax.Array],
                 names: list[str]) -> tuple[list[jax.Array], list[str]]:
        """``(fpn outputs, backbone inputs, names) -> (outputs + [pool], names + ["pool"])``."""
        del inputs  # torchvision's ExtraFPNBlock interface; P6/P7 blocks read the inputs
        return [*results, results[-1][:, ::2, ::2, :]], [*names, "pool"]


def _conv_bn(features: int, kernel_size: int, stride: int = 1, padding: int = 0, *,
             conv: Any, norm: Any, name: str) -> Any:
    """torchvision's ``Conv2dNormActivation(..., activation_layer=None)``: conv ``.0`` then
    norm ``.1`` (``name`` is the conv's ``...{i}.0``)."""
    c = conv(features, kernel_size, stride, padding, name=name)
    n = norm(name=name[:-1] + "1")
    return lambda x: n(c(x))


class FeaturePyramidNetwork(nn.Module):
    """torchvision's ``FeaturePyramidNetwork`` (``norm_layer`` None, or BatchNorm2d: batch_norm).

    Attributes:
      out_channels: channels of every output level (256 in the R-CNNs).
      extra_blocks: a module ``(results, inputs, names) -> (results, names)`` adding levels,
        e.g. :class:`LastLevelMaxPool`; None adds none (torchvision's default here).
      dtype: computation dtype; param_dtype: parameter dtype.

    ``__call__(features)`` takes ``{name: [N, h_i, w_i, C_i]}`` ordered from the finest
    level to the coarsest (the order of a backbone's ``feature_maps``; note that ``jax.jit``
    returns dicts with sorted keys, so name levels so that they sort in that order, as
    torchvision's ``"0"``, ``"1"``, ... do) and returns ``{name: [N, h_i, w_i,
    out_channels]}`` in the same order, plus the extra blocks' levels (``"pool"``). The input
    channel counts are read from the maps.
    """

    out_channels: int
    extra_blocks: nn.Module | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    # torchvision's norm_layer=BatchNorm2d (fasterrcnn_resnet50_fpn_v2): each conv without
    # bias, then a BatchNorm named ``{inner,layer}_blocks.{i}.1``.
    batch_norm: bool = False

    @nn.compact
    def __call__(self, features: Mapping[str, jax.Array],
                 train: bool = False) -> dict[str, jax.Array]:
        names, maps = list(features), list(features.values())
        if not maps:
            raise ValueError("FeaturePyramidNetwork needs at least one feature map, got none")
        for a, b, x, y in zip(names, names[1:], maps, maps[1:], strict=False):
            if x.ndim != 4 or y.ndim != 4 or y.shape[1] > x.shape[1] or y.shape[2] > x.shape[2]:
                raise ValueError(
                    "FeaturePyramidNetwork expects [N, h, w, C] maps ordered from the finest "
                    f"to the coarsest level, got {a!r} {tuple(x.shape)} before {b!r} "
                    f"{tuple(y.shape)}")
        conv = functools.partial(layers.conv2d, dtype=self.dtype, param_dtype=self.param_dtype,
                                 kernel_init=fpn_kernel_init)
        if self.batch_norm:
            conv = functools.partial(_conv_bn, conv=functools.partial(conv, use_bias=False),
                                     norm=functools.partial(
                                         layers.BatchNorm, use_running_average=not train,
                                         dtype=self.dtype, param_dtype=self.param_dtype))
        inner = [conv(self.out_channels, 1, name=f"inner_blocks.{i}.0") for i in range(len(maps))]
        layer = [conv(self.out_channels, 3, 1, 1, name=f"layer_blocks.{i}.0")
                 for i in range(len(maps))]
        maps = [jnp.asarray(x, self.dtype) for x in maps]
        last_inner = inner[-1](maps[-1])
        results = [layer[-1](last_inner)]
        for i in range(len(maps) - 2, -1, -1):
            lateral = inner[i](maps[i])
            last_inner = lateral + upsample_nearest(last_inner, lateral.shape[1:3])
            results.insert(0, layer[i](last_inner))
        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, maps, names)
        return dict(zip(names, results, strict=True))


__all__ = ["FeaturePyramidNetwork", "LastLevelMaxPool", "fpn_kernel_init", "upsample_nearest"]
