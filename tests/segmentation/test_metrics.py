"""Confusion matrix and segmentation metrics against torchvision's reference formula
(``references/segmentation/utils.py``: ``ConfusionMatrix.update`` and ``compute``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from PIL import Image

from jaxvision.data.segmentation import read_class_file
from jaxvision.segmentation import ConfusionMatrix, confusion_matrix, segmentation_metrics


def _torchvision_reference(target: np.ndarray, pred: np.ndarray, n: int):
    """torchvision's ``ConfusionMatrix``: ``update(target.flatten(), pred.flatten())`` then
    ``compute()``, as its segmentation reference's ``evaluate`` calls them."""
    a = torch.as_tensor(target.astype(np.int64)).flatten()
    b = torch.as_tensor(pred.astype(np.int64)).flatten()
    mat = torch.zeros((n, n), dtype=torch.int64)
    k = (a >= 0) & (a < n)
    inds = n * a[k].to(torch.int64) + b[k]
    mat += torch.bincount(inds, minlength=n**2).reshape(n, n)
    h = mat.float()
    acc_global = torch.diag(h).sum() / h.sum()
    acc = torch.diag(h) / h.sum(1)
    iu = torch.diag(h) / (h.sum(1) + h.sum(0) - torch.diag(h))
    return mat.numpy(), acc_global.item(), acc.numpy(), iu.numpy()


def _random(seed: int, shape=(3, 7, 9), c: int = 5, void: float = 0.1):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, c, shape).astype(np.uint8)
    target[rng.uniform(size=shape) < void] = 255
    pred = np.where(rng.uniform(size=shape) < 0.6, target % c, rng.integers(0, c, shape))
    return pred.astype(np.int32), target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_torchvisions_reference_on_random_inputs(seed):
    c = 5
    pred, target = _random(seed, c=c)
    conf = confusion_matrix(pred, target, c)
    mat, acc_global, acc, iu = _torchvision_reference(target, pred, c)
    np.testing.assert_array_equal(np.asarray(conf), mat)  # 255 >= C: dropped by both
    m = segmentation_metrics(conf)
    assert not np.isnan(iu).any()  # every class present: our means are torchvision's
    assert m["eval_pixel_acc"] == pytest.approx(acc_global, rel=1e-6)
    assert m["eval_class_acc"] == pytest.approx(acc.mean(), rel=1e-6)
    assert m["eval_miou"] == pytest.approx(iu.mean(), rel=1e-6)
    np.testing.assert_allclose([m[f"eval_iou/{k}"] for k in range(c)], iu, rtol=1e-6)
    np.testing.assert_allclose([m[f"eval_acc/{k}"] for k in range(c)], acc, rtol=1e-6)


def test_hand_case_and_absent_class():
    # C = 3, void 255. Pixels (truth, prediction): (0,0) (0,1) (1,1) / (1,0) void (0,0).
    target = np.array([[[0, 0, 1], [1, 255, 0]]], np.uint8)
    pred = np.array([[[0, 1, 1], [0, 0, 0]]], np.int32)
    conf = np.asarray(confusion_matrix(pred, target, 3))
    np.testing.assert_array_equal(conf, [[2, 1, 0], [1, 1, 0], [0, 0, 0]])
    m = segmentation_metrics(conf, ["a", "b", "c"])
    assert m["eval_pixel_acc"] == pytest.approx(3 / 5)
    # accuracy: a 2/3, b 1/2, c none; IoU: a 2 / (3 + 3 - 2), b 1 / (2 + 2 - 1), c 0/0
    assert m["eval_acc/a"] == pytest.approx(2 / 3) and m["eval_acc/b"] == pytest.approx(1 / 2)
    assert m["eval_iou/a"] == pytest.approx(1 / 2) and m["eval_iou/b"] == pytest.approx(1 / 3)
    assert math.isnan(m["eval_iou/c"]) and math.isnan(m["eval_acc/c"])
    # c, absent from both, is left out of the means ...
    assert m["eval_class_acc"] == pytest.approx(7 / 12)
    assert m["eval_miou"] == pytest.approx(5 / 12)
    # ... where torchvision's reference mean is NaN (its documented difference)
    _, _, acc, iu = _torchvision_reference(target, pred, 3)
    assert math.isnan(iu.mean()) and np.nanmean(iu) == pytest.approx(5 / 12)
    # a class predicted but absent from the truth has IoU 0 and counts in the mean
    m2 = segmentation_metrics([[2, 1, 1], [1, 1, 0], [0, 0, 0]])
    assert m2["eval_iou/2"] == 0.0 and math.isnan(m2["eval_acc/2"])
    assert m2["eval_miou"] == pytest.approx((2 / 5 + 1 / 3 + 0) / 3)


