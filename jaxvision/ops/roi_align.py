"""RoIAlign (He et al., "Mask R-CNN", ICCV 2017), exact to ``torchvision.ops.roi_align``.

Semantics (torchvision ``csrc/ops/cpu/roi_align_kernel.cpp``): a RoI ``(x1, y1, x2, y2)`` is
scaled by ``spatial_scale`` and shifted by ``-0.5`` when ``aligned``; without ``aligned`` its
width and height are clamped to >= 1. Each of the ``oh x ow`` bins averages a regular grid of
``gh x gw`` bilinear samples, ``gh = sampling_ratio`` or, adaptively, ``ceil(roi_h / oh)``
(per RoI). A sample outside ``[-1, H] x [-1, W]`` counts as 0; negative coordinates clamp to
0 and coordinates past ``H - 1`` read row ``H - 1``. The divisor is ``max(gh * gw, 1)``,
out-of-range samples included.

How it is computed here, with static shapes and no per-sample gathers:

* Bilinear weights factor into a row part and a column part (``w = wy * wx`` and the
  out-of-range test is a product of a row test and a column test), so a bin is
  ``sum_y sum_x Wy[ph, y] F[y, x] Wx[pw, x] / count`` with ``Wy[ph, y]`` the sum over the
  bin's row samples of their two-tap row weights. ``Wy[ph]`` is nonzero only on the rows the
  bin's samples touch (about ``bin_h + 2``), so each bin keeps a *band* of ``cap_h`` rows
  starting at its own first row, and the contraction is done in two banded stages: rows
  (``t[ph, x] = sum_j Wy[ph, j] F[r0[ph] + j, x]`` over the RoI's column window, gathered
  straight from the map) then columns (the same on ``t``). That is ``O(oh * cap_h * win_w +
  oh * ow * cap_w)`` per channel instead of a dense ``[oh, win_h] @ [win_h, win_w]`` matmul
  plus a crop, which XLA's CPU dot runs at ~10 GFLOP/s for these skinny shapes.
* The per-RoI adaptive grid is made static by bounding the samples that can touch a band:
  samples of one bin are ``bin / ceil(bin) > 0.5`` apart, so at most ``2 * cap + 3`` of them
  fall in ``[r0 - 1, r0 + cap]``; each bin evaluates ``2 * cap + 6`` consecutive samples
  starting just before the first one that can reach its band, masked by ``i < grid`` and the
  range test. This is exact for every RoI (no user bound to choose).
* A bin's rows are bounded exactly by its first and last samples (positions are monotone in
  the sample index, float op by float op), with one row of slack on each side for XLA's FMA
  contraction. RoIs are sorted by the branch they need -- the first window of a ladder (4, 6,
  8, 12, ... up to the map) holding their column footprint and whose bands
  (``ceil(win / out) + 3``) hold their longest bin; the last branch takes whole axes and fits
  every RoI (e.g. huge bins of RoIs reaching past the map) -- cut into chunks of
  ``roi_chunk`` RoIs, and each chunk runs the branch (``lax.switch``) of its largest RoI.
  Under ``vmap`` ``lax.switch`` evaluates every branch, so batching the op that way is correct
  but slower.

Gradients w.r.t. ``features`` come from autodiff of the band gathers (whose transpose is the
scatter-add of torch's backward) and of the weighted sums; none flow to ``rois`` (torch gives
none). Differences from torch: non-finite feature values inside a bin's band but outside its
samples' support propagate here (``0 * inf``); an out-of-range batch index is clipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxvision.checks import check_roi_inputs, pair
from jaxvision.ops._numerics import divide

__all__ = ["RoIAlign", "roi_align"]

_HIGHEST = lax.Precision.HIGHEST


def window_ladder(height: int, width: int) -> list[tuple[int, int]]:
    """Window sizes ``(win_h, win_w)`` tried for a ``height x width`` map, smallest first.

    4, 6, 8, 12, 16, 24, ... capped at the map size; the last one is the whole map.
    """
    out: list[tuple[int, int]] = []
    s = 4
    while True:
        w = (min(s, height), min(s, width))
        if not out or out[-1] != w:
            out.append(w)
        if w == (height, width):
            return out
        s = s * 3 // 2 if s & (s - 1) == 0 else s * 4 // 3


def bucketed_map(branches: list[Callable[[Any], jax.Array]], bucket: jax.Array, args: Any,
                 chunk: int) -> jax.Array:
    """Runs ``branches[bucket[k]]`` on RoI ``k``'s args, in sorted chunks of ``chunk`` RoIs.

    RoIs are sorted by bucket so that a chunk's largest bucket (the branch it runs, any branch
    at or above a RoI's own bucket being exact for it) wastes little. ``args`` is a pytree of
    ``[K, ...]`` arrays; each branch maps a ``[chunk, ...]`` pytree to ``[chunk, ...]``.
    Returns the outputs in the original RoI order.
    """
    k = bucket.shape[0]
    kc = max(1, min(chunk, k))
    nch = -(-k // kc)
    pad = nch * kc - k
    order = jnp.argsort(bucket, stable=True)

    def prep(a: jax.Array) -> jax.Array:
        a = a[order]
        if pad:
            # Repeat the last (largest-bucket) RoI: it cannot raise its chunk's bucket.
            a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0)
        return a.reshape(nch, kc, *a.shape[1:])

    chunks = jax.tree.map(prep, args)
    chunk_bucket = prep(bucket)[:, -1]
    if len(branches) == 1:
        out = lax.map(branches[0], chunks)
    else:
        out = lax.map(lambda xs: lax.switch(xs[0], branches, xs[1]), (chunk_bucket, chunks))
    out = out.reshape(nch * kc, *out.shape[2:])[:k]
    inverse = jnp.zeros((k,), jnp.int32).at[order].set(jnp.arange(k, dtype=jnp.int32))
    return out[inverse]


def slice_starts(*index: jax.Array | int) -> tuple[jax.Array, ...]:
    """Start indices for ``lax.dynamic_slice``, all int32.

    ``dynamic_slice`` needs one integer dtype across its starts; a Python ``0`` becomes int64
    under ``jax_enable_x64`` while the computed indices are int32, which ``vmap`` then fails
    to concatenate.
    """
    return tuple(jnp.asarray(i, jnp.int32) for i in index)


def crop_windows(features: jax.Array, batch: jax.Array, y0: jax.Array, x0: jax.Array,
                 win: tuple[int, int]) -> jax.Array:
    """Crops ``features[batch[k], y0[k]:y0[k]+win_h, x0[k]:x0[k]+win_w, :]``.

    Returns ``[k, win_h, win_w, C]``.
    """
    c = features.shape[-1]

    def one(b: jax.Array, y: jax.Array, x: jax.Array) -> jax.Array:
        return lax.dynamic_slice(features, slice_starts(b, y, x, 0), (1, win[0], win[1], c))[0]

    return jax.vmap(one)(batch, y0, x0)


def _bin_rows(start: jax.Array, bin_size: jax.Array, grid: jax.Array, pooled: int, size: int
              ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Rows each bin's samples can touch along one axis (rows here; columns alike).

    ``start, bin_size: [k]`` float, ``grid: [k]`` int32. Returns ``[k, pooled]``: the first
    and last row (int32, clipped to ``[0, size - 1]``) touched by the taps of the bin's samples
    and whether the bin has any sample near the map. Sample positions are monotone in the
    sample index (each float op is), so the bin's first and last samples, computed with
    torch's float ops, bound all of them.
    """
    dt = start.dtype
    p = jnp.arange(pooled, dtype=dt)
    base = start[:, None] + p[None, :] * bin_size[:, None]  # [k, P]
    g = jnp.maximum(grid, 1).astype(dt)[:, None]
    bs = bin_size[:, None]
    y_first = base + divide(0.5 * bs, g)
    y_last = base + divide(((g - 1.0) + 0.5) * bs, g)
    lo, hi = jnp.minimum(y_first, y_last), jnp.maximum(y_first, y_last)
    # A one-row slack on the range test: a sample at exactly -1 or ``size`` counts, and XLA
    # may round a position differently (FMA contraction) where the weights recompute it.
    has = (grid[:, None] >= 1) & (hi >= -2.0) & (lo <= size + 1.0)
    first = jnp.floor(jnp.clip(lo, 0.0, size - 1.0)).astype(jnp.int32)
    last = jnp.minimum(jnp.floor(jnp.clip(hi, 0.0, size - 1.0)).astype(jnp.int32) + 1, size - 1)
    return jnp.where(has, first, 0), jnp.where(has, last, 0), has


