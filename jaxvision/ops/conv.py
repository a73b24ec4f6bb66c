"""2-D convolution whose kernel gradient XLA:CPU computes fast.

XLA:CPU lowers a convolution's kernel gradient (the "backward filter" pass) to a convolution
whose window is the whole output-gradient map, a shape its kernels handle badly: measured on
a 2-core x86 machine (batch 4, 180x240, 64 -> 64 channels, 7x7) the forward pass took
0.77 s, the input gradient 1.4 s and the kernel gradient 20.9 s, where torch (oneDNN) takes
about 3 s for all three. Written as one matrix product per kernel tap,

    dW[i, j] = sum over (n, y, x) of  x_pad[n, y*s + i*d, x*s + j*d, :]^T  g[n, y, x, :]

the kernel gradient costs what the forward pass costs. :func:`conv_general_dilated` is a
drop-in for ``jax.lax.conv_general_dilated`` (Flax's ``nn.Conv(conv_general_dilated=...)``)
with that kernel gradient: the forward pass and the input gradient stay XLA's own, so outputs
are bit-identical and kernel gradients equal up to float summation order.

The fast path is taken for 2-D NHWC/HWIO convolutions without input dilation (every conv
layer of the zoo) on the CPU backend; anything else, and every backend but CPU (GPU and TPU
convolution kernels are fast), calls ``lax.conv_general_dilated`` unchanged. ``set_lowering
("xla")`` or the environment variable ``JAXVISION_CONV_LOWERING=xla`` turns the fast path
off (read when a function is traced, so set it before ``jit``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["conv_general_dilated", "get_lowering", "set_lowering"]

_LOWERINGS = ("auto", "xla")
_lowering: str | None = None

# lax.ConvDimensionNumbers of NHWC input, HWIO kernel, NHWC output: Flax's nn.Conv in 2-D.
_NHWC = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def set_lowering(name: str | None) -> None:
    """``'auto'`` (the default): matrix-product kernel gradients on CPU; ``'xla'``: always
    ``lax.conv_general_dilated``'s own gradient; None: back to ``JAXVISION_CONV_LOWERING``.
    Affects functions traced afterwards."""
    global _lowering
    if name is not None and name not in _LOWERINGS:
        raise ValueError(f"set_lowering: name must be one of {_LOWERINGS}, got {name!r}")
    _lowering = name


def get_lowering() -> str:
    """The lowering in force: :func:`set_lowering`'s, else ``JAXVISION_CONV_LOWERING``, else
    ``'auto'``."""
    if _lowering is not None:
        return _lowering
    env = os.environ.get("JAXVISION_CONV_LOWERING", "auto").strip().lower() or "auto"
    if env not in _LOWERINGS:
        raise ValueError(f"JAXVISION_CONV_LOWERING={env!r}: expected one of {_LOWERINGS}")
    return env


def _pairs(padding: Any, in_hw: Sequence[int], window: Sequence[int],
           strides: Sequence[int]) -> tuple[tuple[int, int], ...] | None:
    if isinstance(padding, str):
        return tuple(tuple(p) for p in lax.padtype_to_pads(in_hw, window, strides, padding))
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    return pads if all(lo >= 0 and hi >= 0 for lo, hi in pads) else None


def _is_nhwc(dimension_numbers: Any, ndim: int) -> bool:
    if ndim != 4 or dimension_numbers is None:
        return False
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return dimension_numbers == _NHWC
    return tuple(dimension_numbers) == ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]],
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None) -> jax.Array:
    """``jax.lax.conv_general_dilated`` (same arguments, same result) with a fast kernel
    gradient on CPU for 2-D NHWC convolutions; see the module docstring.

    Args:
      lhs: [N, H, W, Cin] input (with NHWC ``dimension_numbers``).
      rhs: [KH, KW, Cin / feature_group_count, Cout] kernel (HWIO).
    Returns:
      [N, OH, OW, Cout], ``lax.conv_general_dilated``'s output, bit for bit.
    """
    args = dict(lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
                batch_group_count=batch_group_count, precision=precision,
                preferred_element_type=preferred_element_type)
    plain = partial(lax.conv_general_dilated, lhs, rhs, window_strides, padding, **args)
    if (get_lowering() == "xla" or jax.default_backend() != "cpu"
            or not _is_nhwc(dimension_numbers, lhs.ndim)
            or any(d != 1 for d in (lhs_dilation or (1, 1)))
            or batch_group_count != 1 or preferred_element_type is not None):
        return plain()
    dil = tuple(int(d) for d in (rhs_dilation or (1, 1)))
    strides = tuple(int(s) for s in window_strides)
    window = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dil, strict=True)]
    pads = _pairs(padding, lhs.shape[1:3], window, strides)
    if pads is None or not _matmul_wins(rhs.shape[0] * rhs.shape[1], rhs.shape[2],
                                                       feature_group_count):
        return plain()
    return _conv(lhs, rhs, strides, pads, dil, int(feature_group_count), precision)


def _matmul_wins(taps: int, group_in: int, groups: int) -> bool:
    """Where the per-tap products beat XLA:CPU's own kernel gradient, as measured (batch
    4-8, fp32, 2 cores; ``benchmarks/bench_conv.py``): grouped convolutions (ResNeXt's 3x3 in
    32 groups, 28x28x128: 24x faster), 1x1 convolutions (56x56, 256 -> 64: 6x) and large
    kernels (SegNet's 7x7 at 180x240x64: 2-4x), and dense kernels on at least 128 input
    channels (3x3: 256 -> 256 at 2x80x112, the RPN and FPN convs of a detector, 9x; 128 ->
    128 at 8x28x28, 4.4x; 512 -> 512 at 8x7x7, 1.7x). Dense 3x3 kernels on 64 channels, and
    ResNet's 7x7 stem on 3 channels, measured equal or slower, so they keep XLA's."""
    return (groups > 1 or taps == 1 or (taps >= 25 and group_in >= 16)
            or group_in >= 128)


def _xla_conv(x, w, strides, pads, dil, groups, precision):
    return lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dil,
                                    dimension_numbers=_NHWC, feature_group_count=groups,
                                    precision=precision)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv(x, w, strides, pads, dil, groups, precision):
    return _xla_conv(x, w, strides, pads, dil, groups, precision)


def _conv_fwd(x, w, strides, pads, dil, groups, precision):
    return _xla_conv(x, w, strides, pads, dil, groups, precision), (x, w)


def kernel_gradient(x: jax.Array, g: jax.Array, kernel_hw: Sequence[int],
                    strides: Sequence[int], pads: Sequence[tuple[int, int]],
                    dil: Sequence[int], groups: int, precision: Any = None) -> jax.Array:
    """The kernel gradient of a 2-D NHWC convolution as one matrix product per tap.

    Args:
      x: [N, H, W, Cin] the convolution's input.
      g: [N, OH, OW, Cout] the gradient of its output.
      kernel_hw: (KH, KW); strides, dil: (sh, sw), (dh, dw); pads: ((top, bottom), (left,
        right)), non-negative; groups: ``feature_group_count``.
    Returns:
      [KH, KW, Cin / groups, Cout] in ``g``'s dtype promoted with ``x``'s.
    """
    n, _, _, cin = x.shape
    _, oh, ow, cout = g.shape
    kh, kw = kernel_hw
    (sh, sw), (dh, dw) = strides, dil
    cig, cog = cin // groups, cout // groups
    xp = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    m = n * oh * ow

    def tap(i: int, j: int) -> jax.Array:  # [N * OH * OW, Cin], the inputs under tap (i, j)
        xs = lax.slice(xp, (0, i * dh, j * dw, 0),
                       (n, i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1, cin),
                       (1, sh, sw, 1))
        return xs.reshape(m, cin)

    taps = []
    if groups == 1:
        # [Cout, M] @ [M, Cin], both operands materialized: XLA:CPU runs a plain row-major
        # matrix product 2-4x faster than one that contracts both operands' leading axes or
        # reads a fused slice.
        gt = lax.optimization_barrier(g.reshape(m, cout).T)
        for i in range(kh):
            for j in range(kw):
                taps.append(jnp.matmul(gt, lax.optimization_barrier(tap(i, j)),
                                       precision=precision))
        return jnp.stack(taps).reshape(kh, kw, cout, cin).transpose(0, 1, 3, 2)
    gm = g.reshape(m, groups, cog)
    for i in range(kh):
        for j in range(kw):
            t = jnp.einsum("mgc,mgo->gco", tap(i, j).reshape(m, groups, cig), gm,
                           precision=precision)
            # [G, cig, cog] -> [cig, G * cog]: output channel g * cog + k belongs to group g.
            taps.append(t.transpose(1, 0, 2).reshape(cig, cout))
    return jnp.stack(taps).reshape(kh, kw, cig, cout)


def _conv_bwd(strides, pads, dil, groups, precision, res, g):
    x, w = res
    _, input_vjp = jax.vjp(lambda x_: _xla_conv(x_, w, strides, pads, dil, groups, precision),
                           x)
    (dx,) = input_vjp(g)
    dw = kernel_gradient(x, g, w.shape[:2], strides, pads, dil, groups, precision)
    return dx, dw.astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)
