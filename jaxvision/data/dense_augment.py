"""Host-side (numpy) transforms for dense examples: images with boxes and per-pixel masks.

A dense example (the contract of the detection and segmentation sources) is a dict with
``image`` uint8 [H, W, 3] of any size and, when present, ``boxes`` float32 [K, 4] (x1, y1, x2,
y2) in pixels, ``box_valid`` bool [K], ``labels`` int32 [K], ``difficult`` bool [K], instance
``masks`` uint8 [K, H, W], a semantic ``mask`` uint8 [H, W], ``image_id`` and ``orig_size``
int32 [2]. The transforms here put every example on a fixed canvas [Hc, Wc] so that batches
are static-shaped: the resized image sits at the top-left, ``image_size`` int32 [2] records
its (h, w), the rest is padding (0 for the image and instance masks, ``ignore_index`` for the
semantic mask). Fields a transform does not know are carried through unchanged; fields that
are absent (no boxes for segmentation, no mask for detection) are skipped.

- :func:`train_transform`: horizontal flip, scale jitter, random crop and padding, with the
  parameters drawn once per example and applied to the image, its boxes (clipped; dropped
  when cut below ``min_box_size``) and its masks (nearest neighbour) together.
- :func:`eval_transform`: torchvision's detection resize
  (``GeneralizedRCNNTransform``: shorter side to ``min_size``, longer side capped at
  ``max_size``), then padding; :func:`postprocess_boxes` maps predictions back to the
  original pixels as ``GeneralizedRCNNTransform.postprocess`` does.
- :func:`resize_bilinear` and :func:`resize_nearest`: torch's ``interpolate`` (bilinear with
  ``align_corners=False`` and no antialiasing; ``"nearest"`` and ``"nearest-exact"``),
  reproduced index for index in float32, so values match torch to float32 rounding and
  nearest-neighbour masks exactly.

Both transforms are picklable dataclasses with the DataLoader's hook signature
``transform(example, rng) -> example`` (``rng`` a ``numpy.random.Generator``), so worker
processes and a resumed loader draw the same parameters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxvision.checks import pair
from jaxvision.data.annotated import degenerate

__all__ = [
    "AugmentParams",
    "EvalTransform",
    "TrainTransform",
    "bilinear_taps",
    "eval_transform",
    "nearest_indices",
    "pad_to_canvas",
    "postprocess_boxes",
    "resize_bilinear",
    "resize_boxes",
    "resize_nearest",
    "resized_size",
    "train_transform",
]

#: Per-box fields zeroed together with the box when a transform drops it (instance masks
#: too: only the kept rows are resampled).
_BOX_FIELDS = ("boxes", "labels", "difficult")
_NEAREST_MODES = ("nearest", "nearest-exact")


# ---- torch-exact resampling -------------------------------------------------------------

def _torch_scale(in_size: int, out_size: int) -> np.float32:
    # ATen's compute_scales_value<float>: float(input_size) / output_size in float32 (the
    # scale a size-given or recompute_scale_factor=True interpolate uses).
    return np.float32(in_size) / np.float32(out_size)


def bilinear_taps(in_size: int, out_size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The two source taps and weights of each output sample of torch's 1-D linear resize
    (``align_corners=False``, no antialiasing), computed as ATen does, in float32.

    Output sample ``d`` reads ``src = max(scale * (d + 0.5) - 0.5, 0)`` with ``scale = in /
    out``; ``i0 = min(floor(src), in - 1)``, ``i1 = i0 + 1`` (or ``i0`` at the last pixel),
    ``l1 = clip(src - i0, 0, 1)``, ``l0 = 1 - l1``.

    Returns:
      ``(i0, i1, l0, l1)``: [out_size] int64, int64, float32, float32. The dense [out, in]
      interpolation matrix has ``l0`` at ``(d, i0[d])`` plus ``l1`` at ``(d, i1[d])``.
    """
    scale = _torch_scale(in_size, out_size)
    # One rounding of the exact scale * (d + 0.5) - 0.5: ATen's kernels are compiled with
    # FMA contraction, and two float32 roundings differ from it by up to 6e-4 at 255.
    src = (np.float64(scale) * (np.arange(out_size) + 0.5) - 0.5).astype(np.float32)
    src = np.where(src < 0, np.float32(0), src)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    l1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    l0 = (np.float32(1) - l1).astype(np.float32)
    return i0, i1, l0, l1


