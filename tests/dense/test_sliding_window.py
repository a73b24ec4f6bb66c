"""Sliding-window detection: the convolutional pass equals naive crop-and-classify."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.dense.sliding_window import (
    Detections,
    dense_window_scores,
    detect,
    grid_size,
    naive_window_scores,
    precision_recall,
    select,
    window_boxes,
)
from jaxvision.models import convolutionize, get_model


@pytest.fixture(scope="module")
def lenet11():
    model = get_model("lenet5", num_classes=11)
    v = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    fcn, fv = convolutionize(model, v, (28, 28, 1))
    return model, v, fcn, fv


def test_dense_scores_equal_naive_crops(lenet11):
    model, v, fcn, fv = lenet11
    image = jax.random.uniform(jax.random.key(1), (84, 100, 1))
    naive = naive_window_scores(jax.jit(lambda x: model.apply(v, x)), image, 28, 4,
                                batch_size=64)
    dense = dense_window_scores(jax.jit(lambda x: fcn.apply(fv, x)), image, 28, 4)
    assert naive.shape == dense.shape == (15, 19, 11)
    np.testing.assert_allclose(np.asarray(dense), np.asarray(naive), atol=1e-5)
    with pytest.raises(ValueError, match="network stride"):
        dense_window_scores(jax.jit(lambda x: fcn.apply(fv, x)), image, 28, 8)
    # A coarser stride (a multiple of the network's) keeps every other output.
    naive8 = naive_window_scores(jax.jit(lambda x: model.apply(v, x)), image, 28, 8,
                                 batch_size=64)
    dense8 = dense_window_scores(jax.jit(lambda x: fcn.apply(fv, x)), image, 28, 8,
                                 network_stride=4)
    assert dense8.shape == (8, 10, 11)
    np.testing.assert_allclose(np.asarray(dense8), np.asarray(naive8), atol=1e-5)
    with pytest.raises(ValueError, match="not a multiple"):
        dense_window_scores(jax.jit(lambda x: fcn.apply(fv, x)), image, 28, 6,
                            network_stride=4)


def test_window_geometry():
    assert grid_size((84, 100), 28, 4) == (15, 19)
    b = np.asarray(window_boxes((2, 3), 28, 4, scale=0.5))
    np.testing.assert_array_equal(b[0], [0, 0, 56, 56])
    np.testing.assert_array_equal(b[4], [8, 8, 64, 64])  # row 1, col 1
    with pytest.raises(ValueError, match="smaller than"):
        grid_size((20, 40), 28, 4)


def test_select_thresholds_and_suppresses():
    boxes = jnp.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.]])
    scores = jnp.array([0.9, 0.8, 0.7, 0.3])
    labels = jnp.array([1, 1, 2, 3], jnp.int32)
    d = select(boxes, scores, labels, 0.5, 0.5, 5)
    assert int(d.count) == 2
    np.testing.assert_array_equal(np.asarray(d.labels), [1, 2, -1, -1, -1])
    np.testing.assert_allclose(np.asarray(d.scores)[:2], [0.9, 0.7])
    tp, n, g = precision_recall(d, np.array([[0, 0, 10, 10], [50, 52, 60, 62.]]),
                                np.array([1, 2]), 2)
    assert (tp, n, g) == (2, 2, 2)
    tp, _, _ = precision_recall(d, np.array([[0, 0, 10, 10.]]), np.array([7]), 1)
    assert tp == 0
    # Class-agnostic NMS: the label-3 box on top of the label-1 box goes too.
    boxes = boxes.at[3].set(jnp.array([0, 0, 10, 9.]))
    scores = scores.at[3].set(0.6)
    per_class = select(boxes, scores, labels, 0.5, 0.5, 5)
    agnostic = select(boxes, scores, labels, 0.5, 0.5, 5, class_agnostic=True)
    assert int(per_class.count) == 3 and int(agnostic.count) == 2
    np.testing.assert_array_equal(np.asarray(agnostic.labels)[:2], [1, 2])


def test_detect_shapes_and_scales(lenet11):
    _, _, fcn, fv = lenet11
    image = jax.random.uniform(jax.random.key(2), (96, 96, 1))
    dets = detect(jax.jit(lambda x: fcn.apply(fv, x)), image, window=28, stride=4,
                  scales=(1.0, 0.5), background=10, score_threshold=0.0, max_detections=50)
    assert isinstance(dets, Detections)
    assert dets.boxes.shape == (50, 4) and dets.labels.shape == (50,)
    n = int(dets.count)
    assert 0 < n <= 50
    labels = np.asarray(dets.labels)
    assert np.all(labels[:n] != 10) and np.all(labels[n:] == -1)
    sides = np.asarray(dets.boxes[:n, 2] - dets.boxes[:n, 0])
    assert set(np.round(sides).astype(int)) <= {28, 56}
    assert np.all(np.diff(np.asarray(dets.scores[:n])) <= 1e-6)
