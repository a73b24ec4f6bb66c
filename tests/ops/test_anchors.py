"""Parity of :mod:`jaxvision.ops.anchors` with torchvision's ``AnchorGenerator``."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from jaxvision.ops import AnchorGenerator


@pytest.mark.parametrize("sizes, ratios, image, grids", [
    (((128, 256, 512),), ((0.5, 1.0, 2.0),), (800, 1088), [(50, 68)]),
    (((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5, (800, 1216),
     [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)]),
    (((23, 45.5), (37,)), ((0.3, 1.7, 3.0), (0.25,)), (97, 131), [(13, 17), (4, 9)]),
    ((16, 33), (0.5, 1.0), (64, 80), [(8, 10), (3, 4)]),  # flat form; stride from //
])
def test_matches_torchvision(sizes, ratios, image, grids):
    tv = TVAnchorGenerator(sizes, ratios)
    images = ImageList(torch.zeros(2, 3, *image), [image, image])
    feats = [torch.zeros(2, 4, *g) for g in grids]
    ref = tv(images, feats)
    gen = AnchorGenerator(sizes, ratios)
    out = jax.jit(gen)(np.zeros((2, *image, 3), np.float32),
                       [np.zeros((2, *g, 4), np.float32) for g in grids])
    assert out.shape == (2, *ref[0].shape)
    for i in range(2):
        np.testing.assert_array_equal(np.asarray(out[i]), ref[i].numpy())
    assert gen.num_anchors_per_location() == tv.num_anchors_per_location()


def test_errors():
    gen = AnchorGenerator()
    with pytest.raises(ValueError, match="rank 4"):
        gen(np.zeros((8, 8, 3), np.float32), [np.zeros((1, 2, 2, 4), np.float32)])
    with pytest.raises(ValueError, match="levels"):
        gen.anchors((64, 64), [(4, 4), (2, 2)])


class TorchvisionAnchorCases(chex.TestCase):
    """test_models_detection_anchor_utils.py's ``Tester`` cases."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_anchor_generator(self):
        # One size (10), one ratio, a 15 x 15 image with 3 x 3 features: nine anchors.
        gen = AnchorGenerator(((10,),), ((1,),))
        anchors = self.variant(gen)(np.zeros((2, 15, 15, 3), np.float32),
                                    [np.zeros((2, 3, 3, 8), np.float32)])
        expected = np.array([[-5.0, -5.0, 5.0, 5.0], [0.0, -5.0, 10.0, 5.0],
                             [5.0, -5.0, 15.0, 5.0], [-5.0, 0.0, 5.0, 10.0],
                             [0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0],
                             [-5.0, 5.0, 5.0, 15.0], [0.0, 5.0, 10.0, 15.0],
                             [5.0, 5.0, 15.0, 15.0]], np.float32)
        assert sum(3 * 3 * a for a in gen.num_anchors_per_location()) == 9
        chex.assert_shape(anchors, (2, 9, 4))
        np.testing.assert_array_equal(np.asarray(anchors[0]), expected)
        np.testing.assert_array_equal(np.asarray(anchors[1]), expected)

    def test_incorrect_anchors(self):
        # Two size tuples for one feature map, and a [1, 50] "feature map": refused.
        gen = AnchorGenerator(((2, 4, 8), (32, 8)), (0.5, 1.0))
        with pytest.raises(ValueError, match="rank 4"):
            gen(np.zeros((1, 800, 800, 3), np.float32), [np.zeros((1, 50), np.float32)])
        with pytest.raises(ValueError, match="2 levels configured, got 1"):
            gen(np.zeros((1, 800, 800, 3), np.float32), [np.zeros((1, 50, 50, 8), np.float32)])


def test_x64_matches_torchvision_float64(x64):
    sizes, ratios = ((23, 45.5), (37,)), ((0.3, 1.7, 3.0), (0.25,))
    image, grids = (97, 131), [(13, 17), (4, 9)]
    tv = TVAnchorGenerator(sizes, ratios)
    images = ImageList(torch.zeros(1, 3, *image, dtype=torch.float64), [image])
    ref = tv(images, [torch.zeros(1, 4, *g, dtype=torch.float64) for g in grids])[0]
    out = AnchorGenerator(sizes, ratios)(np.zeros((1, *image, 3)),
                                         [np.zeros((1, *g, 4)) for g in grids])
    assert out.dtype == np.float64 and ref.dtype == torch.float64
    np.testing.assert_array_equal(np.asarray(out[0]), ref.numpy())