def nearest_indices(in_size: int, out_size: int, mode: str = "nearest") -> np.ndarray:
    """Source index of each output sample of torch's 1-D nearest resize.

    ``mode="nearest"``: ``min(floor(d * scale), in - 1)`` (torch's default, OpenCV's
    INTER_NEAREST: shifted half a source pixel up/left), with torch's special cases for equal
    and doubled sizes. ``mode="nearest-exact"``: ``min(floor((d + 0.5) * scale), in - 1)``
    (pixel centres aligned, as PIL and the bilinear resize). ``scale = in / out`` in float32.

    Returns:
      [out_size] int64 indices in ``[0, in_size)``.
    """
    if mode not in _NEAREST_MODES:
        raise ValueError(f"nearest_indices: mode must be one of {_NEAREST_MODES}, got {mode!r}")
    d = np.arange(out_size)
    scale = _torch_scale(in_size, out_size)
    if mode == "nearest":
        if out_size == in_size:
            return d
        if out_size == 2 * in_size:
            return d >> 1
        idx = np.floor(d.astype(np.float32) * scale)
    else:
        # ATen: floorf((dst_index + 0.5) * scale), the product in double then cast to float.
        idx = np.floor(((d + 0.5) * np.float64(scale)).astype(np.float32))
    return np.minimum(idx.astype(np.int64), in_size - 1)


def _bilinear_window(image: np.ndarray, ys: tuple, xs: tuple) -> np.ndarray:
    """Bilinear resampling of ``image`` [H, W, ...] at the taps ``ys``/``xs`` from
    :func:`bilinear_taps` (possibly sliced to a crop window): float32 [h, w, ...]."""
    y0, y1, ly0, ly1 = ys
    x0, x1, lx0, lx1 = xs
    img = image.astype(np.float32, copy=False)
    extra = (None,) * (img.ndim - 2)
    tmp = img[y0] * ly0[(slice(None), None, *extra)] + img[y1] * ly1[(slice(None), None, *extra)]
    return (tmp[:, x0] * lx0[(None, slice(None), *extra)]
            + tmp[:, x1] * lx1[(None, slice(None), *extra)]).astype(np.float32, copy=False)


def resize_bilinear(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``torch.nn.functional.interpolate(x, size, mode="bilinear", align_corners=False)``
    (no antialiasing) of an HWC image, separable: rows then columns, two taps each.

    Args:
      image: [H, W] or [H, W, C], any real dtype (uint8 or float pixel values).
      size: (h, w), the output size.
    Returns:
      [h, w] or [h, w, C] float32, not rounded.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"resize_bilinear: image must be [H, W] or [H, W, C], got shape "
                         f"{image.shape}")
    h, w = pair(size, "size", op="resize_bilinear")
    return _bilinear_window(image, bilinear_taps(image.shape[0], h),
                            bilinear_taps(image.shape[1], w))


def resize_nearest(mask: np.ndarray, size: Sequence[int], mode: str = "nearest") -> np.ndarray:
    """``torch.nn.functional.interpolate(x, size, mode=mode)`` of masks, on the LAST two axes.

    Args:
      mask: [H, W] or [..., H, W] (e.g. instance masks [K, H, W]), any dtype; values are
        copied, never blended.
      size: (h, w), the output size.
      mode: ``"nearest"`` (torch's default) or ``"nearest-exact"``; see
        :func:`nearest_indices`.
    Returns:
      [..., h, w], same dtype.
    """
    mask = np.asarray(mask)
    if mask.ndim < 2:
        raise ValueError(f"resize_nearest: mask must be [..., H, W], got shape {mask.shape}")
    h, w = pair(size, "size", op="resize_nearest")
    iy = nearest_indices(mask.shape[-2], h, mode)
    ix = nearest_indices(mask.shape[-1], w, mode)
    return mask[..., iy[:, None], ix[None, :]]


