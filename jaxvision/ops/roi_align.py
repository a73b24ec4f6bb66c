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
  ``Wy[ph] @ F @ Wx[pw]^T / count`` with ``Wy: [oh, H]`` the sum over the bin's row samples of
  their two-tap row weights. Two small matmuls replace ``4 * gh * gw`` gathers per bin.
* The per-RoI adaptive grid is made static by bounding the samples that can touch a window:
  samples of one bin are ``bin / ceil(bin) > 0.5`` apart, so at most ``2 * win + 3`` of them
  fall in ``[origin - 1, origin + win]``; each bin evaluates ``2 * win + 6`` consecutive
  samples starting just before the first one that can reach the window, masked by
  ``i < grid`` and the range test. This is exact for every RoI (no user bound to choose) and
  costs only weight construction, ``O(oh * win^2)`` per RoI, small next to the matmuls.
* Work is proportional to the RoI's footprint, not the map: RoIs are sorted by the window
  size their samples need (a ladder of window sizes up to the full map), cut into chunks of
  ``roi_chunk`` RoIs, and each chunk runs the branch (``lax.switch``) of its largest window:
  crop ``[chunk, win_h, win_w, C]`` from the feature map, then two einsums. Under ``vmap``
  ``lax.switch`` evaluates every branch, so batching the op that way is correct but slower.

Gradients w.r.t. ``features`` come from autodiff of the crop (a gather, whose transpose is the
scatter-add of torch's backward) and of the einsums; none flow to ``rois`` (torch gives none).
Differences from torch: non-finite feature values inside a RoI's window but outside its
samples' support propagate here (``0 * inf``); an out-of-range batch index is clipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxvision.ops._checks import check_floating, check_rank
from jaxvision.ops._numerics import divide

__all__ = ["RoIAlign", "roi_align"]

_HIGHEST = lax.Precision.HIGHEST


def _pair(v: int | Sequence[int], name: str, op: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, int) and i > 0 for i in t):
        raise ValueError(f"{op}: {name} must be a positive int or a pair of positive ints, "
                         f"got {v!r}")
    return t  # type: ignore[return-value]


def check_roi_inputs(features: Any, rois: Any, op: str) -> None:
    """Validates ``features: [N, H, W, C]`` floating and ``rois: [K, 5]`` floating."""
    check_rank(features, 4, "features", op, layout="[N, H, W, C] (NHWC)")
    check_floating(features, "features", op)
    check_rank(rois, 2, "rois", op, layout="[K, 5] (batch_index, x1, y1, x2, y2)")
    if rois.shape[-1] == 4:
        raise ValueError(
            f"{op}: rois must be [K, 5] (batch_index, x1, y1, x2, y2), got shape "
            f"{tuple(rois.shape)}: prepend the batch index column, e.g. "
            f"jnp.concatenate([jnp.zeros((K, 1)), boxes], axis=1) for a single image")
    if rois.shape[-1] != 5:
        raise ValueError(f"{op}: rois must be [K, 5] (batch_index, x1, y1, x2, y2), got shape "
                         f"{tuple(rois.shape)}")
    check_floating(rois, "rois", op)


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


def bucket_of(extent_h: jax.Array, extent_w: jax.Array,
              ladder: list[tuple[int, int]]) -> jax.Array:
    """Index of the first window in ``ladder`` holding an ``extent_h x extent_w`` footprint."""
    hs = jnp.asarray([h for h, _ in ladder], jnp.int32)
    ws = jnp.asarray([w for _, w in ladder], jnp.int32)
    fits = (extent_h[:, None] <= hs[None]) & (extent_w[:, None] <= ws[None])
    return jnp.argmax(fits, axis=1).astype(jnp.int32)


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


def crop_windows(features: jax.Array, batch: jax.Array, y0: jax.Array, x0: jax.Array,
                 win: tuple[int, int]) -> jax.Array:
    """Crops ``features[batch[k], y0[k]:y0[k]+win_h, x0[k]:x0[k]+win_w, :]``.

    Returns ``[k, win_h, win_w, C]``.
    """
    c = features.shape[-1]

    def one(b: jax.Array, y: jax.Array, x: jax.Array) -> jax.Array:
        return lax.dynamic_slice(features, (b, y, x, 0), (1, win[0], win[1], c))[0]

    return jax.vmap(one)(batch, y0, x0)