def _footprint(first: jax.Array, last: jax.Array, has: jax.Array, size: int
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A RoI's footprint along one axis from its bins' row ranges (``[k, pooled]`` each).

    Returns ``[k]`` int32: the first row, the number of rows (both with one row of slack on
    each side, clipped to the map) and the longest band a bin needs (its rows plus the slack).
    """
    any_ = jnp.any(has, axis=1)
    lo = jnp.min(jnp.where(has, first, size), axis=1)
    hi = jnp.max(jnp.where(has, last, -1), axis=1)
    lo = jnp.where(any_, jnp.maximum(lo - 1, 0), 0)
    hi = jnp.where(any_, jnp.minimum(hi + 1, size - 1), 0)
    band = jnp.max(jnp.where(has, jnp.minimum(last - first + 3, size), 1), axis=1)
    return lo, hi - lo + 1, band


def _band_weights(start: jax.Array, bin_size: jax.Array, grid: jax.Array, pooled: int,
                  size: int, origin: jax.Array, band: int, samples: int) -> jax.Array:
    """Summed bilinear tap weights ``[k, pooled, band]`` of each bin over its band of rows.

    ``origin: [k, pooled]`` int32 is the first row of each bin's band. Mirrors torchvision's
    ``pre_calc_for_bilinear_interpolate`` for one axis, float op by float op: ``y = start + p *
    bin + ((i + .5) * bin) / grid``; out of ``[-1, size]`` -> no taps; clamp at 0; ``low =
    int(y)``, past ``size - 1`` both taps on ``size - 1``. Only ``samples`` consecutive sample
    indices are evaluated per bin, starting just before the first that can reach the band:
    adaptive samples are ``bin / ceil(bin) > 0.5`` apart, so at most ``2 * band + 3`` of them
    fall in ``[origin - 1, origin + band]`` and ``samples = 2 * band + 6`` holds them all.
    """
    dt = start.dtype
    p = jnp.arange(pooled, dtype=dt)
    base = start[:, None] + p[None, :] * bin_size[:, None]  # [k, P]
    g = grid.astype(dt)[:, None]  # [k, 1]
    bs = bin_size[:, None]
    safe_bs = jnp.where(bs > 0, bs, 1.0)
    first = jnp.floor(((origin - 1).astype(dt) - base) * g / safe_bs - 0.5) - 1
    i0 = jnp.where(grid[:, None] > samples,
                   jnp.clip(first, 0, (grid[:, None] - samples).astype(dt)), 0.0)
    i = i0[..., None] + jnp.arange(samples, dtype=dt)  # [k, P, S]
    y = base[..., None] + divide((i + 0.5) * bs[..., None], g[..., None])
    valid = (i < g[..., None]) & (y >= -1.0) & (y <= size)
    y = jnp.maximum(y, 0.0)
    low = jnp.floor(jnp.minimum(y, size)).astype(jnp.int32)
    top = low >= size - 1
    low = jnp.where(top, size - 1, low)
    high = jnp.where(top, size - 1, low + 1)
    y = jnp.where(top, low.astype(dt), y)
    ly = y - low.astype(dt)
    hy = 1.0 - ly
    zero = jnp.zeros((), dt)
    hy, ly = jnp.where(valid, hy, zero), jnp.where(valid, ly, zero)
    pos = jnp.arange(band, dtype=jnp.int32)
    rel_lo = (low - origin[..., None])[..., None]
    rel_hi = (high - origin[..., None])[..., None]
    return (hy[..., None] * (rel_lo == pos) + ly[..., None] * (rel_hi == pos)).sum(axis=2)


def _band_cap(win: int, pooled: int, size: int, whole_map: bool) -> int:
    """Band length (rows gathered per bin) of a branch: the whole axis for the last branch,
    else enough for the bins of a RoI whose footprint fits ``win`` (``win / pooled`` rows, +1
    for a bin straddling rows, +2 slack). RoIs needing more are bucketed higher."""
    return size if whole_map else min(win, -(-win // pooled) + 3)


_UNROLL = 32  # bands up to this long are summed unrolled (one fusion); longer ones in a loop


def _gather_rows(features: jax.Array, batch: jax.Array, r0: jax.Array, x0: jax.Array,
                 wy: jax.Array, width: int, acc_dtype: Any) -> jax.Array:
    """``t[k, p] = sum_j wy[k, p, j] * features[batch[k], r0[k, p] + j, x0[k]:x0[k] + width]``.

    ``batch, x0: [k]``, ``r0: [k, P]`` int32, ``wy: [k, P, band]``. Returns ``[k, P, width, C]``
    in ``acc_dtype``. Written as a sum of ``band`` gathered row slabs so that XLA fuses the
    gathers into the sum: nothing of size ``band`` x the slab is materialized (a dot or a
    ``sum`` over the band axis was 5-20x slower on CPU).
    """
    c = features.shape[-1]

    def row(j: jax.Array | int) -> jax.Array:
        def one(b: jax.Array, r: jax.Array, x: jax.Array) -> jax.Array:
            return lax.dynamic_slice(features, slice_starts(b, r + j, x, 0),
                                     (1, 1, width, c))[0, 0]

        slab = jax.vmap(jax.vmap(one, (None, 0, None)))(batch, r0, x0)  # [k, P, width, C]
        wj = lax.dynamic_index_in_dim(wy, j, axis=2, keepdims=False)
        return wj[..., None, None] * slab.astype(acc_dtype)

    band = wy.shape[2]
    if band <= _UNROLL:
        acc = row(0)
        for j in range(1, band):
            acc = acc + row(j)
        return acc
    return lax.fori_loop(1, band, lambda j, acc: acc + row(j), row(0))


def roi_align(
    features: jax.Array,
    rois: jax.Array,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    *,
    roi_chunk: int = 4,
) -> jax.Array:
    """``torchvision.ops.roi_align`` on NHWC features.

    Args:
      features: ``[N, H, W, C]`` floating.
      rois: ``[K, 5]`` floating, rows ``(batch_index, x1, y1, x2, y2)`` in image coordinates.
      output_size: ``(oh, ow)`` or an int.
      spatial_scale: feature-map size / image size (``1/16`` for a stride-16 map).
      sampling_ratio: samples per bin per axis; ``<= 0`` means adaptive ``ceil(roi / out)``.
      aligned: shift boxes by -0.5 pixel (Detectron2's ``ROIAlignV2``).
      roi_chunk: RoIs per chunk of the size-bucketed loop (speed only, never results);
        small chunks waste little on a chunk's largest RoI (4 was fastest on CPU).
    Returns:
      ``[K, oh, ow, C]`` in ``features.dtype``.
    """
    op = "roi_align"
    check_roi_inputs(features, rois, op)
    oh, ow = pair(output_size, "output_size", op=op)
    if not isinstance(sampling_ratio, int):
        raise TypeError(f"{op}: sampling_ratio must be an int, got {sampling_ratio!r}")
    n, h, w, c = features.shape
    k = rois.shape[0]
    if k == 0:
        return jnp.zeros((0, oh, ow, c), features.dtype)
    cdt = jnp.promote_types(features.dtype, jnp.float32)  # coordinates at >= float32
    r = lax.stop_gradient(rois).astype(cdt)
    scale = jnp.asarray(spatial_scale, cdt)
    offset = jnp.asarray(0.5 if aligned else 0.0, cdt)
    batch = jnp.clip(r[:, 0].astype(jnp.int32), 0, n - 1)
    sx, sy = r[:, 1] * scale - offset, r[:, 2] * scale - offset
    ex, ey = r[:, 3] * scale - offset, r[:, 4] * scale - offset
    rw, rh = ex - sx, ey - sy
    if not aligned:
        rw, rh = jnp.maximum(rw, 1.0), jnp.maximum(rh, 1.0)
    bin_h, bin_w = divide(rh, oh), divide(rw, ow)
    if sampling_ratio > 0:
        gh = jnp.full((k,), sampling_ratio, jnp.int32)
        gw = gh
    else:
        gh = jnp.clip(jnp.ceil(bin_h), -1, 2**30).astype(jnp.int32)
        gw = jnp.clip(jnp.ceil(bin_w), -1, 2**30).astype(jnp.int32)
    count = jnp.maximum(gh * gw, 1).astype(cdt)
    first_h, last_h, has_h = _bin_rows(sy, bin_h, gh, oh, h)
    first_w, last_w, has_w = _bin_rows(sx, bin_w, gw, ow, w)
    _, _, band_h = _footprint(first_h, last_h, has_h, h)
    lo_w, ext_w, band_w = _footprint(first_w, last_w, has_w, w)

    # Branch ``i`` gathers bands of ``cap_h`` rows (from the map) and ``cap_w`` columns (from
    # a ``win_w``-wide column window); the last branch takes whole axes and fits every RoI.
    ladder = window_ladder(h, w)
    last = len(ladder) - 1
    caps = [(_band_cap(a, oh, h, i == last), _band_cap(b, ow, w, i == last))
            for i, (a, b) in enumerate(ladder)]
    fits = ((ext_w[:, None] <= jnp.asarray([b for _, b in ladder], jnp.int32))
            & (band_h[:, None] <= jnp.asarray([a for a, _ in caps], jnp.int32))
            & (band_w[:, None] <= jnp.asarray([b for _, b in caps], jnp.int32)))
    fits = fits.at[:, last].set(True)
    bucket = jnp.argmax(fits, axis=1).astype(jnp.int32)

    def branch(win_w: int, cap_h: int, cap_w: int) -> Callable[[Any], jax.Array]:
        def run(a: dict[str, jax.Array]) -> jax.Array:
            x0 = jnp.clip(a["lo_w"], 0, w - win_w)  # [kc]
            # Bands start one row before the bin's first row (slack), kept inside the map
            # (rows) and inside the column window (columns).
            r0 = jnp.clip(a["first_h"] - 1, 0, h - cap_h)  # [kc, oh]
            c0 = jnp.clip(a["first_w"] - 1, x0[:, None], x0[:, None] + win_w - cap_w)
            s_h = sampling_ratio if sampling_ratio > 0 else 2 * cap_h + 6
            s_w = sampling_ratio if sampling_ratio > 0 else 2 * cap_w + 6
            wy = _band_weights(a["sy"], a["bin_h"], a["gh"], oh, h, r0, cap_h, s_h)
            wx = _band_weights(a["sx"], a["bin_w"], a["gw"], ow, w, c0, cap_w, s_w)
            wy = divide(wy, a["count"][:, None, None])
            # Rows: [kc, oh, win_w, C].
            t = _gather_rows(features, a["batch"], r0, x0, wy, win_w, cdt)

            # Columns: each output column's band of t, [kc, ow, oh, cap_w, C], then a weighted
            # reduction (a reduce, which XLA does not fuse into the gather feeding it).
            def cols(tk: jax.Array, col: jax.Array) -> jax.Array:
                return lax.dynamic_slice(tk, slice_starts(0, col, 0), (oh, cap_w, c))

            g = jax.vmap(jax.vmap(cols, (None, 0)))(t, c0 - x0[:, None])
            out = (g * wx[:, :, None, :, None]).sum(axis=3)  # [kc, ow, oh, C]
            return out.transpose(0, 2, 1, 3).astype(features.dtype)

        return run

    args = dict(batch=batch, sy=sy, sx=sx, bin_h=bin_h, bin_w=bin_w, gh=gh, gw=gw,
                count=count, first_h=first_h, first_w=first_w, lo_w=lo_w)
    branches = [branch(win[1], *cap) for win, cap in zip(ladder, caps, strict=True)]
    return bucketed_map(branches, bucket, args, roi_chunk)


class RoIAlign:
    """Thin callable form of :func:`roi_align` (mirrors ``torchvision.ops.RoIAlign``)."""

    def __init__(self, output_size: int | Sequence[int], spatial_scale: float,
                 sampling_ratio: int, aligned: bool = False) -> None:
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def __call__(self, features: jax.Array, rois: jax.Array) -> jax.Array:
        """``features: [N, H, W, C]``, ``rois: [K, 5]`` -> ``[K, oh, ow, C]``."""
        return roi_align(features, rois, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned)

    def __repr__(self) -> str:
        return (f"RoIAlign(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned})")
