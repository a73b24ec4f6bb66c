"""Max pooling with argmax and the unpooling layers of decoder networks.

* :func:`max_pool_with_argmax` / :func:`max_unpool`: SegNet's pooling indices
  (Badrinarayanan et al., "SegNet", TPAMI 2017), exact to ``torch.nn.functional.max_pool2d(...,
  return_indices=True)`` and ``max_unpool2d``. Indices are torch's: per image and channel, the
  flat position ``row * W + col`` in the (unpadded) input map.
* :func:`unpool_nearest` (each value copied to its ``f x f`` block, ``F.interpolate(...,
  mode="nearest")`` with an integer factor) and :func:`unpool_bed_of_nails` (each value at the
  top-left corner of its block, zeros elsewhere; Zeiler & Fergus, ECCV 2014 "switches" with a
  fixed switch).

All functions take and return NHWC arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.checks import check_floating, check_integer, check_rank, pair

__all__ = ["max_pool_with_argmax", "max_unpool", "unpool_bed_of_nails", "unpool_nearest"]


def _pooled_size(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    # torch's pooling_output_shape (dilation 1): with ceil_mode the last window must start
    # inside the input or its left padding.
    num = size + 2 * p - k
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool_with_argmax(x: jax.Array, kernel_size: int | Sequence[int],
                         stride: int | Sequence[int] | None = None,
                         padding: int | Sequence[int] = 0,
                         ceil_mode: bool = False) -> tuple[jax.Array, jax.Array]:
    """2-D max pooling returning torch's flat argmax indices.

    Args:
      x: ``[N, H, W, C]`` floating.
      kernel_size, stride (default ``kernel_size``), padding, ceil_mode: as in
        ``torch.nn.functional.max_pool2d`` (implicit ``-inf`` padding, at most half the
        kernel).

    Returns:
      ``(values [N, oh, ow, C], indices [N, oh, ow, C] int32)``; ``indices`` is ``row * W +
      col`` of the maximum in ``x`` (first maximum in row-major window order; a NaN wins,
      the last one if several, as in torch's CPU kernel). Gradients of ``values`` go to the
      argmax.
    """
    op = "max_pool_with_argmax"
    check_rank(x, 4, "x", op, layout="[N, H, W, C] (NHWC)")
    check_floating(x, "x", op)
    kh, kw = pair(kernel_size, "kernel_size", op=op)
    sh, sw = pair(kernel_size if stride is None else stride, "stride", op=op)
    ph, pw = pair(padding, "padding", minimum=0, op=op)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{op}: padding must be at most half the kernel size, got padding "
                         f"{(ph, pw)} for kernel {(kh, kw)}")
    n, h, w, c = x.shape
    oh, ow = _pooled_size(h, kh, sh, ph, ceil_mode), _pooled_size(w, kw, sw, pw, ceil_mode)
    pad_b = max(0, (oh - 1) * sh + kh - h - ph)
    pad_r = max(0, (ow - 1) * sw + kw - w - pw)
    xp = jnp.pad(x, ((0, 0), (ph, pad_b), (pw, pad_r), (0, 0)), constant_values=-jnp.inf)
    rows = np.arange(oh)[:, None] * sh - ph  # top-left corner of each window, input coords
    cols = np.arange(ow)[None, :] * sw - pw
    taps, flat, inside = [], [], []
    for i in range(kh):
        for j in range(kw):
            taps.append(xp[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw, :])
            r, q = rows + i, cols + j
            flat.append(r * w + q)
            inside.append((r >= 0) & (r < h) & (q >= 0) & (q < w))
    v = jnp.stack(taps, axis=0)  # [T, N, oh, ow, C], T = kh * kw in row-major window order
    flat = jnp.asarray(np.stack(flat), jnp.int32)[:, None, :, :, None]
    inside = jnp.asarray(np.stack(inside))[:, None, :, :, None]
    sv = jax.lax.stop_gradient(v)
    t = v.shape[0]
    tap = jnp.arange(t, dtype=jnp.int32)[:, None, None, None, None]
    is_nan = jnp.isnan(sv) & inside
    last_nan = jnp.max(jnp.where(is_nan, tap, -1), axis=0)
    best = jnp.max(jnp.where(inside, sv, -jnp.inf), axis=0)
    first_max = jnp.min(jnp.where(inside & (sv == best), tap, t), axis=0)
    # All -inf (no strict improvement in torch): torch keeps its first in-bounds position.
    first_in = jnp.min(jnp.where(inside, tap, t), axis=0)
    pick = jnp.where(last_nan >= 0, last_nan, jnp.where(first_max < t, first_max, first_in))
    values = jnp.take_along_axis(v, pick[None], axis=0)[0]
    indices = jnp.take_along_axis(jnp.broadcast_to(flat, v.shape), pick[None], axis=0)[0]
    return values, indices


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _unpool(x: jax.Array, indices: jax.Array, size: int) -> jax.Array:
    """``[N, h, w, C]`` values scattered to ``[N, size, C]`` at flat ``indices``."""
    return _unpool_fwd(x, indices, size)[0]


def _unpool_fwd(x: jax.Array, indices: jax.Array, size: int):
    n, h, w, c = x.shape
    src = x.reshape(n, h * w, c)
    idx = indices.reshape(n, h * w, c)
    valid = (idx >= 0) & (idx < size)
    idx_c = jnp.where(valid, idx, size)  # out of range -> dropped by the scatters
    bi = jnp.arange(n)[:, None, None]
    ci = jnp.arange(c)[None, None, :]
    # torch's CPU kernel writes the inputs in order, so the last writer of a position wins.
    order = jnp.broadcast_to(jnp.arange(h * w, dtype=jnp.int32)[None, :, None], idx.shape)
    winner = jnp.full((n, size, c), -1, jnp.int32).at[bi, idx_c, ci].max(order, mode="drop")
    wins = jnp.take_along_axis(winner, jnp.clip(idx_c, 0, size - 1), axis=1) == order
    idx_w = jnp.where(wins & valid, idx_c, size)
    out = jnp.zeros((n, size, c), x.dtype).at[bi, idx_w, ci].set(src, mode="drop")
    return out, (indices, valid)


def _unpool_bwd(size: int, res, g):
    indices, valid = res
    n, h, w, c = indices.shape
    idx = indices.reshape(n, h * w, c)
    # torch's backward (max_pool_double_backward) gathers the output gradient at every
    # input's index, duplicates included.
    gx = jnp.take_along_axis(g, jnp.clip(idx, 0, size - 1), axis=1)
    gx = jnp.where(valid, gx, 0)
    return gx.reshape(n, h, w, c), None


_unpool.defvjp(_unpool_fwd, _unpool_bwd)


def max_unpool(x: jax.Array, indices: jax.Array, output_size: Sequence[int]) -> jax.Array:
    """Inverse of :func:`max_pool_with_argmax`: ``torch.nn.functional.max_unpool2d``.

    Args:
      x: ``[N, h, w, C]`` floating pooled values.
      indices: ``[N, h, w, C]`` integer flat ``row * W + col`` positions in the output map.
      output_size: static ``(H, W)`` of the unpooled map (SegNet: the pre-pooling size).

    Returns:
      ``[N, H, W, C]``: zeros except ``x`` at ``indices``; when several inputs share an index
      the last one (row-major) wins, as in torch's CPU kernel. The gradient w.r.t. ``x``
      gathers the output gradient at ``indices``, as torch defines it.

    Raises:
      ValueError: an index outside ``[0, H * W)`` when ``indices`` is concrete (torch's
        "Found an invalid max index"). Under ``jit`` (traced indices) no check can raise:
        out-of-range values are then dropped (they write nothing and get zero gradient).
    """
    op = "max_unpool"
    check_rank(x, 4, "x", op, layout="[N, h, w, C] (NHWC)")
    check_floating(x, "x", op)
    check_rank(indices, 4, "indices", op, layout="[N, h, w, C]")
    check_integer(indices, "indices", op)
    if tuple(indices.shape) != tuple(x.shape):
        raise ValueError(f"{op}: indices must have the shape of x {tuple(x.shape)}, got "
                         f"{tuple(indices.shape)}")
    big_h, big_w = pair(tuple(output_size)[-2:], "output_size", op=op)
    n, _, _, c = x.shape
    if not isinstance(indices, jax.core.Tracer) and indices.size:
        idx = np.asarray(indices)
        bad = (idx < 0) | (idx >= big_h * big_w)
        if bad.any():
            raise ValueError(f"{op}: found an invalid max index {int(idx[bad].flat[0])} "
                             f"(output volumes are of size {big_h}x{big_w}); indices must "
                             f"be in [0, {big_h * big_w})")
    out = _unpool(x, indices, big_h * big_w)
    return out.reshape(n, big_h, big_w, c)


def unpool_nearest(x: jax.Array, factor: int | Sequence[int] = 2) -> jax.Array:
    """Nearest-neighbour unpooling: ``[N, h, w, C] -> [N, h * fh, w * fw, C]``."""
    op = "unpool_nearest"
    check_rank(x, 4, "x", op, layout="[N, h, w, C] (NHWC)")
    fh, fw = pair(factor, "factor", op=op)
    return jnp.repeat(jnp.repeat(x, fh, axis=1), fw, axis=2)


def unpool_bed_of_nails(x: jax.Array, factor: int | Sequence[int] = 2) -> jax.Array:
    """"Bed of nails" unpooling: each value at the top-left of its ``fh x fw`` block.

    ``[N, h, w, C] -> [N, h * fh, w * fw, C]``, zeros elsewhere.
    """
    op = "unpool_bed_of_nails"
    check_rank(x, 4, "x", op, layout="[N, h, w, C] (NHWC)")
    fh, fw = pair(factor, "factor", op=op)
    n, h, w, c = x.shape
    out = jnp.zeros((n, h, fh, w, fw, c), x.dtype).at[:, :, 0, :, 0, :].set(x)
    return out.reshape(n, h * fh, w * fw, c)
