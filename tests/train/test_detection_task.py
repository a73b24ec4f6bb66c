"""The detection task on the engine: a tiny Faster R-CNN trained on real BCCD images through
``train_and_evaluate``, VOC AP in the metrics, pictures, and the config's refusals."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tests.train.tiny_detector  # noqa: F401  (registers tiny_fasterrcnn_test_model)
from jaxvision.detection.evaluation import VOCEvaluator
from jaxvision.train import evaluate_checkpoint, input_pipeline
from jaxvision.train import train_and_evaluate as train
from jaxvision.train.config import ConfigError, validate
from jaxvision.train.evaluators.detection import DetectionAP, to_original_pixels
from jaxvision.train.tasks import get_task
from jaxvision.train.tasks.detection import gt_valid
from jaxvision.train.writers import read_metrics

BCCD_CLASSES = ["Platelets", "RBC", "WBC"]


def _config(root: Path, *extra: str):
    # eval batch 2 over 3 test images: the last batch has a padding row.
    return validate({}, ["task.name=detection", "model.name=tiny_fasterrcnn_test_model",
                         "model.num_classes=4", "data.source=voc", f"data.root={root}",
                         "data.train_split=train", "data.eval_split=test",
                         "data.mean=[0.485, 0.456, 0.406]", "data.std=[0.229, 0.224, 0.225]",
                         "dense.canvas=[64, 96]", "data.max_boxes=32", "batch_size=2",
                         "eval_batch_size=2", "num_train_steps=4", "eval_every_steps=2",
                         "checkpoint.every_steps=2", "checkpoint.best_metric=eval_map50",
                         "log_every_steps=1", "optimizer.learning_rate=0.01",
                         "progress_bar=False", "tensorboard=False", *extra])


def test_config_refuses_what_detection_cannot_honour(bccd_subset):
    task = get_task("detection")
    for extra, match in ((["augment.flip=True"], "augment.flip"),
                         (["dense.canvas=None"], "dense.canvas"),
                         (["dense.canvas=[60, 96]"], "multiples of 32"),
                         (["checkpoint.best_metric=eval_miou"], "best_metric"),
                         (["data.source=segmentation_folder"], "data.source"),
                         (["model.num_classes=1"], "background")):
        with pytest.raises(ConfigError, match=match):
            task.check_config(_config(bccd_subset, *extra))
    with pytest.raises(ValueError, match="not a detector"):
        task.build_model(_config(bccd_subset, "model.name=resnet18"))


def test_gt_valid_drops_degenerate_boxes_and_padding_rows():
    batch = {"boxes": jnp.array([[[0, 0, 5, 5], [3, 3, 3, 9], [1, 1, 2, 2]],
                                 [[0, 0, 5, 5], [0, 0, 0, 0], [0, 0, 0, 0]]], jnp.float32),
             "box_valid": jnp.array([[True, True, False], [True, False, False]]),
             "_valid": jnp.array([True, False])}
    np.testing.assert_array_equal(np.asarray(gt_valid(batch)),
                                  [[True, False, False], [False, False, False]])


def test_boxes_map_back_to_original_pixels():
    boxes = jnp.array([[[10.0, 20.0, 30.0, 40.0]]])
    out = to_original_pixels(boxes, jnp.array([[320, 427]]), jnp.array([[480, 640]]))
    np.testing.assert_allclose(np.asarray(out)[0, 0],
                               [10 * 640 / 427, 20 * 1.5, 30 * 640 / 427, 40 * 1.5], rtol=1e-6)


def test_detection_ap_evaluator_is_the_voc_evaluator():
    rng = np.random.default_rng(0)
    gt = np.array([[[10, 10, 50, 60], [60, 20, 90, 70], [0, 0, 0, 0]]], np.float32)
    pred = np.concatenate([gt[:, :2] + rng.normal(0, 2, (1, 2, 4)).astype(np.float32),
                           np.array([[[5, 5, 20, 20]]], np.float32)], axis=1)
    batch = {"boxes": jnp.asarray(gt / 2), "labels": jnp.array([[1, 2, 0]]),
             "box_valid": jnp.array([[True, True, False]]),
             "difficult": jnp.zeros((1, 3), bool), "image_size": jnp.array([[50, 60]]),
             "orig_size": jnp.array([[100, 120]])}
    preds = {"boxes": jnp.asarray(pred), "scores": jnp.array([[0.9, 0.8, 0.7]]),
             "labels": jnp.array([[1, 2, 2]]), "valid": jnp.array([[True, True, True]])}
    ev = DetectionAP(["a", "b"])
    ev.reset()
    ev.update(ev.batch_fn(preds, batch, jnp.ones((1,))))
    got = ev.result()
    ref = VOCEvaluator(["a", "b"])
    ref.add(pred[0], [0.9, 0.8, 0.7], [1, 2, 2], gt[0, :2], [1, 2])
    want = ref.compute().metrics()
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-9, err_msg=k)
    assert got["eval_images"] == 1.0


def test_loss_is_the_sum_of_the_four_losses_and_predictions_are_padded(bccd_subset):
    config = _config(bccd_subset)
    task = get_task(config)
    model = task.build_model(config)
    source = input_pipeline.make_source(config, "train")
    batch = next(iter(input_pipeline.train_loader(config, source, 2)))
    batch = {k: jnp.asarray(v) for k, v in batch.items()
             if k in (*task.fields(config), "_valid")}
    assert batch["image"].shape == (2, 64, 96, 3) and batch["boxes"].shape == (2, 32, 4)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 64, 96, 3)))
    key = jax.random.PRNGKey(1)
    loss, (metrics, _) = jax.jit(lambda v, b: task.loss(model, config, (64, 96), v, b, key,
                                                        key))(variables, batch)
    parts = [metrics[k] for k in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                                  "loss_box_reg")]
    assert all(np.isfinite(float(p)) and float(p) >= 0 for p in parts)
    np.testing.assert_allclose(float(loss), float(sum(parts)), rtol=1e-6)
    assert float(metrics["num_fg_rois"]) > 0  # the gt boxes are appended to the proposals
    preds = jax.jit(lambda v, b: task.predict(model, config, (64, 96), v, b))(variables, batch)
    assert preds["boxes"].shape == (2, 10, 4) and preds["labels"].dtype == jnp.int32
    assert preds["valid"].shape == preds["scores"].shape == (2, 10)


def test_trains_on_bccd_and_writes_voc_metrics_and_pictures(bccd_subset, tmp_path):
    config = _config(bccd_subset)
    result = train(config, tmp_path / "run")
    assert result["step"] == 4 and not result["preempted"]
    assert 0.0 <= result["eval_map50"] <= 1.0 and 0.0 <= result["eval_map50_voc07"] <= 1.0
    assert result["eval_images"] == 3.0  # the padding row of the last batch is not counted
    for name in BCCD_CLASSES:
        ap = result[f"eval_ap50/{name}"]
        assert np.isnan(ap) or 0.0 <= ap <= 1.0
    # RBCs are in every BCCD image: their AP is a number.
    assert np.isfinite(result["eval_ap50/RBC"])
    assert [r["step"] for r in read_metrics(tmp_path / "run", "eval")] == [2, 4]
    train_rows = read_metrics(tmp_path / "run", "train")
    assert all(np.isfinite(r["loss"]) and "loss_objectness" in r for r in train_rows)
    pngs = sorted((tmp_path / "run" / "images").rglob("*.png"))
    assert pngs, "no detection pictures were written"
    again = evaluate_checkpoint(config, tmp_path / "run")
    assert again["eval_map50"] == result["eval_map50"]