# ---- boxes ------------------------------------------------------------------------------

def resize_boxes(boxes: np.ndarray, orig_size: Sequence[int],
                 new_size: Sequence[int]) -> np.ndarray:
    """Scales boxes from an image of ``orig_size`` to one of ``new_size``, as torchvision's
    ``models.detection.transform.resize_boxes`` (float32 ratios ``new / orig``).

    Args:
      boxes: [K, 4] (x1, y1, x2, y2) in ``orig_size`` pixels.
      orig_size, new_size: (h, w).
    Returns:
      [K, 4] float32 in ``new_size`` pixels.
    """
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"resize_boxes: boxes must be [K, 4] (x1, y1, x2, y2), got shape "
                         f"{boxes.shape}")
    oh, ow = pair(orig_size, "orig_size", op="resize_boxes")
    nh, nw = pair(new_size, "new_size", op="resize_boxes")
    ratio = np.array([np.float32(nw) / np.float32(ow), np.float32(nh) / np.float32(oh)] * 2,
                     np.float32)
    return (boxes * ratio).astype(np.float32)


def postprocess_boxes(boxes: np.ndarray, image_size: Sequence[int],
                      orig_size: Sequence[int]) -> np.ndarray:
    """Maps predicted boxes from the resized image back to the original pixels, as
    ``GeneralizedRCNNTransform.postprocess`` (no clipping; clip with the detector's own
    post-processing, as torchvision does before this step).

    Args:
      boxes: [K, 4] (x1, y1, x2, y2) in the resized image's pixels (canvas pixels: the image
        sits at the top-left, so they are the same).
      image_size: (h, w) of the resized image (the example's ``image_size``).
      orig_size: (H, W) of the original image (the example's ``orig_size``).
    Returns:
      [K, 4] float32 in original pixels.
    """
    return resize_boxes(boxes, image_size, orig_size)


def resized_size(orig_size: Sequence[int], min_size: int,
                 max_size: int | None = None) -> tuple[int, int]:
    """The (h, w) that ``GeneralizedRCNNTransform`` resizes an image of ``orig_size`` to.

    ``scale = min(min_size / min(H, W), max_size / max(H, W))`` in Python floats (doubles),
    then ``interpolate(scale_factor=scale, recompute_scale_factor=True)`` truncates
    ``H * scale`` and ``W * scale`` to ints. ``max_size=None`` drops the cap.

    Returns:
      (h, w) ints, at least 1 each.
    """
    oh, ow = pair(orig_size, "orig_size", op="resized_size")
    scale = min_size / min(oh, ow)
    if max_size is not None:
        scale = min(scale, max_size / max(oh, ow))
    h, w = int(oh * scale), int(ow * scale)
    if h < 1 or w < 1:
        raise ValueError(f"resized_size: an image of {(oh, ow)} with min_size={min_size}, "
                         f"max_size={max_size} resizes to the empty size {(h, w)}")
    return h, w


# ---- canvas -----------------------------------------------------------------------------

