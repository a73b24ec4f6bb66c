"""Tests of :mod:`jaxvision.checks`, the argument checks shared by the package."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.checks import check_boxes, check_images, pair


@pytest.mark.parametrize("value, expected", [
    (3, (3, 3)), ((2, 5), (2, 5)), ([4, 1], (4, 1)), (np.int64(7), (7, 7)),
    ((np.int32(2), 3), (2, 3)), (jnp.asarray([3, 4]), (3, 4)),
])
def test_pair_accepts_ints_and_pairs(value, expected):
    out = pair(value, "kernel_size")
    assert out == expected and all(type(v) is int for v in out)


@pytest.mark.parametrize("value, error", [
    ((1, 2, 3), TypeError), (2.0, TypeError), ((2, 2.5), TypeError), ("ab", TypeError),
    (True, TypeError), (None, TypeError), (0, ValueError), ((3, 0), ValueError),
])
def test_pair_refuses_with_the_argument_name(value, error):
    with pytest.raises(error, match=r"crop: size must be an int >= 1 or a pair"):
        pair(value, "size", op="crop")


def test_pair_minimum():
    assert pair(0, "padding", minimum=0) == (0, 0)
    assert pair((-1, 2), "offset", minimum=None) == (-1, 2)
    with pytest.raises(ValueError, match="padding must be an int >= 0"):
        pair((1, -1), "padding", minimum=0)


def test_pair_at_trace_time():
    # Static sizes are read while tracing; a traced value is refused clearly.
    with pytest.raises(TypeError, match="size must be"):
        jax.jit(lambda s: pair(s, "size")).trace(jnp.int32(3))


@pytest.mark.parametrize("x, error, match", [
    ([[0.0]], TypeError, "expects an array of images"),
    (np.zeros((8, 8, 3), np.float32), ValueError, "rank 4"),
    (np.zeros((1, 8, 8, 3), np.uint8), TypeError, "floating-point"),
    (np.zeros((1, 3, 8, 8), np.float32), ValueError, "looks like NCHW"),
    (np.zeros((1, 4, 4, 3), np.float32), ValueError, "at least 5x5"),
])
def test_check_images(x, error, match):
    with pytest.raises(error, match=match):
        check_images(x, model="net", min_size=5)
    check_images(np.zeros((1, 5, 6, 3), np.float32), model="net", min_size=5)


def test_check_boxes_integer_ok():
    boxes = np.zeros((2, 4), np.int32)
    check_boxes(boxes, "boxes", "box_area", integer_ok=True)
    with pytest.raises(TypeError, match="box_area: boxes must be floating"):
        check_boxes(boxes, "boxes", "box_area")
    with pytest.raises(ValueError, match=r"4 entries in its last axis \(x1, y1, x2, y2\)"):
        check_boxes(np.zeros((2, 5), np.float32), "boxes", "box_area")
