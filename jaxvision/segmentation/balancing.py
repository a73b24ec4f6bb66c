"""Class balancing for semantic segmentation: SegNet's median-frequency weights.

Badrinarayanan, Kendall, Cipolla, "SegNet" (TPAMI 2017), section 3.2: each class's loss is
weighted by ``median(freq) / freq_c``, where ``freq_c`` is the number of pixels of class ``c``
divided by the total number of pixels in the images where ``c`` is present. Frequent classes
(road, sky) get weights below 1, rare ones (pole, sign) above.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["class_pixel_counts", "median_frequency_weights"]


def class_pixel_counts(masks: Iterable[np.ndarray], num_classes: int,
                       ignore_index: int | None = 255) -> tuple[np.ndarray, np.ndarray]:
    """Per class, its pixels and the pixels of the images it appears in.

    Args:
      masks: label images, each ``[H, W]`` integer class ids (sizes may differ).
      num_classes: C; values outside ``0..C-1`` other than ``ignore_index`` raise.
      ignore_index: the void value (not a class; its pixels still count in an image's total,
        as they are pixels of the image), or None.
    Returns:
      ``(pixels [C] int64, image_pixels [C] int64)``.
    """
    c = int(num_classes)
    pixels = np.zeros(c, np.int64)
    image_pixels = np.zeros(c, np.int64)
    for k, m in enumerate(masks):
        m = np.asarray(m)
        if m.ndim != 2:
            raise ValueError(f"class_pixel_counts: mask {k} must be [H, W], got shape {m.shape}")
        values = m.astype(np.int64).ravel()
        if ignore_index is not None:
            values = values[values != ignore_index]
        if values.size and (values.min() < 0 or values.max() >= c):
            raise ValueError(f"class_pixel_counts: mask {k} holds values in {values.min()}.."
                             f"{values.max()}, outside 0..{c - 1} (and not ignore_index="
                             f"{ignore_index})")
        counts = np.bincount(values, minlength=c)
        pixels += counts
        image_pixels[counts > 0] += m.size
    return pixels, image_pixels


def median_frequency_weights(masks: Iterable[np.ndarray], num_classes: int,
                             ignore_index: int | None = 255) -> np.ndarray:
    """SegNet's median-frequency class weights of the label images ``masks``.

    ``weight_c = median(freq) / freq_c`` with ``freq_c = pixels of c / pixels of the images
    where c is present``; the median is over the classes present. A class absent from every
    mask has no frequency: its weight is 0 (it has no pixel to weigh anyway).

    Args:
      masks, num_classes, ignore_index: as :func:`class_pixel_counts`.
    Returns:
      ``[C] float32``.
    Raises:
      ValueError: when no mask has a pixel of any class.
    """
    pixels, image_pixels = class_pixel_counts(masks, num_classes, ignore_index)
    present = pixels > 0
    if not present.any():
        raise ValueError("median_frequency_weights: the masks hold no pixel of any class "
                         "(all void, or no masks)")
    freq = np.zeros(len(pixels), np.float64)
    freq[present] = pixels[present] / image_pixels[present]
    weights = np.zeros(len(pixels), np.float64)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights.astype(np.float32)
