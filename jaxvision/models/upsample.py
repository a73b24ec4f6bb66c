"""In-network upsampling layers exact to PyTorch: transposed convolution and max-unpooling.

:class:`ConvTranspose2d` is ``torch.nn.ConvTranspose2d`` (stride, padding, output_padding,
dilation, groups) on NHWC input. Flax's ``nn.ConvTranspose`` pads differently and has no
``output_padding`` or groups (jax-ml/jax#11252, google/flax#3137), so this layer computes the
transposed convolution as torch defines it: the gradient of ``Conv2d`` with respect to its
input, i.e. a convolution of the ``stride``-dilated input with the spatially flipped kernel,
padded by ``dilation * (k - 1) - padding`` (plus ``output_padding`` at the bottom/right).

The kernel is stored as ``[kh, kw, out_channels // groups, in_channels]``: torch's weight
``[in, out // groups, kh, kw]`` transposed by ``(2, 3, 1, 0)``, the same rule that
:mod:`jaxvision.weights.convert` applies to every 4-D ``weight`` (OIHW -> HWIO), so a torch
``ConvTranspose2d`` converts with no special case.

:class:`MaxUnpool2d` is ``torch.nn.MaxUnpool2d`` over :func:`jaxvision.ops.max_unpool`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.checks import check_rank, pair
from jaxvision.ops.init import bilinear_kernel
from jaxvision.ops.unpool import max_unpool

__all__ = ["ConvTranspose2d", "MaxUnpool2d", "bilinear_transpose_init",
           "conv_transpose_output_size", "torch_conv_transpose_init"]

IntPair = int | Sequence[int]


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0, dilation: int = 1) -> int:
    """torch's ``ConvTranspose2d`` output side: ``(size - 1) * s - 2p + d (k - 1) + op + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def torch_conv_transpose_init(key: jax.Array, shape: Sequence[int],
                              dtype: Any = jnp.float32) -> jax.Array:
    """torch's default ``ConvTranspose2d`` weight init (kaiming uniform, ``a = sqrt(5)``).

    torch computes the fan-in from ``weight.size(1) * kh * kw`` = ``out // groups * kh * kw``
    for a transposed conv; ``shape`` is ``(kh, kw, out // groups, in)``, so the bound is
    ``1 / sqrt(shape[0] * shape[1] * shape[2])``.
    """
    fan_in = int(shape[0] * shape[1] * shape[2])
    bound = 1.0 / np.sqrt(fan_in)
    return jax.random.uniform(key, tuple(shape), dtype, -bound, bound)


def bilinear_transpose_init(key: jax.Array, shape: Sequence[int],
                            dtype: Any = jnp.float32) -> jax.Array:
    """FCN's bilinear upsampling (:func:`jaxvision.ops.bilinear_kernel`) for this layout.

    ``shape`` ``(k, k, out // groups, in)``; channel ``i`` upsamples channel ``i``. The tent
    is symmetric, so the spatial flip of the transposed convolution does not change it.
    """
    del key
    if len(shape) != 4 or shape[0] != shape[1]:
        raise ValueError(f"bilinear_transpose_init: expected a square (k, k, out, in) kernel "
                         f"shape, got {tuple(shape)}")
    return bilinear_kernel(int(shape[0]), int(shape[2]), int(shape[3]), dtype)


