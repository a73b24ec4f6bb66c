"""Multi-scale RoI pooling over an FPN (Lin et al., "Feature Pyramid Networks", CVPR 2017).

Exact to ``torchvision.ops.MultiScaleRoIAlign``: each level's scale is inferred as
``2 ** round(log2(feature_height / image_height))`` (the largest image height of the batch),
a box of side ``s = sqrt(area)`` goes to level ``floor(4 + log2(s / 224) + 1e-6)`` clamped to
the available levels (FPN's eq. 1 with torchvision's epsilon), and each RoI is pooled with
:func:`~jaxvision.ops.roi_align` (``aligned=False``) on its level.

Static shapes: every level runs over all ``K`` RoIs and the right level is selected per RoI.
RoIs that belong to another level are collapsed to a point first, so they land in the
smallest window of RoIAlign's size-bucketed loop and cost little; their outputs and
gradients are discarded by the selection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvision.checks import check_boxes, check_rank, check_roi_inputs, pair
from jaxvision.ops._numerics import divide
from jaxvision.ops.boxes import box_area
from jaxvision.ops.roi_align import roi_align

__all__ = ["MultiScaleRoIAlign", "infer_scale", "map_levels", "multi_scale_roi_align"]


def infer_scale(feature_size: int, image_size: int) -> float:
    """``2 ** round(log2(feature_size / image_size))``, torchvision's ``_infer_scale``.

    The log is taken in float32 and rounded half to even, as ``torch.round`` does.
    """
    approx = np.float32(float(feature_size) / float(image_size))
    return float(2.0 ** float(np.round(np.log2(approx))))


def map_levels(boxes: jax.Array, k_min: int, k_max: int, canonical_scale: int = 224,
               canonical_level: int = 4, eps: float = 1e-6) -> jax.Array:
    """FPN level index (``0`` = level ``k_min``) of each box, torchvision's ``LevelMapper``.

    Args:
      boxes: ``[K, 4]`` floating (x1, y1, x2, y2) boxes in image coordinates.
      k_min, k_max: the finest and coarsest pyramid levels (``-log2`` of their scales).
      canonical_scale, canonical_level: a box of side ``canonical_scale`` maps to
        ``canonical_level``.
      eps: added before the floor, as torchvision does.

    Returns:
      ``[K] int32`` in ``[0, k_max - k_min]``.
    """
    check_boxes(boxes, "boxes", "map_levels")
    s = jnp.sqrt(box_area(boxes))
    lvl = jnp.floor(canonical_level + jnp.log2(divide(s, canonical_scale))
                    + jnp.asarray(eps, s.dtype))
    return (jnp.clip(lvl, k_min, k_max) - k_min).astype(jnp.int32)


def multi_scale_roi_align(features: Sequence[jax.Array], rois: jax.Array,
                          output_size: int | Sequence[int], sampling_ratio: int,
                          scales: Sequence[float], canonical_scale: int = 224,
                          canonical_level: int = 4) -> jax.Array:
    """RoIAlign of each RoI on its FPN level.

    Args:
      features: per level ``[N, H_l, W_l, C]`` floating, finest first (same ``N`` and ``C``).
      rois: ``[K, 5]`` floating ``(batch_index, x1, y1, x2, y2)`` in image coordinates.
      output_size: ``(oh, ow)`` or an int.
      sampling_ratio: as in :func:`~jaxvision.ops.roi_align`.
      scales: per level spatial scale (powers of two, e.g. from :func:`infer_scale`).
      canonical_scale, canonical_level: level mapping, see :func:`map_levels`.

    Returns:
      ``[K, oh, ow, C]`` in the features' dtype.
    """
    op = "multi_scale_roi_align"
    if len(features) == 0 or len(features) != len(scales):
        raise ValueError(f"{op}: need one scale per feature level, got {len(features)} levels "
                         f"and {len(scales)} scales")
    for lvl, f in enumerate(features):
        check_roi_inputs(f, rois, f"{op} (level {lvl})")
    oh, ow = pair(output_size, "output_size", op=op)
    if len(features) == 1:
        return roi_align(features[0], rois, (oh, ow), scales[0], sampling_ratio)
    k_min = int(-np.log2(np.float32(scales[0])))
    k_max = int(-np.log2(np.float32(scales[-1])))
    levels = map_levels(lax.stop_gradient(rois[:, 1:]), k_min, k_max, canonical_scale,
                        canonical_level)
    out = None
    for lvl, (f, scale) in enumerate(zip(features, scales, strict=True)):
        member = levels == lvl
        # Non-members become a point at the origin: smallest window, cheapest branch.
        lvl_rois = jnp.where(member[:, None], rois, rois * jnp.asarray([1, 0, 0, 0, 0],
                                                                       rois.dtype))
        pooled = roi_align(f, lvl_rois, (oh, ow), scale, sampling_ratio)
        mask = member[:, None, None, None]
        out = jnp.where(mask, pooled, 0 if out is None else out)
    return out.astype(features[0].dtype)


class MultiScaleRoIAlign:
    """``torchvision.ops.MultiScaleRoIAlign`` for NHWC feature dicts.

    Args:
      featmap_names: keys of the feature dict to pool from (in the dict's order, as
        torchvision filters them).
      output_size: ``(oh, ow)`` or an int.
      sampling_ratio: as in :func:`~jaxvision.ops.roi_align`.
      canonical_scale, canonical_level: level mapping, see :func:`map_levels`.
    """

    def __init__(self, featmap_names: Sequence[str], output_size: int | Sequence[int],
                 sampling_ratio: int, *, canonical_scale: int = 224,
                 canonical_level: int = 4) -> None:
        self.featmap_names = list(featmap_names)
        self.output_size = pair(output_size, "output_size", op="MultiScaleRoIAlign")
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def scales(self, features: Sequence[jax.Array],
               image_shapes: Sequence[tuple[int, int]]) -> list[float]:
        """Per level scale from the largest image height (torchvision uses heights only)."""
        if not image_shapes:
            raise ValueError("MultiScaleRoIAlign: image_shapes must not be empty")
        max_h = max(int(s[0]) for s in image_shapes)
        return [infer_scale(f.shape[1], max_h) for f in features]

    def __call__(self, x: Mapping[str, jax.Array], boxes: Sequence[jax.Array] | jax.Array,
                 image_shapes: Sequence[tuple[int, int]]) -> jax.Array:
        """Pools the boxes of every image.

        Args:
          x: level name -> ``[N, H_l, W_l, C]`` floating features.
          boxes: per image ``[K_i, 4]`` floating (x1, y1, x2, y2) boxes in image coordinates
            (a list, or one ``[N, K, 4]`` array of padded boxes).
          image_shapes: static ``(height, width)`` of each image before the backbone.

        Returns:
          ``[sum K_i, oh, ow, C]``, the RoIs of image 0 first.
        """
        op = "MultiScaleRoIAlign"
        feats = [v for k, v in x.items() if k in self.featmap_names]
        if not feats:
            raise ValueError(f"{op}: none of {self.featmap_names} in the features "
                             f"{list(x.keys())}")
        if not isinstance(boxes, (list, tuple)):
            check_rank(boxes, 3, "boxes", op, layout="[N, K, 4] (x1, y1, x2, y2)")
            boxes = list(boxes)
        rois = []
        for i, b in enumerate(boxes):
            check_boxes(b, f"boxes[{i}]", op)
            rois.append(jnp.concatenate([jnp.full((b.shape[0], 1), i, b.dtype), b], axis=1))
        return multi_scale_roi_align(feats, jnp.concatenate(rois, axis=0), self.output_size,
                                     self.sampling_ratio, self.scales(feats, image_shapes),
                                     self.canonical_scale, self.canonical_level)

    def __repr__(self) -> str:
        return (f"MultiScaleRoIAlign(featmap_names={self.featmap_names}, "
                f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})")
