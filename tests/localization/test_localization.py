"""Classification + localization: heads, the staged recipe on the training engine (frozen
parameters, init_from), targets, losses, metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxvision.data import ArraySource, mnist_source
from jaxvision.data.scenes import make_scenes
from jaxvision.localization import (
    TargetScaler,
    boxes_to_cxcywh,
    class_boxes,
    classifier_from_localizer,
    cxcywh_to_boxes,
    digit_keypoints,
    l2_loss,
    localization_correct,
    localizer_from_classifier,
    make_localizer,
    pck,
    smooth_l1_loss,
)
from jaxvision.models import get_model
from jaxvision.train import load_config, train_and_evaluate
from tests.train.conftest import final_params


@pytest.fixture(scope="module")
def scenes():
    src = mnist_source("train")
    idx = np.arange(1500)
    imgs = np.stack([src[int(i)]["image"] for i in idx])
    labels = np.array([src[int(i)]["label"] for i in idx])
    return make_scenes(imgs, labels, 1500, size=(48, 48), digits_per_scene=(1, 1),
                       scale_range=(0.8, 1.6), seed=0)


@pytest.mark.parametrize("attach", ["features", "classifier"])
@pytest.mark.parametrize("per_class", [False, True])
def test_head_shapes(attach, per_class):
    loc = make_localizer(get_model("lenet5"), attach=attach, per_class=per_class)
    v = loc.init(jax.random.key(0), jnp.zeros((2, 48, 48, 1)))
    logits, reg = loc.apply(v, jnp.zeros((2, 48, 48, 1)))
    assert logits.shape == (2, 10)
    assert reg.shape == ((2, 10, 4) if per_class else (2, 4))
    in_dim = v["params"]["regressor.0"]["kernel"].shape[0]
    assert in_dim == (16 * 9 * 9 if attach == "features" else 84)


def test_from_classifier_keeps_logits():
    model = get_model("lenet5")
    v = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    loc, lv = localizer_from_classifier(model, v, (28, 28, 1), key=jax.random.key(1))
    x = jax.random.uniform(jax.random.key(2), (3, 28, 28, 1))
    logits, reg = loc.apply(lv, x)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(model.apply(v, x)), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(reg), 0.0)
    # And back: the classifier's own variables, the regressor dropped.
    back = classifier_from_localizer(model, lv)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(v)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, v)


def _stage(scaler: TargetScaler, *extra: str):
    return load_config("lenet5_mnist", [
        "task.name=localization", "localization.hidden=[128]", "data.mean=[0.0]",
        "data.std=[1.0]", "batch_size=64", "eval_batch_size=300", "optimizer.nesterov=False",
        "optimizer.weight_decay=0.0", "schedule.warmup_steps=0", "progress_bar=False",
        "tensorboard=False", "log_every_steps=50",
        f"localization.target_mean={[float(v) for v in scaler.mean]}",
        f"localization.target_std={[float(v) for v in scaler.std]}", *extra])


def test_recipe_on_the_engine_freezes_and_learns_to_localize(scenes, tmp_path):
    # The lecture's recipe as configuration: the classifier alone (box_weight=0), then the
    # head alone on the frozen classifier (init_from + optimizer.frozen).
    labels = scenes.labels[:, 0]
    train, test = slice(0, 1200), slice(1200, 1500)
    scaler = TargetScaler.from_targets(boxes_to_cxcywh(scenes.boxes[train, 0] / 48.0))
    train_src = ArraySource(scenes.images[train], labels[train], boxes=scenes.boxes[train])
    test_src = ArraySource(scenes.images[test], labels[test], boxes=scenes.boxes[test])
    stage1 = _stage(scaler, "localization.box_weight=0.0", "num_train_steps=300",
                    "optimizer.learning_rate=0.05", "schedule.name=cosine")
    first = train_and_evaluate(stage1, tmp_path / "1", train_source=train_src,
                               eval_source=test_src)
    stage2 = _stage(scaler, "localization.class_weight=0.0", "num_train_steps=300",
                    "optimizer.learning_rate=0.01", "schedule.name=constant",
                    "optimizer.frozen=['backbone', 'classifier[.].*']",
                    f"model.init_from={tmp_path / '1'}")
    second = train_and_evaluate(stage2, tmp_path / "2", train_source=train_src,
                                eval_source=test_src)
    before, after = final_params(tmp_path / "1"), final_params(tmp_path / "2")
    moved = {k for k in after if k.startswith("['params']")
             and not np.array_equal(after[k], before[k])}
    assert moved and all(k.startswith("['params']['regressor.") for k in moved), moved
    assert second["eval_top1"] == first["eval_top1"]  # the classifier did not change
    # Chance is ~0 (10 classes x IoU >= 0.5); a few hundred steps already localize most.
    assert second["eval_localization"] > 0.5
    assert second["eval_mean_iou"] > first["eval_mean_iou"] + 0.1


def test_target_encoding_round_trips():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 0.5, (64, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.1, 0.5, (64, 2))], 1).astype(np.float32)
    c = boxes_to_cxcywh(boxes)
    np.testing.assert_allclose(c[:, 2:], boxes[:, 2:] - boxes[:, :2], atol=1e-6)
    np.testing.assert_allclose(cxcywh_to_boxes(c), boxes, atol=1e-6)
    scaler = TargetScaler.from_targets(c)
    enc = scaler.encode(c)
    assert enc.dtype == np.float32
    np.testing.assert_allclose(enc.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(enc.std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(scaler.decode(enc), c, atol=1e-6)


def test_losses_match_torch():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(16, 4)).astype(np.float32), rng.normal(size=(16, 4)).astype(
        np.float32)
    for beta in (1.0, 1 / 9):
        ref = torch.nn.functional.smooth_l1_loss(torch.tensor(p), torch.tensor(t), beta=beta,
                                                 reduction="sum").item() / 16
        assert abs(float(smooth_l1_loss(jnp.asarray(p), jnp.asarray(t), beta)) - ref) < 1e-5
    ref = torch.nn.functional.mse_loss(torch.tensor(p), torch.tensor(t),
                                       reduction="sum").item() / 16
    assert abs(float(l2_loss(jnp.asarray(p), jnp.asarray(t))) - ref) < 1e-4
    mask = jnp.array([1.0] * 8 + [0.0] * 8)
    assert abs(float(l2_loss(jnp.asarray(p), jnp.asarray(t), mask))
               - float(l2_loss(jnp.asarray(p[:8]), jnp.asarray(t[:8])))) < 1e-5


def test_class_boxes_and_ilsvrc_metric():
    boxes = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(np.asarray(class_boxes(boxes, jnp.array([2, 0]))),
                                  [[8, 9, 10, 11], [12, 13, 14, 15]])
    gt = jnp.array([[0, 0, 10, 10], [0, 0, 10, 10.]])
    pred = jnp.array([[[0, 0, 10, 8], [20, 20, 30, 30]], [[0, 0, 10, 4], [0, 0, 9, 10]]])
    labels = jnp.array([[3, 1], [2, 2]])
    ok = localization_correct(labels, pred, jnp.array([3, 2]), gt)
    np.testing.assert_array_equal(np.asarray(ok), [True, True])  # 2nd: via guess 2
    ok1 = localization_correct(labels[:, 0], pred[:, 0], jnp.array([3, 2]), gt)
    np.testing.assert_array_equal(np.asarray(ok1), [True, False])  # IoU 0.4 < 0.5


def test_keypoints_and_pck(scenes):
    kp = digit_keypoints(scenes)
    assert kp.shape == (1500, 3, 2)
    boxes = scenes.boxes[:, 0]
    assert np.all(kp[..., 0] >= boxes[:, None, 0]) and np.all(kp[..., 0] <= boxes[:, None, 2])
    assert np.all(kp[:, 1, 1] <= kp[:, 0, 1]) and np.all(kp[:, 0, 1] <= kp[:, 2, 1])
    scale = jnp.asarray(boxes[:, 2] - boxes[:, 0])
    assert float(pck(jnp.asarray(kp), jnp.asarray(kp), scale)) == 1.0
    assert float(pck(jnp.asarray(kp) + 100.0, jnp.asarray(kp), scale)) == 0.0