def pad_to_canvas(x: np.ndarray, canvas: Sequence[int], fill: float = 0,
                  spatial: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Places ``x`` at the top-left of a ``canvas`` filled with ``fill``.

    Args:
      x: an array whose axes ``spatial`` are (h, w) with ``h <= Hc`` and ``w <= Wc``
        (images [h, w, C]: ``spatial=(0, 1)``; masks [K, h, w]: ``(-2, -1)``).
      canvas: (Hc, Wc).
      fill: the padding value.
    Returns:
      ``x``'s dtype, shape with the spatial axes replaced by (Hc, Wc).
    """
    hc, wc = pair(canvas, "canvas", op="pad_to_canvas")
    ay, ax = (a % x.ndim for a in spatial)
    h, w = x.shape[ay], x.shape[ax]
    if h > hc or w > wc:
        raise ValueError(f"pad_to_canvas: an array of spatial size {(h, w)} does not fit the "
                         f"canvas {(hc, wc)}")
    shape = list(x.shape)
    shape[ay], shape[ax] = hc, wc
    # np.zeros maps lazily zeroed pages: padding [100, 1344, 1344] instance masks is free.
    out = np.zeros(shape, x.dtype) if fill == 0 else np.full(shape, fill, dtype=x.dtype)
    index = [slice(None)] * x.ndim
    index[ay], index[ax] = slice(0, h), slice(0, w)
    out[tuple(index)] = x
    return out


def _to_image_dtype(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    # uint8 in, uint8 out (rounded half to even, as torch's uint8 resize); float stays float32
    # so that the evaluation resize can be compared with torchvision unrounded.
    if like.dtype == np.uint8:
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x.astype(np.float32, copy=False)


def _where(example: dict[str, Any]) -> str:
    return f" (image_id {example['image_id']})" if "image_id" in example else ""


def _check_example(example: dict[str, Any], op: str) -> tuple[int, int]:
    """Validates the fields a dense transform reads; returns the image's (H, W)."""
    if "image" not in example:
        raise ValueError(f"{op}: the example has no 'image' field (fields: {sorted(example)})")
    image = np.asarray(example["image"])
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{op}: 'image' must be [H, W, C], got shape {image.shape}"
                         f"{_where(example)}")
    hw = image.shape[:2]
    if "mask" in example and np.shape(example["mask"]) != hw:
        raise ValueError(f"{op}: 'mask' must be [H, W] = {hw} like the image, got shape "
                         f"{np.shape(example['mask'])}{_where(example)}")
    if "boxes" in example:
        boxes = np.shape(example["boxes"])
        if len(boxes) != 2 or boxes[1] != 4:
            raise ValueError(f"{op}: 'boxes' must be [K, 4] (x1, y1, x2, y2), got shape "
                             f"{boxes}{_where(example)}")
        for name in ("box_valid", "labels", "difficult"):
            if name in example and np.shape(example[name]) != boxes[:1]:
                raise ValueError(f"{op}: '{name}' must be [K] = {boxes[:1]} like 'boxes', got "
                                 f"shape {np.shape(example[name])}{_where(example)}")
    if "masks" in example:
        want = (np.shape(example["boxes"])[0],) if "boxes" in example else None
        got = np.shape(example["masks"])
        if len(got) != 3 or got[1:] != hw or (want is not None and got[:1] != want):
            raise ValueError(f"{op}: 'masks' must be [K, H, W] with (H, W) = {hw} and K rows "
                             f"like 'boxes', got shape {got}{_where(example)}")
    return hw


def _drop_boxes(out: dict[str, Any], keep: np.ndarray) -> None:
    """Sets ``box_valid = keep`` and zeroes the rows of every per-box field where not kept."""
    out["box_valid"] = keep.astype(bool)
    for name in _BOX_FIELDS:
        if name in out:
            v = np.array(out[name], copy=True)
            v[~keep] = 0
            out[name] = v


def _instance_masks(masks: np.ndarray, iy: np.ndarray, ix: np.ndarray,
                    canvas: tuple[int, int], rows: np.ndarray) -> np.ndarray:
    """masks [K, H, W] sampled at rows ``iy`` [h] and columns ``ix`` [w] onto a zero [K, Hc,
    Wc] canvas; only the ``rows`` (bool [K]) are computed, the others stay 0 (with 100 padded
    instances of which a few are real, this is most of the work saved)."""
    out = np.zeros((masks.shape[0], *canvas), masks.dtype)
    sel = np.flatnonzero(rows)
    if len(sel):
        out[sel, :len(iy), :len(ix)] = masks[sel[:, None, None], iy[None, :, None],
                                              ix[None, None, :]]
    return out


