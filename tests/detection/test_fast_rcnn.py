"""Fast R-CNN (``jaxvision/detection/fast_rcnn.py``): the multi-task loss on the sampled RoIs,
padded detections, proposals moving with the image in the dense transforms, the VGG16
classifier's variables by path, and a tiny model trained through ``train_and_evaluate`` on
real BCCD images with real (cached) selective-search proposals."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tests.train.tiny_detector  # noqa: F401  (registers tiny_fasterrcnn_test_model)
from jaxvision.data.dense_augment import eval_transform, resize_boxes, train_transform
from jaxvision.detection.fast_rcnn import FastRCNN
from jaxvision.detection.losses import fast_rcnn_multitask_loss
from jaxvision.models import get_model, list_models, register_model
from jaxvision.ops.boxes import box_iou
from jaxvision.train.pretrained import graft

NUM_CLASSES = 4


# A plain normal: the default truncated normal costs seconds of compile per shape on a CPU.
_INIT = nn.initializers.normal(0.1)


class _TinyBody(nn.Module):
    """16x16 average pooling and a per-pixel dense layer to a stride-16, 8-channel map (no
    convolution: XLA takes seconds to compile one on a CPU), and a 16-wide dense head."""

    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    stride = 16

    def conv_body(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self._body(x)

    @nn.compact
    def _body(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        x = x.reshape(n, h // 16, 16, w // 16, 16, c).mean(axis=(2, 4))
        return nn.relu(nn.Dense(8, kernel_init=_INIT, name="proj")(x))

    @nn.compact
    def box_head(self, pooled: jax.Array, train: bool = False) -> jax.Array:
        x = pooled.reshape(pooled.shape[0], -1)
        return nn.relu(nn.Dense(16, kernel_init=_INIT, name="fc")(x))


def tiny_fast_rcnn_test_model(num_classes: int = NUM_CLASSES, dtype: Any = jnp.float32,
                              param_dtype: Any = jnp.float32) -> FastRCNN:
    return FastRCNN(_TinyBody(), num_classes=num_classes, batch_size_per_image=16,
                    detections_per_img=10)


if "tiny_fast_rcnn_test_model" not in list_models():
    register_model(tiny_fast_rcnn_test_model)


def _example_batch(seed: int = 0, p: int = 12):
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.normal(size=(2, 64, 96, 3)), jnp.float32)
    gt = np.array([[[8, 8, 40, 40], [50, 10, 90, 60], [0, 0, 0, 0]],
                   [[20, 4, 60, 30], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
    gt_labels = np.array([[1, 3, 0], [2, 0, 0]], np.int32)
    gt_valid = np.array([[True, True, False], [True, False, False]])
    # Jittered copies of the gt boxes (foreground), and random boxes (mostly background).
    xy = rng.uniform(0, 60, (2, p, 2))
    props = np.concatenate([xy, xy + rng.uniform(8, 36, (2, p, 2))], -1).astype(np.float32)
    props[:, :4] = np.concatenate([gt[:, :2], gt[:, :2]], 1) + rng.normal(0, 2, (2, 4, 4))
    props = np.clip(props, 0, [96, 64, 96, 64]).astype(np.float32)
    valid = np.ones((2, p), bool)
    valid[1, -3:] = False
    return (images, jnp.asarray(gt), jnp.asarray(gt_labels), jnp.asarray(gt_valid),
            jnp.asarray(props), jnp.asarray(valid))


@pytest.fixture(scope="module")
def tiny():
    model = tiny_fast_rcnn_test_model()
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 64, 96, 3)))
    return model, variables


def test_losses_are_the_multitask_loss_on_the_sampled_rois(tiny):
    model, variables = tiny
    images, gt, labels, gvalid, props, pvalid = _example_batch()
    sizes = jnp.array([[64, 96], [64, 96]], jnp.int32)
    key = jax.random.PRNGKey(3)

    @jax.jit
    def run(v):
        losses = model.apply(v, images, sizes, gt, labels, gvalid, key, proposals=props,
                             proposal_valid=pvalid, method="losses")
        # The same sampled RoIs (same key) through the model's parts.
        s = model.apply(v, props, pvalid, gt, labels, gvalid, key,
                        method=FastRCNN.sample_rois)
        feats = model.apply(v, images, method=lambda m, x: m.backbone.conv_body(x))
        logits, deltas = model.apply(v, feats, s.proposals, method=FastRCNN.box_outputs)
        want = fast_rcnn_multitask_loss(logits, deltas, s.labels, s.regression_targets,
                                        s.valid)
        return losses, s, logits, deltas, want

    losses, s, logits, deltas, want = run(variables)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "num_fg_rois"}
    got = losses["loss_classifier"] + losses["loss_box_reg"]
    assert np.isfinite(float(got))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)

    # By hand: cross-entropy over the sampled RoIs, smooth L1 (beta 1) of the true class's
    # deltas over the foreground ones, both divided by the number sampled.
    lg, dl = np.asarray(logits, np.float64), np.asarray(deltas, np.float64)
    lab, ok = np.asarray(s.labels), np.asarray(s.valid)
    tg = np.asarray(s.regression_targets, np.float64)
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, np.clip(lab, 0, None)[..., None], -1)[..., 0]
    d = np.take_along_axis(dl.reshape(*lab.shape, NUM_CLASSES, 4),
                           np.clip(lab, 0, None)[..., None, None], -2)[..., 0, :] - tg
    sl1 = np.where(np.abs(d) < 1, 0.5 * d**2, np.abs(d) - 0.5).sum(-1)
    n = ok.sum()
    np.testing.assert_allclose(float(losses["loss_classifier"]), ce[ok].sum() / n, rtol=1e-5)
    np.testing.assert_allclose(float(losses["loss_box_reg"]),
                               sl1[ok & (lab > 0)].sum() / n, rtol=1e-4, atol=1e-7)

    # The paper's sampling: at most 25% foreground (IoU >= 0.5), background in [0.1, 0.5).
    for i in range(2):
        rows = np.flatnonzero(ok[i])
        fg = lab[i, rows] > 0
        assert 0 < fg.sum() <= 4 and len(rows) <= 16
        iou = np.asarray(box_iou(gt[i][np.asarray(gvalid[i])], s.proposals[i][rows])).max(0)
        assert np.all(iou[fg] >= 0.5)
        assert np.all((iou[~fg] >= 0.1) & (iou[~fg] < 0.5))
    assert float(losses["num_fg_rois"]) == float(((lab > 0) & ok).sum()) / 2


def test_predictions_are_padded_detections_inside_the_image(tiny):
    model, variables = tiny
    images, _, _, _, props, pvalid = _example_batch(1)
    sizes = jnp.array([[64, 96], [48, 80]], jnp.int32)
    # A head whose scores spread (random init is near uniform over 4 classes: > 0.05 each).
    out = jax.jit(lambda v: model.apply(v, images, sizes, proposals=props,
                                        proposal_valid=pvalid))(variables)
    assert out["boxes"].shape == (2, 10, 4) and out["labels"].dtype == jnp.int32
    valid = np.asarray(out["valid"])
    np.testing.assert_array_equal(np.asarray(out["count"]), valid.sum(1))
    assert valid.sum() > 0
    for i in range(2):
        k = int(out["count"][i])
        assert valid[i, :k].all() and not valid[i, k:].any()  # valid entries first
        sc = np.asarray(out["scores"][i, :k])
        assert np.all(np.diff(sc) <= 0) and np.all(sc > 0.05)
        b = np.asarray(out["boxes"][i, :k])
        h, w = (int(v) for v in sizes[i])
        assert np.all(b >= 0) and np.all(b[:, [0, 2]] <= w) and np.all(b[:, [1, 3]] <= h)
        assert set(np.asarray(out["labels"][i, :k]).tolist()) <= {1, 2, 3}
    with pytest.raises(ValueError, match="needs proposals"):
        model.apply(variables, images, sizes)


def test_proposals_move_with_the_image_exactly_as_boxes():
    rng = np.random.default_rng(0)
    h, w = 60, 80
    xy = rng.uniform(-5, 70, (40, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (40, 2))], 1).astype(np.float32)
    boxes[-1] = [10, 10, 10, 20]  # already empty
    t = train_transform((64, 64), scale_range=(0.5, 2.0), flip=True, crop=True,
                        min_box_size=0.0)
    flips = set()
    for seed in range(12):
        ex = {"image": rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "boxes": boxes,
              "box_valid": np.ones(40, bool), "proposals": boxes,
              "proposal_valid": np.ones(40, bool)}
        r = np.random.default_rng(seed)
        flips.add(t.sample((h, w), np.random.default_rng(seed)).flip)
        out = t(ex, r)
        keep = out["box_valid"]
        assert out["proposals"].shape == (40, 4)  # no row dropped
        np.testing.assert_array_equal(out["proposal_valid"], keep)
        np.testing.assert_array_equal(out["proposals"][keep], out["boxes"][keep])
        assert not out["proposal_valid"][-1]
    assert flips == {True, False}
    e = eval_transform(min_size=48, max_size=64, canvas=(64, 64))
    out = e({"image": np.zeros((h, w, 3), np.uint8), "proposals": boxes[:-1]})
    np.testing.assert_array_equal(out["proposals"], resize_boxes(boxes[:-1], (h, w), (48, 64)))
    assert out["proposal_valid"].all()


def test_vgg16_classifier_variables_map_onto_fast_rcnn_vgg16_by_path():
    init = lambda m: jax.eval_shape(m.init, jax.random.PRNGKey(0),  # noqa: E731
                                    jnp.zeros((1, 224, 224, 3)))["params"]
    det = get_model("fast_rcnn_vgg16", num_classes=21)
    assert det.needs_proposals
    got = init(det)
    cls = init(get_model("vgg16"))
    shape = lambda t: {k: v.shape for k, v in t.items()}  # noqa: E731
    for name, leaves in cls.items():
        if name == "classifier.6":
            assert name not in got["backbone"]  # the ImageNet head is not used
            continue
        assert shape(got["backbone"][name]) == shape(leaves), name
    assert got["cls_score"]["kernel"].shape == (4096, 21)
    assert got["bbox_pred"]["kernel"].shape == (4096, 84)
    # model.init_from a vgg16 classifier with model.init_from_target=backbone (zero-stride
    # arrays: graft reads shapes, and 138M parameters need not exist).
    zeros = lambda t: jax.tree.map(lambda x: np.broadcast_to(np.float32(0), x.shape), t)  # noqa: E731
    _, report = graft({"params": zeros(got)}, {"params": zeros(cls)}, "backbone")
    assert report["unused"] == ["params/classifier.6/bias", "params/classifier.6/kernel"]
    assert sorted(report["kept"]) == ["params/bbox_pred/bias", "params/bbox_pred/kernel",
                                      "params/cls_score/bias", "params/cls_score/kernel"]
    c4 = init(get_model("fast_rcnn_resnet18", num_classes=4, representation_size=32))
    r18 = init(get_model("resnet18"))
    for name, leaves in c4["backbone"].items():
        if name not in ("fc6", "fc7"):
            assert jax.tree.map(lambda x: x.shape, leaves) == \
                jax.tree.map(lambda x: x.shape, r18[name]), name
    assert not any(k.startswith("layer4") for k in c4["backbone"])


def test_fast_rcnn_trains_on_bccd_with_cached_selective_search(bccd_subset, tmp_path):
    from jaxvision.train import input_pipeline
    from jaxvision.train import train_and_evaluate as train
    from jaxvision.train.config import ConfigError, validate
    from jaxvision.train.tasks import get_task
    from jaxvision.train.writers import read_metrics

    cache = tmp_path / "proposals"
    config = validate({}, [
        "task.name=detection", "model.name=tiny_fast_rcnn_test_model", "model.num_classes=4",
        "data.source=voc", f"data.root={bccd_subset}", "data.train_split=train",
        "data.eval_split=test", "data.mean=[0.485, 0.456, 0.406]",
        "data.std=[0.229, 0.224, 0.225]", "dense.canvas=[64, 96]", "data.max_boxes=32",
        "detection.proposals=selective_search", "detection.num_proposals=64",
        "detection.selective_search_size=96", f"detection.proposal_cache={cache}",
        "batch_size=2", "eval_batch_size=2", "num_train_steps=4", "eval_every_steps=4",
        "log_every_steps=1", "optimizer.learning_rate=0.01", "progress_bar=False",
        "checkpoint.best_metric=eval_map50",
        "tensorboard=False"])
    task = get_task(config)
    assert task.fields(config)[-2:] == ("proposals", "proposal_valid")
    plain = validate({}, ["task.name=detection", "model.name=tiny_fasterrcnn_test_model"])
    assert "proposals" not in task.fields(plain)
    with pytest.raises(ConfigError, match="detection.proposals"):
        task.check_config(validate(config.to_dict(), ["detection.proposals=None"]))

    result = train(config, tmp_path / "run")
    assert result["step"] == 4
    assert 0.0 <= result["eval_map50"] <= 1.0 and result["eval_images"] == 3.0
    rows = read_metrics(tmp_path / "run", "train")
    assert all(np.isfinite(r["loss"]) and "loss_classifier" in r for r in rows)
    # Every image of both splits was searched once and cached (9 images).
    assert len(list(cache.glob("*.npz"))) == 9
    source = input_pipeline.make_source(config, "test")
    ex = source[0]
    assert source.cache.misses == 0 and source.cache.hits == 1
    assert ex["proposals"].shape == (64, 4) and ex["proposal_valid"].any()
    h, w = ex["image"].shape[:2]
    b = ex["proposals"][ex["proposal_valid"]]
    assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 2] <= w) and np.all(b[:, 3] <= h)
