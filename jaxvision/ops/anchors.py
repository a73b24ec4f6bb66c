"""Anchor boxes over feature grids (Ren et al., "Faster R-CNN", NeurIPS 2015).

Exact to ``torchvision.models.detection.anchor_utils.AnchorGenerator``: per level, the cell
anchors are ``round([-w, -h, w, h] / 2)`` with ``h = sqrt(ratio) * size`` and ``w = size /
sqrt(ratio)`` computed in float32 (aspect ratio = height / width) and ``round`` half to even
(``torch.round``); the anchors of grid cell ``(i, j)`` are the cell anchors shifted by ``(j *
stride_w, i * stride_h)``, cells in row-major order, the cell anchors innermost; the stride
of a level is ``image_size // grid_size`` per axis. Anchors depend only on static shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxvision.checks import check_rank

__all__ = ["AnchorGenerator", "cell_anchors", "grid_anchors"]


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float],
                 dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """``[len(aspect_ratios) * len(sizes), 4]`` anchors centred on 0, ratio-major order."""
    scales = jnp.asarray(sizes, dtype)
    ratios = jnp.asarray(aspect_ratios, dtype)
    h_ratios = jnp.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return jnp.round(jnp.stack([-ws, -hs, ws, hs], axis=1) / 2)


def grid_anchors(base: jax.Array, grid_size: tuple[int, int], stride: tuple[int, int]
                 ) -> jax.Array:
    """Shifts ``base: [A, 4]`` to every cell of a ``grid_size`` grid.

    Returns:
      ``[gh * gw * A, 4]`` (x1, y1, x2, y2) anchors in ``base.dtype``.
    """
    gh, gw = grid_size
    sh, sw = stride
    shift_x = jnp.arange(gw, dtype=jnp.int32) * sw
    shift_y = jnp.arange(gh, dtype=jnp.int32) * sh
    sy, sx = jnp.meshgrid(shift_y, shift_x, indexing="ij")
    sx, sy = sx.reshape(-1), sy.reshape(-1)
    shifts = jnp.stack((sx, sy, sx, sy), axis=1).astype(base.dtype)
    return (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)


class AnchorGenerator:
    """Anchors for a set of feature maps, like torchvision's ``AnchorGenerator``.

    Args:
      sizes: per level a tuple of anchor sizes (square root of the area), e.g.
        ``((32,), (64,), (128,), (256,), (512,))`` for an FPN, or a flat tuple (one size per
        level).
      aspect_ratios: per level a tuple of height / width ratios, or one tuple for all levels.
    """

    def __init__(self, sizes: Sequence = ((128, 256, 512),),
                 aspect_ratios: Sequence = ((0.5, 1.0, 2.0),)) -> None:
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (aspect_ratios,) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"AnchorGenerator: one aspect-ratio tuple per size tuple, got "
                             f"{len(sizes)} and {len(aspect_ratios)}")
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(a) for a in aspect_ratios)

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios, strict=True)]

    def anchors(self, image_size: tuple[int, int], grid_sizes: Sequence[tuple[int, int]],
                dtype: jnp.dtype = jnp.float32) -> jax.Array:
        """All levels' anchors for a (padded) ``image_size = (H, W)`` batch.

        Returns:
          ``[sum_l gh_l * gw_l * A_l, 4]`` (x1, y1, x2, y2) anchors, level by level.
        """
        if len(grid_sizes) != len(self.sizes):
            raise ValueError(f"AnchorGenerator: {len(self.sizes)} levels configured, got "
                             f"{len(grid_sizes)} feature maps")
        out = []
        for (gh, gw), size, ratios in zip(grid_sizes, self.sizes, self.aspect_ratios,
                                          strict=True):
            stride = (image_size[0] // gh, image_size[1] // gw)
            out.append(grid_anchors(cell_anchors(size, ratios, dtype), (gh, gw), stride))
        return jnp.concatenate(out, axis=0)

    def __call__(self, images: jax.Array, feature_maps: Sequence[jax.Array]) -> jax.Array:
        """Anchors per image for NHWC ``images [N, H, W, C]`` and ``feature_maps [N, h, w, C]``.

        Returns:
          ``[N, A_total, 4]`` in the feature maps' dtype (the same anchors for every image,
          as torchvision's list of identical tensors).
        """
        check_rank(images, 4, "images", "AnchorGenerator", layout="[N, H, W, C]")
        for i, f in enumerate(feature_maps):
            check_rank(f, 4, f"feature_maps[{i}]", "AnchorGenerator", layout="[N, h, w, C]")
        a = self.anchors(tuple(images.shape[1:3]), [tuple(f.shape[1:3]) for f in feature_maps],
                         feature_maps[0].dtype)
        return jnp.broadcast_to(a, (images.shape[0], *a.shape))

    def __repr__(self) -> str:
        return f"AnchorGenerator(sizes={self.sizes}, aspect_ratios={self.aspect_ratios})"
