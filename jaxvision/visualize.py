"""Pictures of predictions, in one place: class colours, coloured label maps, overlays, boxes
and side-by-side panels, all on ``uint8`` numpy arrays ``[H, W, 3]`` (RGB).

Used by the segmentation task's TensorBoard images, ``jaxvision segment`` and (for boxes)
detection. Colours come from PASCAL VOC's palette (the bit-shuffle of the class id that the
VOC devkit's ``labelcolormap`` defines), so id ``i`` always gets the same colour:

* :func:`voc_palette` is VOC's palette itself (id 0, VOC's background, is black): a mask
  coloured with it looks like VOC's ``SegmentationClass`` PNGs.
* :func:`class_colors` skips VOC's black entry, so that no class is black and black means
  "no class" (ignored and padding pixels) in :func:`colorize`.

Boxes are drawn as torchvision's ``torchvision.utils.draw_bounding_boxes`` draws them
(coordinates truncated to ints, PIL's outline of ``width`` pixels inside the box, the label
in PIL's default font on a filled background at the top-left corner): with the same colours
the pixels are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["class_colors", "colorize", "draw_boxes", "overlay", "panel", "segmentation_panel",
           "voc_palette"]

BLACK = (0, 0, 0)


def voc_palette(n: int = 256) -> np.ndarray:
    """PASCAL VOC's colour map: the bits of id ``i`` dealt to R, G, B from the high bit down.

    Args:
      n: number of colours (ids ``0..n-1``); distinct for ``n <= 2**24``.
    Returns:
      [n, 3] uint8; row 0 is black (VOC's background), row 1 (128, 0, 0), row 255 (224,
      224, 192) (VOC's void colour).
    """
    if not 0 <= n <= 2 ** 24:
        raise ValueError(f"voc_palette: n must lie in 0..2**24, got {n}")
    ids = np.arange(n, dtype=np.int64)
    out = np.zeros((n, 3), np.int64)
    for j in range(8):
        for ch in range(3):
            out[:, ch] |= ((ids >> (3 * j + ch)) & 1) << (7 - j)
    return out.astype(np.uint8)


def class_colors(num_classes: int) -> np.ndarray:
    """Distinct colours of ``num_classes`` classes, none black: ``voc_palette(C + 1)[1:]``.

    Returns:
      [C, 3] uint8; class 0 is (128, 0, 0), class 1 (0, 128, 0), class 2 (128, 128, 0).
    """
    return voc_palette(num_classes + 1)[1:]


def _image3(image: np.ndarray, what: str) -> np.ndarray:
    """``image`` as [H, W, 3] uint8 (grey [H, W] or [H, W, 1] repeated)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{what}: image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"{what}: image must be [H, W, 3] (or grey [H, W], [H, W, 1]), got "
                         f"shape {image.shape}")
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def colorize(label: np.ndarray, num_classes: int, ignore_index: int | None = None,
             palette: np.ndarray | None = None) -> np.ndarray:
    """A label map in colour.

    Args:
      label: [H, W] integer class ids.
      num_classes: ids ``0..C-1`` are classes; any other value (and ``ignore_index``) is
        drawn black.
      ignore_index: an id drawn black even if below ``num_classes``; None: none.
      palette: [>= C, 3] uint8 colours of the ids; default :func:`class_colors` ``(C)``
        (no class black). Pass :func:`voc_palette` for VOC's colours.
    Returns:
      [H, W, 3] uint8.
    """
    label = np.asarray(label)
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"colorize: label must be an [H, W] integer array, got shape "
                         f"{label.shape} dtype {label.dtype}")
    colors = class_colors(num_classes) if palette is None else np.asarray(palette, np.uint8)
    if colors.ndim != 2 or colors.shape[0] < num_classes or colors.shape[1] != 3:
        raise ValueError(f"colorize: palette must be [>= {num_classes}, 3], got shape "
                         f"{colors.shape}")
    ids = label.astype(np.int64)
    known = (ids >= 0) & (ids < num_classes)
    if ignore_index is not None:
        known &= ids != ignore_index
    # Row C of the table is black: every unknown id lands there.
    table = np.concatenate([colors[:num_classes], np.zeros((1, 3), np.uint8)])
    return table[np.where(known, ids, num_classes)]