def test_ignore_index_inside_the_class_range_and_out_of_range_targets():
    pred, target = _random(3, c=4, void=0.0)
    target = target.astype(np.int32)
    target[0, 0, :4] = [7, -1, 9, 2]  # outside 0..3: dropped as torchvision drops them
    conf = np.asarray(confusion_matrix(pred, target, 4, ignore_index=2))
    mat = _torchvision_reference(target, pred, 4)[0]
    mat[2] = 0  # truth == ignore_index: not counted
    np.testing.assert_array_equal(conf, mat)
    conf_none = np.asarray(confusion_matrix(pred, target, 4, ignore_index=None))
    np.testing.assert_array_equal(conf_none, _torchvision_reference(target, pred, 4)[0])


def test_uint8_targets_are_widened_before_indexing():
    # 29 * 30 + 29 overflows uint8: the count must not wrap into another cell
    pred, target = _random(4, shape=(2, 5, 6), c=30, void=0.2)
    a = np.asarray(confusion_matrix(pred, target, 30))
    b = np.asarray(confusion_matrix(pred, target.astype(np.int32), 30))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, _torchvision_reference(target, pred, 30)[0])


def test_jitted_padded_batches_sum_to_the_whole():
    c = 6
    pred, target = _random(5, shape=(5, 8, 10), c=c)
    whole = np.asarray(confusion_matrix(pred, target, c))
    step = jax.jit(confusion_matrix, static_argnames=("num_classes", "ignore_index"))
    acc = ConfusionMatrix(c)
    for s in range(0, 5, 2):  # batches of 2, the last padded with row 0, valid 0 (float)
        idx = np.arange(s, s + 2)
        valid = (idx < 5).astype(np.float32)
        idx = np.where(idx < 5, idx, 0)
        acc.update(step(jnp.asarray(pred[idx]), jnp.asarray(target[idx]), num_classes=c,
                        valid=jnp.asarray(valid)))
    assert acc.mat.dtype == np.int64
    np.testing.assert_array_equal(acc.mat, whole)
    assert acc.compute() == pytest.approx(segmentation_metrics(whole), nan_ok=True)
    table = acc.table()
    assert table.startswith("| class | pixels | accuracy | IoU |") and "**mean**" in table
    acc.reset()
    with pytest.raises(ValueError, match="counts no pixel"):
        acc.compute()


def test_bad_input_is_refused():
    pred, target = _random(6)
    with pytest.raises(ValueError, match=r"pred must lie in 0..4, got values in 0..5"):
        confusion_matrix(pred + 1, target, 5)
    with pytest.raises(ValueError, match=r"pred and target must both be \[B, H, W\]"):
        confusion_matrix(pred[0], target[0], 5)
    with pytest.raises(ValueError, match="pred must hold integer class ids"):
        confusion_matrix(pred.astype(np.float32), target, 5)
    with pytest.raises(ValueError, match=r"valid must be \[B\]"):
        confusion_matrix(pred, target, 5, valid=np.ones(2, bool))
    with pytest.raises(ValueError, match="2 class names for a 5x5"):
        segmentation_metrics(np.eye(5), ["a", "b"])


def test_camvid_labels_against_torchvision(shared_data):
    root = shared_data / "camvid"
    if not root.is_dir():
        pytest.skip(f"camvid not found under {shared_data}")
    names = read_class_file(root / "classes.txt")
    classes = [names[k] for k in range(11)]  # 11 = Unlabelled, the void value
    files = sorted((root / "test" / "labels").glob("*.png"))[:3]
    target = np.stack([np.asarray(Image.open(f)) for f in files])
    # a neighbouring frame's labels as the "prediction" (void mapped to class 0)
    pred = np.roll(target, 1, axis=0).astype(np.int32)
    pred[pred == 11] = 0
    conf = confusion_matrix(pred, target, 11, ignore_index=11)
    mat, acc_global, acc, iu = _torchvision_reference(target, pred, 11)
    np.testing.assert_array_equal(np.asarray(conf), mat)
    m = segmentation_metrics(conf, classes)
    assert m["eval_pixel_acc"] == pytest.approx(acc_global, rel=1e-6)
    assert m["eval_miou"] == pytest.approx(np.nanmean(iu), rel=1e-6)
    assert m["eval_iou/Road"] == pytest.approx(iu[3], rel=1e-6) and 0 < m["eval_iou/Road"] < 1
