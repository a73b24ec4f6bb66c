"""Greedy non-maximum suppression with static shapes, exact to ``torchvision.ops.nms``.

Semantics (torchvision's CPU kernel, ``csrc/ops/cpu/nms_kernel.cpp``): boxes are visited in
order of decreasing score (a stable sort, so equal scores keep their input order, which is
what torch's CPU sort does); a box is kept unless a previously kept box overlaps it with
``inter / (area_kept + area_box - inter) > iou_threshold`` (strictly greater, float32
arithmetic, threshold compared as a double). Boxes with zero area never suppress nor get
suppressed (their IoU is 0/0 = NaN, which is not greater than anything); inverted boxes
have negative areas and take part with exactly torchvision's arithmetic.

Algorithm (the tiled scheme of TensorFlow's ``non_max_suppression_padded`` and the MLPerf
SSD reference, made output-sensitive): boxes are sorted and cut into tiles of ``tile_size``.
A ``lax.while_loop`` walks the tiles; each tile is first suppressed by the boxes kept so far
(compared chunk by chunk, only as many chunks as there are kept boxes), then resolved
internally by iterating ``alive = alive0 & ~any(M & alive[:, None], 0)`` on the tile's
strictly upper-triangular overlap matrix ``M`` to its fixed point (unique, equal to the
greedy answer because ``M`` is triangular), then its survivors are appended to the kept
buffer. Work is ~``N * kept`` IoUs, like the sequential kernel, but in dense blocks; the loop
stops as soon as ``max_output_size`` boxes are kept.

Static shapes: results are ``(indices [max_output_size] int32 padded with -1, count int32)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvision.checks import (
    check_boxes,
    check_floating,
    check_integer,
    check_rank,
    check_same_length,
)
from jaxvision.ops._numerics import upcast

__all__ = ["batched_nms", "nms"]

Array = jax.Array
DEFAULT_TILE_SIZE = 128
DEFAULT_CHUNK_SIZE = 512


def _threshold(iou_threshold: float | Array, dtype: jnp.dtype) -> Array:
    """Threshold ``t_c`` and compare dtype with ``x > t_c  <=>  x > iou_threshold``.

    torchvision compares the IoU (in the boxes' dtype) against the double threshold. IoUs of
    float32 and narrower boxes are compared in float32 against the largest float32 not above
    the double, which gives the same answer for every float32 IoU (no float32 lies strictly
    between the two); float64 IoUs (with ``jax_enable_x64``) against the double itself.
    """
    cmp_dtype = jnp.float64 if dtype == jnp.float64 else jnp.float32
    if isinstance(iou_threshold, (int, float, np.floating, np.integer)):
        t = float(iou_threshold)
        if math.isnan(t):
            raise ValueError("nms: iou_threshold must be a number, got nan")
        if cmp_dtype == jnp.float64:
            return jnp.asarray(t, cmp_dtype)
        t32 = np.float32(t)
        if float(t32) > t:
            t32 = np.nextafter(t32, np.float32(-np.inf))
        return jnp.asarray(t32, jnp.float32)
    thr = jnp.asarray(iou_threshold)
    if thr.ndim != 0:
        raise ValueError(f"nms: iou_threshold must be a scalar, got shape {thr.shape}")
    return thr.astype(cmp_dtype)


def _suppresses(a_boxes: Array, a_area: Array, b_boxes: Array, b_area: Array,
                thr: Array) -> Array:
    """``[A, B]`` bool: IoU(a_i, b_j) > thr with torchvision's kernel arithmetic.

    Same operations in the same order as the C++ loop (max/min of corners, clamp at 0,
    ``inter / (area_i + area_j - inter)``), so the float32 result is bit-identical.
    """
    xx1 = jnp.maximum(a_boxes[:, None, 0], b_boxes[None, :, 0])
    yy1 = jnp.maximum(a_boxes[:, None, 1], b_boxes[None, :, 1])
    xx2 = jnp.minimum(a_boxes[:, None, 2], b_boxes[None, :, 2])
    yy2 = jnp.minimum(a_boxes[:, None, 3], b_boxes[None, :, 3])
    zero = jnp.zeros((), a_boxes.dtype)
    w = jnp.maximum(zero, xx2 - xx1)
    h = jnp.maximum(zero, yy2 - yy1)
    inter = w * h
    ovr = inter / (a_area[:, None] + b_area[None, :] - inter)
    return ovr.astype(thr.dtype) > thr


def _check_nms_inputs(boxes: Array, scores: Array, max_output_size: int, op: str) -> None:
    check_boxes(boxes, "boxes", op)
    check_rank(scores, 1, "scores", op, layout="[K]")
    check_floating(scores, "scores", op)
    check_same_length(scores, boxes.shape[0], "scores", op, "boxes")
    if not isinstance(max_output_size, (int, np.integer)) or isinstance(max_output_size, bool):
        raise TypeError(f"{op}: max_output_size must be a static Python int (it sets the output "
                        f"shape), got {type(max_output_size).__name__}")
    if max_output_size < 0:
        raise ValueError(f"{op}: max_output_size must be >= 0, got {max_output_size}")


def _descending_order(scores: Array) -> Array:
    """``[K] int32`` stable descending argsort of ``scores`` (ties in input order).

    Equals ``jnp.argsort(scores, descending=True, stable=True)`` and torch's CPU
    ``scores.sort(descending=True)``, but much faster on CPU for K < 65,536: XLA sorts a lone
    unsigned-integer array with a fast primitive sort, while a float key with an index
    payload goes through a slow comparator. So the scores are mapped to order-preserving
    uint32 keys (``-0.0`` folded onto ``0.0`` and every NaN onto one NaN, which sorts first,
    as torch's comparison treats them), the rank of each key's first occurrence is found by
    binary search in the sorted keys, and ``rank * K + index`` -- unique, fitting in 32 bits --
    is sorted once more.
    """
    n = scores.shape[0]
    if n >= 1 << 16:
        return jnp.argsort(scores, descending=True, stable=True).astype(jnp.int32)
    s = scores.astype(jnp.float32)
    s = jnp.where(s == 0, jnp.zeros((), jnp.float32), s)
    s = jnp.where(jnp.isnan(s), jnp.full((), jnp.nan, jnp.float32), s)
    bits = lax.bitcast_convert_type(s, jnp.uint32)
    ascending = jnp.where((bits >> 31) == 1, ~bits, bits | jnp.uint32(0x80000000))
    key = ~ascending  # ascending order of `key` = descending order of the scores
    first = jnp.searchsorted(lax.sort(key), key, side="left", method="scan")
    ranked = first.astype(jnp.uint32) * jnp.uint32(n) + jnp.arange(n, dtype=jnp.uint32)
    return (lax.sort(ranked) % jnp.uint32(n)).astype(jnp.int32)


def nms(boxes: Array, scores: Array, iou_threshold: float | Array, max_output_size: int,
        *, tile_size: int = DEFAULT_TILE_SIZE, chunk_size: int = DEFAULT_CHUNK_SIZE
        ) -> tuple[Array, Array]:
    """Greedy NMS: indices of kept boxes in decreasing score order, like ``torchvision.ops.nms``.

    Args:
      boxes: ``[K, 4]`` floating (x1, y1, x2, y2) boxes; float16/bfloat16 are compared in
        float32.
      scores: ``[K]`` floating scores.
      iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box is strictly
        greater than this. A Python float is compared exactly as torchvision's double; a traced
        scalar is compared in float32.
      max_output_size: static int, length of the output (at most this many boxes are kept;
        ``K`` keeps all that torchvision keeps).
      tile_size: candidate boxes resolved together (speed knob only; results do not depend
        on it).
      chunk_size: kept boxes compared with a tile at once (speed knob only).

    Returns:
      ``(indices, count)``: ``indices [max_output_size] int32`` -- the first ``count`` entries
      are the kept indices into ``boxes``, in decreasing score order (ties in input order), the
      rest are ``-1``; ``count`` is an ``int32`` scalar.
    """
    op = "nms"
    _check_nms_inputs(boxes, scores, max_output_size, op)
    for knob, value in (("tile_size", tile_size), ("chunk_size", chunk_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{op}: {knob} must be a positive int, got {value!r}")
    # Half-precision boxes are compared in float32: in float16 the areas of boxes larger than
    # ~256 x 256 px overflow to inf, making every IoU NaN (torchvision's test_nms_float16
    # requires the float32 answer).
    boxes = upcast(boxes)
    scores = jnp.asarray(scores)
    thr = _threshold(iou_threshold, boxes.dtype)
    n = boxes.shape[0]
    if n == 0 or max_output_size == 0:
        return jnp.full((max_output_size,), -1, jnp.int32), jnp.zeros((), jnp.int32)

    tile = min(tile_size, -(-n // 8) * 8)
    num_tiles = -(-n // tile)
    n_pad = num_tiles * tile
    cap = min(max_output_size, n)
    chunk = min(max(chunk_size, tile), -(-cap // 8) * 8)
    # Kept buffer: whole chunks, so chunk slices never run past its end.
    buf = -(-cap // chunk) * chunk

    order = _descending_order(scores)
    sboxes = jnp.pad(boxes[order], ((0, n_pad - n), (0, 0)))
    # Areas are materialized once, outside the loop, like the kernel's `areas` array.
    sarea = (sboxes[:, 2] - sboxes[:, 0]) * (sboxes[:, 3] - sboxes[:, 1])
    valid = jnp.arange(n_pad) < n
    tile_ar = jnp.arange(tile, dtype=jnp.int32)
    chunk_ar = jnp.arange(chunk, dtype=jnp.int32)
    upper = tile_ar[:, None] < tile_ar[None, :]

    def tile_cond(state):
        t, num_kept = state[0], state[1]
        return (t < num_tiles) & (num_kept < cap)

    def tile_body(state):
        t, num_kept, kept_boxes, kept_area, kept_pos = state
        start = t * tile
        cand = lax.dynamic_slice_in_dim(sboxes, start, tile)
        carea = lax.dynamic_slice_in_dim(sarea, start, tile)
        alive0 = lax.dynamic_slice_in_dim(valid, start, tile)

        # 1) Suppression by the boxes kept in earlier tiles, a chunk of them at a time.
        def chunk_cond(s):
            c, alive = s
            return (c * chunk < num_kept) & jnp.any(alive)

        def chunk_body(s):
            c, alive = s
            kb = lax.dynamic_slice_in_dim(kept_boxes, c * chunk, chunk)
            ka = lax.dynamic_slice_in_dim(kept_area, c * chunk, chunk)
            rows = (c * chunk + chunk_ar) < num_kept
            sup = _suppresses(kb, ka, cand, carea, thr) & rows[:, None]
            return c + 1, alive & ~jnp.any(sup, axis=0)

        _, undecided = lax.while_loop(chunk_cond, chunk_body, (jnp.int32(0), alive0))

        # 2) Greedy inside the tile, in parallel rounds: a box whose earlier overlapping
        # boxes are all suppressed is kept; a box overlapping a kept earlier box is
        # suppressed. Each round decides at least the first undecided box.
        m = _suppresses(cand, carea, cand, carea, thr) & upper

        def round_cond(s):
            return jnp.any(s[1])

        def round_body(s):
            kept, undecided = s
            free = undecided & ~jnp.any(m & undecided[:, None], axis=0)
            dead = jnp.any(m & free[:, None], axis=0)
            return kept | free, undecided & ~free & ~dead

        alive, _ = lax.while_loop(round_cond, round_body, (jnp.zeros_like(undecided), undecided))

        # 3) Append the survivors (in score order) to the kept buffer.
        pos = num_kept + jnp.cumsum(alive.astype(jnp.int32)) - 1
        pos = jnp.where(alive & (pos < cap), pos, buf)  # out of range -> dropped
        kept_boxes = kept_boxes.at[pos].set(cand, mode="drop")
        kept_area = kept_area.at[pos].set(carea, mode="drop")
        kept_pos = kept_pos.at[pos].set(start + tile_ar, mode="drop")
        num_kept = jnp.minimum(num_kept + jnp.sum(alive, dtype=jnp.int32), cap)
        return t + 1, num_kept, kept_boxes, kept_area, kept_pos

    init = (jnp.int32(0), jnp.int32(0), jnp.zeros((buf, 4), boxes.dtype),
            jnp.zeros((buf,), sarea.dtype), jnp.zeros((buf,), jnp.int32))
    _, count, _, _, kept_pos = lax.while_loop(tile_cond, tile_body, init)

    kept = order[kept_pos[:cap]]
    kept = jnp.where(jnp.arange(cap) < count, kept, -1)
    if max_output_size > cap:
        kept = jnp.pad(kept, (0, max_output_size - cap), constant_values=-1)
    return kept, count


def batched_nms(boxes: Array, scores: Array, idxs: Array, iou_threshold: float | Array,
                max_output_size: int, *, tile_size: int = DEFAULT_TILE_SIZE,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[Array, Array]:
    """Per-category NMS in one pass, like ``torchvision.ops.batched_nms``.

    Uses torchvision's coordinate-offset trick: every box is shifted by ``idxs * (max(boxes) +
    1)`` so boxes of different categories cannot overlap, then one :func:`nms` runs. The
    offset boxes are computed with torchvision's float32 arithmetic, so the result equals
    torchvision's coordinate-trick path exactly (used on CPU for up to 1,000 boxes); its
    per-class loop path (more boxes on CPU) differs only when an offset rounds an IoU across
    the threshold. Like torchvision, assumes non-negative coordinates.

    Args:
      boxes: ``[K, 4]`` floating (x1, y1, x2, y2) boxes.
      scores: ``[K]`` floating scores.
      idxs: ``[K]`` integer category of each box.
      iou_threshold, max_output_size, tile_size, chunk_size: as in :func:`nms`.

    Returns:
      ``(indices [max_output_size] int32 padded with -1, count int32)`` as :func:`nms`.
    """
    op = "batched_nms"
    _check_nms_inputs(boxes, scores, max_output_size, op)
    check_rank(idxs, 1, "idxs", op, layout="[K]")
    check_integer(idxs, "idxs", op)
    check_same_length(idxs, boxes.shape[0], "idxs", op, "boxes")
    boxes = upcast(boxes)  # offsets of half-precision boxes in float32 too, see nms
    if boxes.shape[0] == 0:
        return jnp.full((max_output_size,), -1, jnp.int32), jnp.zeros((), jnp.int32)
    max_coordinate = jnp.max(boxes)
    offsets = jnp.asarray(idxs).astype(boxes.dtype) * (max_coordinate + jnp.ones((), boxes.dtype))
    return nms(boxes + offsets[:, None], scores, iou_threshold, max_output_size,
               tile_size=tile_size, chunk_size=chunk_size)