class ConvTranspose2d(nn.Module):
    """``torch.nn.ConvTranspose2d`` on NHWC: ``[N, H, W, in] -> [N, H', W', features]``.

    ``H' = (H - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.

    Attributes:
      features: output channels (torch's ``out_channels``).
      kernel_size, stride, padding, output_padding, dilation, groups: torch's arguments;
        ``output_padding`` must be smaller than ``stride`` or ``dilation`` (torch's rule).
      use_bias: add ``params/bias [features]``.
      kernel_init: for ``params/kernel [kh, kw, features // groups, in]`` (torch's default,
        or :func:`bilinear_transpose_init` for FCN).
      bias_init: torch's default bias is uniform in ``+-1/sqrt(fan_in)``; zeros here unless
        given, since every use in the zoo overrides it.
    """

    features: int
    kernel_size: IntPair
    stride: IntPair = 1
    padding: IntPair = 0
    output_padding: IntPair = 0
    dilation: IntPair = 1
    groups: int = 1
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Callable = torch_conv_transpose_init
    bias_init: Callable = nn.initializers.zeros
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x: [N, H, W, in] float -> [N, H', W', features]`` in ``dtype``."""
        op = "ConvTranspose2d"
        check_rank(x, 4, "x", op, layout="[N, H, W, C] (NHWC)")
        kh, kw = pair(self.kernel_size, "kernel_size", op=op)
        sh, sw = pair(self.stride, "stride", op=op)
        ph, pw = pair(self.padding, "padding", minimum=0, op=op)
        oph, opw = pair(self.output_padding, "output_padding", minimum=0, op=op)
        dh, dw = pair(self.dilation, "dilation", op=op)
        g = self.groups
        cin = x.shape[-1]
        if cin % g or self.features % g:
            raise ValueError(f"{op}: in_channels {cin} and features {self.features} must be "
                             f"divisible by groups {g}")
        if oph >= max(sh, dh) or opw >= max(sw, dw):
            raise ValueError(f"{op}: output_padding {(oph, opw)} must be smaller than stride "
                             f"{(sh, sw)} or dilation {(dh, dw)}")
        oh = conv_transpose_output_size(x.shape[1], kh, sh, ph, oph, dh)
        ow = conv_transpose_output_size(x.shape[2], kw, sw, pw, opw, dw)
        if oh < 1 or ow < 1:
            raise ValueError(f"{op}: input {x.shape[1]}x{x.shape[2]} gives an empty output "
                             f"{oh}x{ow}")
        cout_g, cin_g = self.features // g, cin // g
        kernel = self.param("kernel", self.kernel_init, (kh, kw, cout_g, cin), self.param_dtype)
        # Per group: [kh, kw, out_g, in_g] -> HWIO [kh, kw, in_g, out_g]; outputs group-major.
        k = kernel.reshape(kh, kw, cout_g, g, cin_g).transpose(0, 1, 4, 3, 2)
        k = k.reshape(kh, kw, cin_g, g * cout_g)[::-1, ::-1]
        x, k = x.astype(self.dtype), k.astype(self.dtype)
        # Full padding d (k - 1) - p may be negative (padding > d (k - 1)): pad what is
        # positive and crop the rest afterwards.
        lo_h, lo_w = dh * (kh - 1) - ph, dw * (kw - 1) - pw
        hi_h, hi_w = lo_h + oph, lo_w + opw
        y = jax.lax.conv_general_dilated(
            x, k, window_strides=(1, 1),
            padding=((max(lo_h, 0), max(hi_h, 0)), (max(lo_w, 0), max(hi_w, 0))),
            lhs_dilation=(sh, sw), rhs_dilation=(dh, dw),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=g,
            precision=self.precision)
        top, left = max(-lo_h, 0), max(-lo_w, 0)
        y = y[:, top:top + oh, left:left + ow, :]
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y


class MaxUnpool2d(nn.Module):
    """``torch.nn.MaxUnpool2d``: ``x: [N, h, w, C]``, ``indices: [N, h, w, C]`` int (torch's
    flat ``row * W + col``) -> ``[N, H, W, C]``.

    ``output_size`` (SegNet: the pre-pooling map's ``(H, W)``) defaults, as in torch, to
    ``(h - 1) * stride - 2 * padding + kernel_size``. See :func:`jaxvision.ops.max_unpool`:
    concrete out-of-range indices raise; under ``jit`` they are dropped.
    """

    kernel_size: IntPair = 2
    stride: IntPair | None = None
    padding: IntPair = 0

    @nn.compact
    def __call__(self, x: jax.Array, indices: jax.Array,
                 output_size: Sequence[int] | None = None) -> jax.Array:
        if output_size is None:
            op = "MaxUnpool2d"
            k = pair(self.kernel_size, "kernel_size", op=op)
            s = pair(self.kernel_size if self.stride is None else self.stride, "stride", op=op)
            p = pair(self.padding, "padding", minimum=0, op=op)
            output_size = tuple((n - 1) * si - 2 * pi + ki
                                for n, ki, si, pi in zip(x.shape[1:3], k, s, p, strict=True))
        return max_unpool(x, indices, output_size)