def _sample_extent(start: jax.Array, bin_size: jax.Array, grid: jax.Array, pooled: int,
                   size: int) -> tuple[jax.Array, jax.Array]:
    """Conservative first row and number of rows any in-range sample of a RoI can touch."""
    g = jnp.maximum(grid, 1).astype(start.dtype)
    first = start + (0.5 * bin_size) / g
    last = start + (pooled - 1) * bin_size + ((g - 0.5) * bin_size) / g
    lo, hi = jnp.minimum(first, last), jnp.maximum(first, last)
    hit = (grid >= 1) & (hi >= -1.0) & (lo <= size)
    lo_row = jnp.clip(jnp.floor(jnp.clip(lo, 0.0, size)) - 1, 0, size - 1).astype(jnp.int32)
    hi_row = jnp.clip(jnp.floor(jnp.clip(hi, 0.0, size)) + 2, 0, size - 1).astype(jnp.int32)
    return jnp.where(hit, lo_row, 0), jnp.where(hit, hi_row - lo_row + 1, 1)


def _axis_weights(start: jax.Array, bin_size: jax.Array, grid: jax.Array, pooled: int,
                  size: int, origin: jax.Array, win: int, samples: int) -> jax.Array:
    """Summed bilinear tap weights ``[k, pooled, win]`` of each bin over window rows.

    Mirrors torchvision's ``pre_calc_for_bilinear_interpolate`` for one axis, float op by
    float op: ``y = start + p * bin + ((i + .5) * bin) / grid``; out of ``[-1, size]`` -> no
    taps; clamp at 0; ``low = int(y)``, past ``size - 1`` both taps on ``size - 1``.
    """
    dt = start.dtype
    p = jnp.arange(pooled, dtype=dt)
    base = start[:, None] + p[None, :] * bin_size[:, None]  # [k, P]
    g = grid.astype(dt)[:, None]  # [k, 1]
    bs = bin_size[:, None]
    # First sample index that can reach the window (y >= origin - 1), less 1 for rounding.
    safe_bs = jnp.where(bs > 0, bs, 1.0)
    first = jnp.floor(((origin[:, None] - 1).astype(dt) - base) * g / safe_bs - 0.5) - 1
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
    pos = jnp.arange(win, dtype=jnp.int32)
    rel_lo = (low - origin[:, None, None])[..., None]
    rel_hi = (high - origin[:, None, None])[..., None]
    w = (hy[..., None] * (rel_lo == pos) + ly[..., None] * (rel_hi == pos)).sum(axis=2)
    return w


def roi_align(
    features: jax.Array,
    rois: jax.Array,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    *,
    roi_chunk: int = 8,
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
        small chunks waste little on a chunk's largest RoI (8 was fastest on CPU).
    Returns:
      ``[K, oh, ow, C]`` in ``features.dtype``.
    """
    op = "roi_align"
    check_roi_inputs(features, rois, op)
    oh, ow = _pair(output_size, "output_size", op)
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
    lo_h, ext_h = _sample_extent(sy, bin_h, gh, oh, h)
    lo_w, ext_w = _sample_extent(sx, bin_w, gw, ow, w)

    ladder = window_ladder(h, w)
    bucket = bucket_of(ext_h, ext_w, ladder)

    def branch(win: tuple[int, int]) -> Callable[[Any], jax.Array]:
        def run(a: dict[str, jax.Array]) -> jax.Array:
            y0 = jnp.clip(a["lo_h"], 0, h - win[0])
            x0 = jnp.clip(a["lo_w"], 0, w - win[1])
            s_h = sampling_ratio if sampling_ratio > 0 else 2 * win[0] + 6
            s_w = sampling_ratio if sampling_ratio > 0 else 2 * win[1] + 6
            wy = _axis_weights(a["sy"], a["bin_h"], a["gh"], oh, h, y0, win[0], s_h)
            wx = _axis_weights(a["sx"], a["bin_w"], a["gw"], ow, w, x0, win[1], s_w)
            crop = crop_windows(features, a["batch"], y0, x0, win)
            wy = divide(wy, a["count"][:, None, None]).astype(features.dtype)
            t = jnp.einsum("kph,khwc->kpwc", wy, crop, precision=_HIGHEST)
            return jnp.einsum("kqw,kpwc->kpqc", wx.astype(features.dtype), t,
                              precision=_HIGHEST)

        return run

    args = dict(batch=batch, sy=sy, sx=sx, bin_h=bin_h, bin_w=bin_w, gh=gh, gw=gw,
                count=count, lo_h=lo_h, lo_w=lo_w)
    return bucketed_map([branch(win) for win in ladder], bucket, args, roi_chunk)


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