def _place_boxes(boxes: np.ndarray, p: AugmentParams, image_hw: tuple[int, int]
                 ) -> np.ndarray:
    """[K, 4] boxes of an (H, W) image moved as :meth:`TrainTransform.apply` moves the image
    by ``p``: flipped, scaled, shifted by the crop window and clipped to it (float32)."""
    h, w = image_hw
    (nh, nw), (ch, cw) = p.resized, p.crop_size
    b = np.asarray(boxes, np.float32)
    if p.flip:
        b = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1)
    b = resize_boxes(b, (h, w), (nh, nw))
    b = b - np.array([p.left, p.top, p.left, p.top], np.float32)
    return np.clip(b, 0, np.array([cw, ch, cw, ch], np.float32)).astype(np.float32)


def _move_proposals(out: dict[str, Any], example: dict[str, Any], move: Any, op: str) -> None:
    """Moves the region proposals (``proposals`` [P, 4], Fast R-CNN's selective-search boxes)
    with the image: ``move`` maps [P, 4] to canvas pixels. No row is ever dropped (P stays
    fixed); ``proposal_valid`` [P] becomes False where a box is empty after the move."""
    props = np.asarray(example["proposals"], np.float32)
    if props.ndim != 2 or props.shape[1] != 4:
        raise ValueError(f"{op}: 'proposals' must be [P, 4] (x1, y1, x2, y2), got shape "
                         f"{props.shape}{_where(example)}")
    valid = np.asarray(example.get("proposal_valid", np.ones(len(props), bool)), bool)
    if valid.shape != props.shape[:1]:
        raise ValueError(f"{op}: 'proposal_valid' must be [P] = {props.shape[:1]} like "
                         f"'proposals', got shape {valid.shape}{_where(example)}")
    moved = move(props).astype(np.float32)
    out["proposals"] = moved
    out["proposal_valid"] = valid & ~degenerate(moved)


