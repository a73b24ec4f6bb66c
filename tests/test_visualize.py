"""``jaxvision.visualize``: VOC's palette, coloured label maps, overlays, boxes drawn as
torchvision draws them, panels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.utils import draw_bounding_boxes

from jaxvision.visualize import (
    _text_color,
    class_colors,
    colorize,
    draw_boxes,
    overlay,
    panel,
    segmentation_panel,
    voc_palette,
)


def test_voc_palette_is_the_devkits():
    p = voc_palette(256)
    assert p.shape == (256, 3) and p.dtype == np.uint8
    # VOC devkit labelcolormap: background, aeroplane, bicycle, ..., person, void.
    assert p[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert p[15].tolist() == [192, 128, 128] and p[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in p}) == 256
    assert class_colors(3).tolist() == p[1:4].tolist()
    assert not np.any(np.all(class_colors(255) == 0, axis=-1))  # no class is black


def test_colorize_paints_classes_and_blacks_out_ignore_and_unknown_ids():
    label = np.array([[0, 1, 2], [11, 255, 3]], np.uint8)
    out = colorize(label, num_classes=3, ignore_index=11)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    c = class_colors(3)
    assert out[0].tolist() == c.tolist()
    assert out[1].tolist() == [[0, 0, 0]] * 3  # ignore, 255 and 3 (>= num_classes)
    # VOC's own palette on request; a negative id is unknown, too.
    voc = colorize(np.array([[0, 15, -1]]), 21, palette=voc_palette(21))
    assert voc[0].tolist() == [[0, 0, 0], [192, 128, 128], [0, 0, 0]]
    with pytest.raises(ValueError, match="integer"):
        colorize(np.zeros((2, 2), np.float32), 3)
    with pytest.raises(ValueError, match="palette"):
        colorize(label, 3, palette=voc_palette(2))


def test_overlay_arithmetic_and_where():
    image = np.array([[[100, 0, 255], [101, 10, 3]]], np.uint8)
    color = np.array([[[200, 255, 0], [200, 20, 4]]], np.uint8)
    assert overlay(image, color, 0.5).tolist() == [[[150, 128, 128], [150, 15, 4]]]  # half even
    assert overlay(image, color, 0.25).tolist() == [[[125, 64, 191], [126, 12, 3]]]
    assert overlay(image, color, 0.0).tolist() == image.tolist()
    assert overlay(image, color, 1.0).tolist() == color.tolist()
    kept = overlay(image, color, 0.5, where=np.array([[False, True]]))
    assert kept[0, 0].tolist() == [100, 0, 255] and kept[0, 1].tolist() == [150, 15, 4]
    grey = overlay(np.full((1, 2), 100, np.uint8), color, 0.5)
    assert grey[0, 0].tolist() == [150, 178, 50]  # 177.5 to even
    with pytest.raises(ValueError, match="shape"):
        overlay(image, color[:, :1], 0.5)
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, color, 1.5)


def test_draw_boxes_outline_has_the_class_colour_and_matches_torchvision():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxes = np.array([[5.7, 6.2, 40.9, 30.1], [20, 25, 79, 59], [1, 1, 9, 9],
                      [np.nan, 0, 0, 0]], np.float32)
    labels, scores = np.array([1, 3, 2, 0]), np.array([0.91, 0.456, 0.5, 0.0])
    names = ["bg", "cell", "car", "dog"]
    valid = np.array([True, True, False, True])
    out = draw_boxes(image, boxes, labels, scores, names, count=3, valid=valid)
    colors = class_colors(4)
    # A pixel on the left edge of box 1, under its label: the class colour; the input is
    # untouched, the inside of box 0 far from its label and the skipped box 2 unchanged.
    assert out[50, 20].tolist() == colors[3].tolist()
    assert out[20, 5].tolist() == colors[1].tolist()
    assert out[27, 12].tolist() == image[27, 12].tolist()
    assert np.array_equal(out[0:12, 0:5], image[0:12, 0:5])
    # torchvision's draw_bounding_boxes with the same colours, labels and fill: same pixels.
    shown = [0, 1]
    text = [f"{names[labels[i]]} {scores[i]:.2f}" for i in shown]
    ref = draw_bounding_boxes(torch.from_numpy(image).permute(2, 0, 1),
                              torch.from_numpy(boxes[shown]), labels=text,
                              colors=[tuple(int(v) for v in colors[labels[i]]) for i in shown],
                              width=2, fill_labels=True,
                              label_colors=[_text_color(colors[labels[i]]) for i in shown])
    np.testing.assert_array_equal(out, ref.permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="finite"):
        draw_boxes(image, boxes, labels)
    with pytest.raises(ValueError, match="x1 <= x2"):
        draw_boxes(image, np.array([[5, 5, 1, 9]]))
    with pytest.raises(ValueError, match="no name"):
        draw_boxes(image, boxes[:2], labels[:2], class_names=["a", "b"])


def test_panel_layout_and_titles():
    a = np.zeros((4, 5, 3), np.uint8)
    b = np.full((6, 3), 7, np.uint8)  # grey, taller
    out = panel([a, b], gap=2)
    assert out.shape == (6, 10, 3)
    assert out[:4, :5].tolist() == a.tolist() and np.all(out[:, 7:] == 7)
    assert np.all(out[:, 5:7] == 255) and np.all(out[4:, :5] == 255)
    titled = panel([a, b], titles=["image", "truth"], gap=2)
    strip = titled.shape[0] - 6
    assert strip > 4 and np.array_equal(titled[strip:], out)
    assert np.any(titled[:strip] < 255)  # the title text
    with pytest.raises(ValueError, match="titles"):
        panel([a], titles=["x", "y"])


def test_segmentation_panel_overlays_classes_and_leaves_ignored_pixels():
    image = np.full((2, 3, 3), 100, np.uint8)
    truth = np.array([[0, 1, 9], [1, 0, 9]], np.uint8)  # 9: ignored
    predicted = np.array([[1, 1, 0], [1, 0, 0]])
    out = segmentation_panel(image, predicted, 2, truth=truth, ignore_index=9)
    strip = out.shape[0] - 2
    assert out.shape[1] == 3 * 3 + 2 * 4
    t, p = out[strip:, 7:10], out[strip:, 14:17]
    assert np.array_equal(out[strip:, :3], image)
    assert t[0, 0].tolist() == overlay(image, colorize(truth, 2), 0.5)[0, 0].tolist()
    assert t[0, 2].tolist() == [100, 100, 100]  # ignored: the photo, not black
    assert p[0, 2].tolist() == [114, 50, 50]  # class 0 (128, 0, 0) over 100, alpha 0.5