def overlay(image: np.ndarray, color: np.ndarray, alpha: float = 0.5,
            where: np.ndarray | None = None) -> np.ndarray:
    """``color`` blended over ``image``: ``round((1 - alpha) * image + alpha * color)``.

    Args:
      image: [H, W, 3] uint8 (grey [H, W] or [H, W, 1] is repeated to RGB).
      color: [H, W, 3] uint8, e.g. :func:`colorize`'s output.
      alpha: the colour's weight in [0, 1].
      where: [H, W] bool, blend only there (elsewhere the image is kept); None: everywhere.
    Returns:
      [H, W, 3] uint8 (computed in float32, rounded half to even).
    """
    image = _image3(image, "overlay")
    color = np.asarray(color)
    if color.shape != image.shape or color.dtype != np.uint8:
        raise ValueError(f"overlay: color must be uint8 of the image's shape {image.shape}, "
                         f"got {color.shape} {color.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must lie in [0, 1], got {alpha}")
    a = np.float32(alpha)
    mixed = (np.float32(1) - a) * image.astype(np.float32) + a * color.astype(np.float32)
    out = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    if where is not None:
        where = np.asarray(where, bool)
        if where.shape != image.shape[:2]:
            raise ValueError(f"overlay: where must be [H, W] = {image.shape[:2]}, got "
                             f"{where.shape}")
        out = np.where(where[..., None], out, image)
    return out


def _font(size: int | None) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # torchvision's default (PIL's built-in font), so labelled boxes match its pixels.
    return ImageFont.load_default() if size is None else ImageFont.load_default(size)


def _text_color(background: Sequence[int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    r, g, b = (int(v) for v in background)
    return BLACK if 0.299 * r + 0.587 * g + 0.114 * b >= 128 else (255, 255, 255)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray | None = None,
               scores: np.ndarray | None = None, class_names: Sequence[str] | None = None,
               *, count: int | None = None, valid: np.ndarray | None = None,
               palette: np.ndarray | None = None, width: int = 2,
               font_size: int | None = None) -> np.ndarray:
    """Boxes drawn on a copy of ``image``, each in its class's colour with its label text.

    Static-shape detection outputs are padded: only the first ``count`` rows, and of those
    the ``valid`` ones, are drawn.

    Args:
      image: [H, W, 3] uint8 (grey [H, W] or [H, W, 1] is repeated to RGB).
      boxes: [K, 4] float, (x1, y1, x2, y2) in ``image``'s pixels; truncated to ints as
        torchvision's ``draw_bounding_boxes`` does.
      labels: [K] int class ids, or None (one colour, no names).
      scores: [K] float, shown after the name with two decimals; None: not shown.
      class_names: names of the ids (``class_names[label]``); None: the ids.
      count: draw rows ``0..count-1`` only; None: all K.
      valid: [K] bool, draw only these rows; None: all.
      palette: [>= max(label) + 1, 3] uint8 colours by class id; default
        :func:`class_colors`.
      width: outline width in pixels (drawn inside the box).
      font_size: None: PIL's default font (torchvision's); else its scalable form at this
        size.
    Returns:
      [H, W, 3] uint8.
    """
    image = _image3(image, "draw_boxes")
    boxes = np.asarray(boxes, np.float64)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"draw_boxes: boxes must be [K, 4] (x1, y1, x2, y2), got shape "
                         f"{boxes.shape}")
    k = len(boxes)
    keep = np.ones(k, bool)
    if count is not None:
        if not 0 <= int(count) <= k:
            raise ValueError(f"draw_boxes: count must lie in 0..{k}, got {count}")
        keep[int(count):] = False
    for name, arr in (("labels", labels), ("scores", scores), ("valid", valid)):
        if arr is not None and np.shape(arr) != (k,):
            raise ValueError(f"draw_boxes: {name} must be [K] = [{k}], got shape "
                             f"{np.shape(arr)}")
    if valid is not None:
        keep &= np.asarray(valid, bool)
    rows = np.flatnonzero(keep)
    drawn = boxes[rows]
    if not np.all(np.isfinite(drawn)):
        raise ValueError("draw_boxes: boxes to draw must be finite (mask padding rows with "
                         "count or valid)")
    if np.any(drawn[:, 0] > drawn[:, 2]) or np.any(drawn[:, 1] > drawn[:, 3]):
        raise ValueError("draw_boxes: boxes must be (x1, y1, x2, y2) with x1 <= x2, y1 <= y2")
    ids = None if labels is None else np.asarray(labels, np.int64)[rows]
    if ids is not None and np.any(ids < 0):
        raise ValueError(f"draw_boxes: labels must be >= 0, got {ids.min()}")
    n_colors = 1 if ids is None or not len(ids) else int(ids.max()) + 1
    colors = class_colors(n_colors) if palette is None else np.asarray(palette, np.uint8)
    if colors.ndim != 2 or colors.shape[1] != 3 or len(colors) < n_colors:
        raise ValueError(f"draw_boxes: palette must be [>= {n_colors}, 3], got shape "
                         f"{colors.shape}")
    if class_names is not None and ids is not None and len(ids) and \
            int(ids.max()) >= len(class_names):
        raise ValueError(f"draw_boxes: label {int(ids.max())} has no name in class_names "
                         f"({len(class_names)} names)")

    pil = Image.fromarray(image, "RGB")
    draw = ImageDraw.Draw(pil)
    font = _font(font_size)
    for j, r in enumerate(rows):
        color = tuple(int(v) for v in colors[0 if ids is None else ids[j]])
        x1, y1, x2, y2 = (int(v) for v in boxes[r])  # toward zero, as torch's .to(int64)
        draw.rectangle((x1, y1, x2, y2), width=width, outline=color)
        parts = []
        if ids is not None:
            parts.append(class_names[ids[j]] if class_names is not None else str(ids[j]))
        if scores is not None:
            parts.append(f"{float(scores[r]):.2f}")
        if parts:
            text, margin = " ".join(parts), width + 1
            left, top, right, bottom = draw.textbbox((x1 + margin, y1 + margin), text,
                                                     font=font)
            draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=color)
            draw.text((x1 + margin, y1 + margin), text, fill=_text_color(color), font=font)
    return np.asarray(pil, np.uint8).copy()