# ---- training ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """One example's augmentation, drawn once by :meth:`TrainTransform.sample`.

    The image of (H, W) is mirrored left-right when ``flip``, resized to ``resized`` (h, w)
    and cut to the window of ``crop_size`` (ch, cw) at (``top``, ``left``) of the resized
    image; the window goes to the canvas's top-left.
    """

    flip: bool
    resized: tuple[int, int]
    top: int
    left: int
    crop_size: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class TrainTransform:
    """Flip, scale jitter, random crop and pad to ``canvas``, the same draw applied to the
    image, its boxes and its masks. Build it with :func:`train_transform` (see there)."""

    canvas: tuple[int, int]
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    crop: bool = True
    min_box_size: float = 1.0
    ignore_index: int = 255
    base_size: int | None = None
    mask_mode: str = "nearest-exact"

    def __post_init__(self) -> None:
        op = "train_transform"
        object.__setattr__(self, "canvas", pair(self.canvas, "canvas", op=op))
        lo, hi = (float(s) for s in self.scale_range)
        if not 0 < lo <= hi:
            raise ValueError(f"{op}: scale_range must be (lo, hi) with 0 < lo <= hi, got "
                             f"{self.scale_range!r}")
        object.__setattr__(self, "scale_range", (lo, hi))
        if not self.crop and (hi > 1 or self.base_size is not None):
            raise ValueError(f"{op}: crop=False needs every resized image to fit the canvas: "
                             f"scale_range's upper bound must be <= 1 (got {hi}) and base_size "
                             f"None (got {self.base_size})")
        if self.base_size is not None and self.base_size < 1:
            raise ValueError(f"{op}: base_size must be a positive int, got {self.base_size}")
        if self.min_box_size < 0:
            raise ValueError(f"{op}: min_box_size must be >= 0, got {self.min_box_size}")
        if self.mask_mode not in _NEAREST_MODES:
            raise ValueError(f"{op}: mask_mode must be one of {_NEAREST_MODES}, got "
                             f"{self.mask_mode!r}")

    def sample(self, image_hw: Sequence[int], rng: np.random.Generator) -> AugmentParams:
        """Draws one example's parameters (in this order: flip, scale, crop offsets).

        The scale multiplies the base scale: the one that fits the whole image into the
        canvas (large-scale jitter, Ghiasi et al. 2021), or ``base_size / min(H, W)``
        (torchvision's segmentation recipe) when ``base_size`` is set.
        """
        h, w = (int(s) for s in image_hw)
        hc, wc = self.canvas
        flip = bool(self.flip and rng.random() < 0.5)
        s = float(rng.uniform(*self.scale_range))
        base = min(hc / h, wc / w) if self.base_size is None else self.base_size / min(h, w)
        nh, nw = max(1, round(h * base * s)), max(1, round(w * base * s))
        ch, cw = min(nh, hc), min(nw, wc)
        top = int(rng.integers(0, nh - ch + 1))
        left = int(rng.integers(0, nw - cw + 1))
        return AugmentParams(flip, (nh, nw), top, left, (ch, cw))

    def apply(self, example: dict[str, Any], p: AugmentParams) -> dict[str, Any]:
        """Applies ``p`` to every field of ``example`` (see :func:`train_transform`)."""
        op = "train_transform"
        h, w = _check_example(example, op)
        (nh, nw), (ch, cw) = p.resized, p.crop_size
        ys, xs = slice(p.top, p.top + ch), slice(p.left, p.left + cw)
        out = dict(example)
        out.setdefault("orig_size", np.array([h, w], np.int32))

        image = np.asarray(example["image"])
        if p.flip:
            image = image[:, ::-1]
        # Only the crop window of the resized image is computed: the taps of the full resize,
        # sliced, give exactly those pixels.
        taps_y = tuple(t[ys] for t in bilinear_taps(h, nh))
        taps_x = tuple(t[xs] for t in bilinear_taps(w, nw))
        out["image"] = pad_to_canvas(_to_image_dtype(_bilinear_window(image, taps_y, taps_x),
                                                     image), self.canvas, 0)
        out["image_size"] = np.array([ch, cw], np.int32)

        # Flipping the source is reversing its column indices.
        iy = nearest_indices(h, nh, self.mask_mode)[ys]
        ix = nearest_indices(w, nw, self.mask_mode)[xs]
        ix = w - 1 - ix if p.flip else ix
        if "mask" in example:
            m = np.asarray(example["mask"])
            out["mask"] = pad_to_canvas(m[iy[:, None], ix[None, :]], self.canvas,
                                        self.ignore_index)
        keep = None
        if "boxes" in example:
            b = np.asarray(example["boxes"], np.float32)
            valid = np.asarray(example.get("box_valid", np.ones(len(b), bool)), bool)
            b = _place_boxes(b, p, (h, w))
            bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
            # remove_small_boxes' rule (>= min size), and never an empty box.
            keep = valid & ~degenerate(b) & (bw >= self.min_box_size) \
                & (bh >= self.min_box_size)
            out["boxes"] = b
            _drop_boxes(out, keep)
        if "masks" in example:
            m = np.asarray(example["masks"])
            rows = np.ones(len(m), bool) if keep is None else keep
            out["masks"] = _instance_masks(m, iy, ix, self.canvas, rows)
        if "proposals" in example:
            _move_proposals(out, example, lambda b: _place_boxes(b, p, (h, w)), op)
        return out

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        h, w = _check_example(example, "train_transform")
        return self.apply(example, self.sample((h, w), rng))


def train_transform(canvas: Sequence[int], scale_range: Sequence[float] = (0.5, 2.0),
                    flip: bool = True, crop: bool = True, min_box_size: float = 1.0,
                    ignore_index: int = 255, base_size: int | None = None,
                    mask_mode: str = "nearest-exact") -> TrainTransform:
    """The training transform of dense examples, for ``DataLoader(transform=...)``.

    Per example, parameters drawn once from the loader's ``rng``: a horizontal flip (p = 1/2
    when ``flip``), a scale uniform in ``scale_range`` times the base scale (the one fitting
    the image into the canvas; ``base_size / min(H, W)`` when ``base_size`` is set), a crop
    window of ``min(resized, canvas)`` placed uniformly in the resized image. The image is
    resized bilinearly (torch's ``interpolate``, :func:`resize_bilinear`), the masks by
    nearest neighbour (``mask_mode``; ``"nearest-exact"`` by default because torch's
    ``"nearest"`` shifts a mask up to a source pixel up-left of its bilinearly resized
    image), and the window goes to the top-left of the canvas.

    Args:
      canvas: (Hc, Wc), the output size of every example.
      scale_range: (lo, hi) of the scale jitter (large-scale jitter uses (0.1, 2.0)).
      flip: random horizontal flips.
      crop: random crop placement; False needs ``scale_range[1] <= 1`` and no ``base_size``
        (every resized image then fits the canvas).
      min_box_size: boxes narrower or lower than this (canvas pixels) after clipping to the
        crop are dropped, as are empty ones.
      ignore_index: padding value of the semantic ``mask``.
      base_size: the shorter side at scale 1 (torchvision's segmentation recipe: 520, scale
        (0.5, 2.0), canvas 480); None fits the image into the canvas instead.
      mask_mode: ``"nearest-exact"`` or ``"nearest"``.

    Returns:
      ``transform(example, rng) -> example`` mapping ``image`` uint8 [H, W, C] to uint8 [Hc,
      Wc, C] (float images to float32, unrounded); ``boxes`` [K, 4] to float32 canvas pixels
      (flipped, scaled, shifted, clipped to the window); ``box_valid`` bool [K] False on
      dropped rows, whose ``boxes``, ``labels``, ``difficult`` and ``masks`` are zeroed (rows
      keep their positions); ``masks`` [K, H, W] to [K, Hc, Wc] (0 padding); ``mask`` [H, W]
      to [Hc, Wc] (``ignore_index`` padding); adds ``image_size`` int32 [2] = the window's
      (h, w), and ``orig_size`` int32 [2] when absent; region ``proposals`` [P, 4] move as
      the boxes do but keep every row, ``proposal_valid`` [P] False where one became empty.
      Other fields are carried unchanged.
    """
    return TrainTransform(canvas=tuple(canvas), scale_range=tuple(scale_range), flip=flip,
                          crop=crop, min_box_size=min_box_size, ignore_index=ignore_index,
                          base_size=base_size, mask_mode=mask_mode)


# ---- evaluation -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvalTransform:
    """torchvision's detection resize, then pad to ``canvas``. Build it with
    :func:`eval_transform` (see there)."""

    min_size: int = 800
    max_size: int | None = 1333
    canvas: tuple[int, int] | None = None
    size_divisible: int = 32
    ignore_index: int = 255
    mask_mode: str = "nearest"

    def __post_init__(self) -> None:
        op = "eval_transform"
        if self.min_size < 1 or (self.max_size is not None and self.max_size < 1):
            raise ValueError(f"{op}: min_size and max_size must be positive, got "
                             f"{self.min_size}, {self.max_size}")
        if self.mask_mode not in _NEAREST_MODES:
            raise ValueError(f"{op}: mask_mode must be one of {_NEAREST_MODES}, got "
                             f"{self.mask_mode!r}")
        if self.canvas is None:
            if self.max_size is None:
                raise ValueError(f"{op}: without max_size the resized size is unbounded; "
                                 "give a canvas (Hc, Wc)")
            # Either side may become the longer one, capped at max_size.
            side = int(math.ceil(self.max_size / self.size_divisible) * self.size_divisible)
            object.__setattr__(self, "canvas", (side, side))
        else:
            object.__setattr__(self, "canvas", pair(self.canvas, "canvas", op=op))

    def __call__(self, example: dict[str, Any],
                 rng: np.random.Generator | None = None) -> dict[str, Any]:
        op = "eval_transform"
        h, w = _check_example(example, op)
        nh, nw = resized_size((h, w), self.min_size, self.max_size)
        hc, wc = self.canvas
        if nh > hc or nw > wc:
            raise ValueError(f"{op}: an image of {(h, w)}{_where(example)} resizes to "
                             f"{(nh, nw)}, larger than the canvas {(hc, wc)}")
        out = dict(example)
        out.setdefault("orig_size", np.array([h, w], np.int32))
        image = np.asarray(example["image"])
        out["image"] = pad_to_canvas(_to_image_dtype(resize_bilinear(image, (nh, nw)), image),
                                     self.canvas, 0)
        out["image_size"] = np.array([nh, nw], np.int32)
        if "mask" in example:
            out["mask"] = pad_to_canvas(resize_nearest(example["mask"], (nh, nw),
                                                       self.mask_mode),
                                        self.canvas, self.ignore_index)
        if "masks" in example:
            m = np.asarray(example["masks"])
            rows = np.asarray(example.get("box_valid", np.ones(len(m), bool)), bool)
            out["masks"] = _instance_masks(m, nearest_indices(h, nh, self.mask_mode),
                                           nearest_indices(w, nw, self.mask_mode),
                                           self.canvas, rows)
        if "boxes" in example:
            out["boxes"] = resize_boxes(example["boxes"], (h, w), (nh, nw))
        if "proposals" in example:
            _move_proposals(out, example, lambda b: resize_boxes(b, (h, w), (nh, nw)), op)
        return out


def eval_transform(min_size: int = 800, max_size: int | None = 1333,
                   canvas: Sequence[int] | None = None, size_divisible: int = 32,
                   ignore_index: int = 255, mask_mode: str = "nearest") -> EvalTransform:
    """The evaluation transform of dense examples: torchvision's
    ``GeneralizedRCNNTransform`` resize, then padding to a fixed canvas.

    The image goes to :func:`resized_size` (shorter side ``min_size``, longer side at most
    ``max_size``, aspect kept, truncated as torch's ``interpolate(scale_factor=...,
    recompute_scale_factor=True)``), bilinearly (:func:`resize_bilinear`); boxes by
    :func:`resize_boxes` (not clipped, none dropped); masks by torch's ``"nearest"`` (as
    torchvision resizes target masks). :func:`postprocess_boxes` with the example's
    ``image_size`` and ``orig_size`` maps predictions back.

    Args:
      min_size, max_size: torchvision's (800, 1333 for its detectors); ``max_size=None``
        resizes the shorter side only (then ``canvas`` is required).
      canvas: (Hc, Wc); default: the largest size an image can resize to, ``max_size`` on
        either side, rounded up to ``size_divisible`` (square, since either side can be
        the longer one).
      ignore_index: padding value of the semantic ``mask``.
      mask_mode: ``"nearest"`` (torchvision) or ``"nearest-exact"``.

    Returns:
      ``transform(example, rng=None) -> example`` with ``image`` [Hc, Wc, C] (uint8 from
      uint8, float32 unrounded from float), ``image_size`` int32 [2] = the resized (h, w),
      ``boxes`` float32 [K, 4] in resized pixels, ``masks`` [K, Hc, Wc] (0 padding; rows
      whose ``box_valid`` is False come out 0), ``mask`` [Hc, Wc] (``ignore_index``
      padding), ``orig_size`` added when absent; region ``proposals`` [P, 4] resized as the
      boxes (``proposal_valid`` [P] False where one is empty); other fields, ``box_valid``
      included, unchanged.
    """
    return EvalTransform(min_size=int(min_size),
                         max_size=None if max_size is None else int(max_size),
                         canvas=None if canvas is None else tuple(canvas),
                         size_divisible=int(size_divisible), ignore_index=ignore_index,
                         mask_mode=mask_mode)
