"""OverFeat's dense multi-scale evaluation (Sermanet et al., ICLR 2014, section 3.3).

A convolutionized classifier is run over an image pyramid; at each scale the last max
pooling is evaluated at every offset ``(dx, dy)`` in ``0..k-1`` ("offset max-pooling"), the
classifier slides over each pooled map, and the maps are interleaved into one class map whose
stride is ``k`` times finer. The image-level prediction takes, per class, the spatial max of
each scale's (and flip's) map and averages those vectors.

:func:`jaxvision.models.convolutionize` with ``offset_pooling=True`` computes the interleaved
map in one pass (dense pooling + a dilated first classifier convolution);
:func:`offset_max_pool` and :func:`interleave` are the literal per-offset procedure of the paper,
kept as its executable definition (and the test of the fast form).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models import layers
from jaxvision.models.convolutionize import FullyConvolutional

# The paper's Table 5: the 6 input sizes (rows x columns) of the accurate model's pyramid.
OVERFEAT_SCALES: tuple[tuple[int, int], ...] = (
    (245, 245), (281, 317), (317, 389), (389, 461), (425, 497), (461, 569))


def offset_max_pool(x: jax.Array, k: int) -> dict[tuple[int, int], jax.Array]:
    """Non-overlapping ``k x k`` max pooling of ``x`` shifted by every ``(dx, dy)`` in ``0..k-1``.

    Args:
      x: ``[N, H, W, C]``, the unpooled last conv map.
    Returns:
      ``{(dx, dy): [N, (H - dy - k) // k + 1, (W - dx - k) // k + 1, C]}``.
    """
    return {(dx, dy): layers.max_pool(x[:, dy:, dx:, :], k, k)
            for dy in range(k) for dx in range(k)}


def interleave(maps: dict[tuple[int, int], jax.Array], k: int) -> jax.Array:
    """Interleaves per-offset maps: ``out[:, i*k + dy, j*k + dx] = maps[(dx, dy)][:, i, j]``.

    Maps are cropped to the smallest size among the offsets (the paper's layout).
    Returns ``[N, k*h, k*w, C]``.
    """
    h = min(m.shape[1] for m in maps.values())
    w = min(m.shape[2] for m in maps.values())
    n, c = next(iter(maps.values())).shape[0], next(iter(maps.values())).shape[-1]
    grid = jnp.stack([jnp.stack([maps[(dx, dy)][:, :h, :w] for dx in range(k)], axis=3)
                      for dy in range(k)], axis=2)  # [N, h, k(dy), w, k(dx), C]
    return grid.reshape(n, h * k, w * k, c)


def spatial_table(model: nn.Module, variables: Any,
                  scales: Sequence[tuple[int, int]] = OVERFEAT_SCALES) -> list[dict[str, Any]]:
    """The paper's Table 5 for ``model`` (an OverFeat net), computed from shapes alone.

    Returns one row per scale: ``input``, ``prepool`` (last conv map), ``postpool`` (per
    offset), ``classifier`` (per-offset map size), ``class_map`` (interleaved) as (h, w).
    """
    spec = model.convolutionize_spec
    k, s = spec.last_pool
    fh, fw = _classifier_window(model, variables)
    rows = []
    for hw in scales:
        x = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
        pre = jax.eval_shape(
            lambda v, x: model.apply(v, x, last_pool=False, method="features"), variables, x)
        ph, pw = pre.shape[1:3]
        post = ((ph - k) // s + 1, (pw - k) // s + 1)  # offset 0; others as given by the paper
        cls = (post[0] - fh + 1, post[1] - fw + 1)
        rows.append({"input": tuple(hw), "prepool": (ph, pw), "postpool": post,
                     "offsets": (s, s), "classifier": cls,
                     "class_map": (cls[0] * s, cls[1] * s)})
    return rows


def _classifier_window(model: nn.Module, variables: Any) -> tuple[int, int]:
    x = jax.ShapeDtypeStruct((1, *model.default_input_shape), jnp.float32)
    return jax.eval_shape(lambda v, x: model.apply(v, x, method="features"),
                          variables, x).shape[1:3]


def multiscale_classify(
    fcn: FullyConvolutional, variables: Any, images: jax.Array,
    scales: Sequence[tuple[int, int]] = OVERFEAT_SCALES, *, flip: bool = True,
    apply_fn: Callable[..., jax.Array] | None = None,
) -> jax.Array:
    """OverFeat's image-level prediction from dense multi-scale evaluation.

    Args:
      fcn, variables: a convolutionized classifier (ideally with offset pooling).
      images: ``[N, H, W, 3] float32``, normalized as the classifier expects.
      scales: the pyramid's ``(height, width)`` sizes (the paper's 6 by default).
      flip: also evaluate the horizontally flipped images (the paper's 12 views).
      apply_fn: a jitted ``fcn.apply`` to reuse across calls (one compile per scale).

    Returns:
      ``[N, num_classes]`` class probabilities: per view the spatial max of the softmax
      class map, averaged over views.
    """
    apply_fn = apply_fn or jax.jit(lambda v, x: fcn.apply(v, x, train=False))
    views = []
    for hw in scales:
        resized = jax.image.resize(images, (images.shape[0], *hw, images.shape[-1]), "bilinear")
        for img in (resized, resized[:, :, ::-1]) if flip else (resized,):
            probs = jax.nn.softmax(apply_fn(variables, img), axis=-1)
            views.append(jnp.max(probs, axis=(1, 2)))
    return jnp.mean(jnp.stack(views), axis=0)
