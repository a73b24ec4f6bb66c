"""RoIPool (Girshick, "Fast R-CNN", ICCV 2015), exact to ``torchvision.ops.roi_pool``.

Semantics (torchvision ``csrc/ops/cpu/roi_pool_kernel.cpp``): RoI corners are scaled by
``spatial_scale`` (a product in the features' dtype; float32 for half precision) and rounded
half away from zero (C ``round``; not ``jnp.round``, which rounds half to even); ``roi_h =
max(y2 - y1 + 1, 1)``, ``bin_h = roi_h / oh``; bin ``p`` covers rows ``[floor(p * bin_h),
ceil((p + 1) * bin_h)) + y1`` clipped to ``[0, H]`` (columns alike). A bin's value is the max
of its elements; only values ``> -FLT_MAX`` count (NaN and -inf are skipped), an empty bin is
0 and a bin with nothing that counts is ``-FLT_MAX`` (float32's, whatever the dtype).
The gradient goes to the first maximum in row-major order (torch's ``argmax``), none from
empty bins.

How it is computed here, with static shapes: the RoIs share :mod:`jaxvision.ops.roi_align`'s
size-bucketed loop (sorted by footprint, chunks run the ``lax.switch`` branch of their largest
window), so work is proportional to the RoI's footprint. Inside a window the max is taken
separably: each output row ``p`` gathers the ``B_h`` rows a bin can span (``B_h =
ceil(win_h / oh) + 1``, enough for every bin of a RoI inside its window; RoIs whose bins are
longer -- only possible for RoIs reaching past the map -- are bucketed up to the whole-map
branch, where ``B_h = H``), reduces them, then does the same for columns. Row-major
tie-breaking is kept by carrying the winning row index into the column stage. The argmax is
computed without gradient and the value is re-read from the window, so autodiff's gather
transpose is torch's scatter-add to the argmax.

Differences from torch: an out-of-range batch index is clipped; coordinates beyond
``+-2**30`` (after scaling) are clipped before the integer cast (C++ would overflow).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvision.checks import check_roi_inputs, pair
from jaxvision.ops._numerics import divide, round_half_away
from jaxvision.ops.roi_align import (
    bucketed_map,
    crop_windows,
    window_ladder,
)

__all__ = ["RoIPool", "roi_pool"]

_FLT_MAX = float(np.finfo(np.float32).max)


def _bin_bounds(start: jax.Array, roi: jax.Array, pooled: int, size: int, dtype: Any
                ) -> tuple[jax.Array, jax.Array]:
    """``[k, pooled]`` int32 clipped ``[lo, hi)`` of every bin along one axis (``dtype``:
    the kernel's scalar type)."""
    bin_size = divide(roi.astype(dtype), pooled)
    p = jnp.arange(pooled, dtype=dtype)
    lo = jnp.floor(p[None] * bin_size[:, None]).astype(jnp.int32) + start[:, None]
    hi = jnp.ceil((p[None] + 1) * bin_size[:, None]).astype(jnp.int32) + start[:, None]
    return jnp.clip(lo, 0, size), jnp.clip(hi, 0, size)


def _span_cap(win: int, pooled: int, size: int) -> int:
    """Rows gathered per bin by the branch of window ``win`` (``size``: the whole-map one)."""
    return win if win == size else min(win, -(-win // pooled) + 1)


def _gather_bins(x: jax.Array, lo: jax.Array, hi: jax.Array, origin: jax.Array, span: int,
                 axis: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Gathers ``span`` entries from ``lo`` along ``axis`` of ``x`` for every bin.

    ``x: [k, ..., win, ...]``, ``lo, hi: [k, P]`` absolute bounds, ``origin: [k]`` absolute
    index of the window's first entry. Returns the gathered ``[k, ..., P, span, ...]`` (the
    axis replaced by ``P, span``), the in-bin mask ``[k, P, span]`` and the window-relative
    index ``[k, P, span]`` of each gathered entry.
    """
    win = x.shape[axis]
    j = jnp.arange(span, dtype=jnp.int32)
    absolute = lo[..., None] + j  # [k, P, span]
    inside = absolute < hi[..., None]
    rel = jnp.clip(absolute - origin[:, None, None], 0, win - 1)
    k, pooled = lo.shape
    flat = rel.reshape(k, pooled * span)
    shape = [k] + [1] * (x.ndim - 1)
    shape[axis] = pooled * span
    taken = jnp.take_along_axis(x, flat.reshape(shape), axis=axis)
    out_shape = list(x.shape)
    out_shape[axis:axis + 1] = [pooled, span]
    return taken.reshape(out_shape), inside, rel


def roi_pool(
    features: jax.Array,
    rois: jax.Array,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    *,
    roi_chunk: int = 8,
) -> jax.Array:
    """``torchvision.ops.roi_pool`` on NHWC features.

    Args:
      features: ``[N, H, W, C]`` floating.
      rois: ``[K, 5]`` floating, rows ``(batch_index, x1, y1, x2, y2)`` in image coordinates.
      output_size: ``(oh, ow)`` or an int.
      spatial_scale: feature-map size / image size (``1/16`` for a stride-16 map).
      roi_chunk: RoIs per chunk of the size-bucketed loop (speed only, never results);
        small chunks waste little on a chunk's largest RoI (8 was fastest on CPU).

    Returns:
      ``[K, oh, ow, C]`` in ``features.dtype``: the max of each bin, 0 for empty bins.
    """
    op = "roi_pool"
    check_roi_inputs(features, rois, op)
    oh, ow = pair(output_size, "output_size", op=op)
    n, h, w, c = features.shape
    k = rois.shape[0]
    if k == 0:
        return jnp.zeros((0, oh, ow, c), features.dtype)
    # torch's kernel computes in the features' scalar type T (float32 or float64; half
    # precision here in float32) and casts spatial_scale to T before the product.
    cdt = jnp.promote_types(features.dtype, jnp.float32)
    r = lax.stop_gradient(rois).astype(cdt)
    scale = jnp.asarray(spatial_scale, cdt)
    batch = jnp.clip(r[:, 0].astype(jnp.int32), 0, n - 1)
    corners = jnp.clip(round_half_away(r[:, 1:] * scale), -(2.0**30), 2.0**30).astype(jnp.int32)
    x1, y1, x2, y2 = (corners[:, i] for i in range(4))
    roi_w = jnp.maximum(x2 - x1 + 1, 1)
    roi_h = jnp.maximum(y2 - y1 + 1, 1)
    hs, he = _bin_bounds(y1, roi_h, oh, h, cdt)
    ws, we = _bin_bounds(x1, roi_w, ow, w, cdt)

    # Footprint (rows/cols any bin touches) and longest bin, which pick the branch.
    def extent(lo: jax.Array, hi: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        nonempty = hi > lo
        first = jnp.min(jnp.where(nonempty, lo, 2**30), axis=1)
        last = jnp.max(jnp.where(nonempty, hi, -1), axis=1)
        any_ = jnp.any(nonempty, axis=1)
        first = jnp.where(any_, first, 0)
        span = jnp.where(any_, last - first, 1)
        longest = jnp.max(jnp.where(nonempty, hi - lo, 1), axis=1)
        return first, span, longest

    lo_h, ext_h, long_h = extent(hs, he)
    lo_w, ext_w, long_w = extent(ws, we)

    ladder = window_ladder(h, w)
    win_h = jnp.asarray([a for a, _ in ladder], jnp.int32)
    win_w = jnp.asarray([b for _, b in ladder], jnp.int32)
    cap_h = jnp.asarray([_span_cap(a, oh, h) for a, _ in ladder], jnp.int32)
    cap_w = jnp.asarray([_span_cap(b, ow, w) for _, b in ladder], jnp.int32)
    fits = ((ext_h[:, None] <= win_h) & (ext_w[:, None] <= win_w)
            & (long_h[:, None] <= cap_h) & (long_w[:, None] <= cap_w))
    bucket = jnp.argmax(fits, axis=1).astype(jnp.int32)  # the whole-map branch always fits

    def branch(win: tuple[int, int], feats: jax.Array, argmax: bool
               ) -> Callable[[Any], jax.Array]:
        span_h, span_w = _span_cap(win[0], oh, h), _span_cap(win[1], ow, w)

        def run(a: dict[str, jax.Array]) -> jax.Array:
            y0 = jnp.clip(a["lo_h"], 0, h - win[0])
            x0 = jnp.clip(a["lo_w"], 0, w - win[1])
            crop = crop_windows(feats, a["batch"], y0, x0, win)  # [k, wh, ww, C]
            kk = crop.shape[0]
            # Rows: [k, oh, span_h, ww, C]; values that do not count are -inf.
            vals, in_h, rel_h = _gather_bins(crop, a["hs"], a["he"], y0, span_h, axis=1)
            keyed = jnp.where(in_h[..., None, None] & (vals > -_FLT_MAX), vals, -jnp.inf)
            row_max = jnp.max(keyed, axis=2)  # [k, oh, ww, C]
            # Columns: [k, oh, ow, span_w, C].
            cols, in_w, rel_w = _gather_bins(row_max, a["ws"], a["we"], x0, span_w, axis=2)
            keyed2 = jnp.where(in_w[:, None, :, :, None], cols, -jnp.inf)
            best = jnp.max(keyed2, axis=3)
            found = best > -jnp.inf
            empty = ((a["he"] <= a["hs"])[:, :, None] | (a["we"] <= a["ws"])[:, None, :])
            fill = jnp.where(empty, 0.0, -_FLT_MAX).astype(feats.dtype)[..., None]
            if not argmax:
                return jnp.where(found, best, fill)
            # Row-major first maximum: smallest row, then smallest column, among ties; the
            # value is re-read there so that the gradient is torch's.
            row_best = jnp.argmax(keyed, axis=2)  # first max = smallest row
            row_idx = jnp.take_along_axis(rel_h[:, :, :, None, None],
                                          row_best[:, :, None], axis=2)[:, :, 0]
            rows_of, _, _ = _gather_bins(row_idx, a["ws"], a["we"], x0, span_w, axis=2)
            flat = rows_of * win[1] + rel_w[:, None, :, :, None]
            tie = keyed2 == best[:, :, :, None]
            pick = jnp.min(jnp.where(tie, flat, win[0] * win[1]), axis=3)
            pick = jnp.where(found, pick, 0)
            value = jnp.take_along_axis(crop.reshape(kk, win[0] * win[1], c),
                                        pick.reshape(kk, oh * ow, c), axis=1)
            return jnp.where(found, value.reshape(kk, oh, ow, c), fill)

        return run

    def pooled(feats: jax.Array, a: dict[str, jax.Array], argmax: bool) -> jax.Array:
        branches = [branch(win, feats, argmax) for win in ladder]
        return bucketed_map(branches, a["bucket"], a, roi_chunk)

    # The forward pass needs only maxima; the backward recomputes torch's argmax (a costlier
    # reduction) and differentiates a gather at it.
    @jax.custom_vjp
    def pool(feats: jax.Array, a: dict[str, jax.Array]) -> jax.Array:
        return pooled(feats, a, False)

    def pool_fwd(feats: jax.Array, a: dict[str, jax.Array]):
        return pooled(feats, a, False), (feats, a)

    def pool_bwd(res, g):
        feats, a = res
        _, vjp = jax.vjp(lambda f: pooled(f, a, True), feats)
        return vjp(g)[0], None

    pool.defvjp(pool_fwd, pool_bwd)
    args = dict(batch=batch, hs=hs, he=he, ws=ws, we=we, lo_h=lo_h, lo_w=lo_w, bucket=bucket)
    return pool(features, args)


class RoIPool:
    """Thin callable form of :func:`roi_pool` (mirrors ``torchvision.ops.RoIPool``)."""

    def __init__(self, output_size: int | Sequence[int], spatial_scale: float) -> None:
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def __call__(self, features: jax.Array, rois: jax.Array) -> jax.Array:
        """``features: [N, H, W, C]``, ``rois: [K, 5]`` -> ``[K, oh, ow, C]``."""
        return roi_pool(features, rois, self.output_size, self.spatial_scale)

    def __repr__(self) -> str:
        return f"RoIPool(output_size={self.output_size}, spatial_scale={self.spatial_scale})"