def panel(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, gap: int = 4,
          fill: int = 255, font_size: int | None = None) -> np.ndarray:
    """Images side by side, left to right, on a ``fill`` background.

    Args:
      images: N arrays [H_i, W_i, 3] uint8 (grey [H, W] or [H, W, 1] repeated to RGB), top
        aligned.
      titles: N strings written (black, PIL's default font) in a strip above the images;
        None: no strip.
      gap: background pixels between images.
      fill: the background's grey level.
    Returns:
      [T + max H_i, sum W_i + gap * (N - 1), 3] uint8, with ``T`` the title strip's
      height (0 without titles); image ``i`` starts at row ``T`` and column ``sum_{j<i}
      (W_j + gap)``.
    """
    arrays = [_image3(im, "panel") for im in images]
    if not arrays:
        raise ValueError("panel: no images")
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"panel: {len(titles)} titles for {len(arrays)} images")
    font = _font(font_size)
    strip = 0
    if titles is not None:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        strip = max(probe.textbbox((0, 0), t or " ", font=font)[3] for t in titles) + 4
    height = strip + max(a.shape[0] for a in arrays)
    width = sum(a.shape[1] for a in arrays) + gap * (len(arrays) - 1)
    out = np.full((height, width, 3), fill, np.uint8)
    x = 0
    for a in arrays:
        out[strip:strip + a.shape[0], x:x + a.shape[1]] = a
        x += a.shape[1] + gap
    if titles is not None:
        pil = Image.fromarray(out, "RGB")
        draw = ImageDraw.Draw(pil)
        x = 0
        for a, t in zip(arrays, titles, strict=True):
            draw.text((x + 2, 2), t, fill=BLACK, font=font)
            x += a.shape[1] + gap
        out = np.asarray(pil, np.uint8).copy()
    return out


def segmentation_panel(image: np.ndarray, predicted: np.ndarray, num_classes: int,
                       truth: np.ndarray | None = None, ignore_index: int | None = None,
                       alpha: float = 0.5, palette: np.ndarray | None = None) -> np.ndarray:
    """``image | truth | prediction``: the image, then each label map as a coloured
    :func:`overlay` on it (pixels of no class, e.g. ``ignore_index``, left as the image).

    Args:
      image: [H, W, 3] uint8 (grey repeated).
      predicted: [H, W] integer class ids.
      num_classes, ignore_index, palette: as in :func:`colorize`.
      truth: [H, W] integer class ids, or None (the panel is ``image | prediction``).
      alpha: the colours' weight in the overlays.
    Returns:
      [T + H, 2 W + 4 or 3 W + 8, 3] uint8 (:func:`panel` with titles).
    """
    image = _image3(image, "segmentation_panel")
    maps = ([("truth", truth)] if truth is not None else []) + [("prediction", predicted)]
    pictures, titles = [image], ["image"]
    for title, label in maps:
        label = np.asarray(label)
        color = colorize(label, num_classes, ignore_index, palette)
        known = (label >= 0) & (label < num_classes)
        if ignore_index is not None:
            known &= label != ignore_index
        pictures.append(overlay(image, color, alpha, where=known))
        titles.append(title)
    return panel(pictures, titles)
