"""``jaxvision detect``: from a tiny detection workdir trained on real BCCD images (the
detections the engine's prediction computes, on a canvas grown for a portrait image), and
from a torchvision ``fasterrcnn_resnet50_fpn`` state dict (detections equal to
torchvision's on a real photo); boxes in the image's pixels, the score threshold, bad input
named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.ops import box_iou

import tests.train.tiny_detector  # noqa: F401  (registers tiny_fasterrcnn_test_model)
from jaxvision.cli import main
from jaxvision.commands.detect import torchvision_detector, write_outputs
from jaxvision.train import checkpoint, input_pipeline, sharding, train_and_evaluate
from jaxvision.train import workdir as wd
from jaxvision.train.config import validate
from jaxvision.train.loop import abstract_state
from jaxvision.train.steps import jit_predict_step
from jaxvision.train.tasks import get_task
from jaxvision.visualize import draw_boxes
from jaxvision.weights.hub import COCO_CATEGORIES, DETECTION_WEIGHTS
from tests.detection.test_faster_rcnn import _rescale
from tests.torch_parity import realistic_batchnorm
from tests.train.conftest import enable_compilation_cache  # noqa: F401 (on at its import)

BCCD_CLASSES = ["Platelets", "RBC", "WBC"]


@pytest.fixture(scope="module")
def workdir(bccd_subset, tmp_path_factory) -> Path:
    """A 4-step detection run of the tiny Faster R-CNN on 6 BCCD images, canvas [64, 96]."""
    w = tmp_path_factory.mktemp("det_workdir")
    # tests/train/test_detection_task.py's settings: the same programs, compiled once for
    # both through the compilation cache.
    config = validate({}, [
        "task.name=detection", "model.name=tiny_fasterrcnn_test_model", "model.num_classes=4",
        "data.source=voc", f"data.root={bccd_subset}", "data.train_split=train",
        "data.eval_split=test", "data.mean=[0.485, 0.456, 0.406]",
        "data.std=[0.229, 0.224, 0.225]", "dense.canvas=[64, 96]", "data.max_boxes=32",
        "batch_size=2", "eval_batch_size=2", "num_train_steps=4", "eval_every_steps=2",
        "checkpoint.every_steps=2", "checkpoint.best_metric=eval_map50", "log_every_steps=1",
        "optimizer.learning_rate=0.01", "progress_bar=False", "tensorboard=False"])
    train_and_evaluate(config, w)
    return w


def _engine_predictions(workdir: Path, image: np.ndarray,
                        canvas: tuple[int, int]) -> dict[str, np.ndarray]:
    """The task's predictions for ``image`` as the engine evaluates (the workdir config's
    evaluation transform, onto ``canvas``; the restored latest checkpoint)."""
    config = wd.read_config(workdir)
    task = get_task(config)
    mesh = sharding.make_mesh(jax.local_devices()[:1])
    model, shapes, shape = abstract_state(config, wd.read_input_shape(workdir))
    state, _ = checkpoint.restore_params(workdir, shapes, sharding.replicated(mesh))
    transform = dataclasses.replace(input_pipeline.dense_transform(config, train=False),
                                    canvas=canvas)
    example = transform({"image": image})
    batch = {k: example[k][None] for k in ("image", "image_size", "orig_size")}
    return jax.device_get(jit_predict_step(task, model, config, shape[:2])(state, batch))


def test_detect_with_a_workdir_equals_the_engines_prediction(workdir, bccd_subset, tmp_path,
                                                             capsys):
    stem = (bccd_subset / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    # A grey portrait crop of a test image: 121x90 resizes (shorter side 64, longer at most
    # 96) to 86x64, past the [64, 96] canvas, which grows to [96, 96] (multiples of 32).
    # One image: each canvas costs a compile.
    grey = tmp_path / "grey.png"
    Image.open(bccd_subset / "JPEGImages" / f"{stem}.jpg").convert("L").crop(
        (100, 50, 190, 171)).save(grey)
    out = tmp_path / "out"
    assert main(["detect", str(grey), "--workdir", str(workdir), "--out", str(out),
                 "--score-thresh", "0", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = json.loads((out / "detections.json").read_text())
    assert summary["images"] == lines and summary["step"] == 4  # the latest checkpoint
    assert summary["classes"] == ["background", *BCCD_CLASSES]
    (res,) = lines
    assert res["image"] == str(grey) and res["size"] == [121, 90]

    image = np.asarray(Image.open(grey).convert("RGB"))
    ref = _engine_predictions(workdir, image, (96, 96))
    valid = np.asarray(ref["valid"][0], bool)
    order = np.argsort(-ref["scores"][0][valid], kind="stable")
    dets = res["detections"]
    assert len(dets) == valid.sum() > 0  # threshold 0: every detection the model keeps
    boxes = np.array([d["box"] for d in dets])
    np.testing.assert_allclose(boxes, ref["boxes"][0][valid][order], atol=1e-3)
    scores = [d["score"] for d in dets]
    np.testing.assert_allclose(scores, ref["scores"][0][valid][order], atol=1e-6)
    assert scores == sorted(scores, reverse=True)
    assert [d["label"] for d in dets] == ref["labels"][0][valid][order].tolist()
    assert all(d["name"] == BCCD_CLASSES[d["label"] - 1] for d in dets)
    # In the image's pixels: inside it (the detector clips to the resized image).
    assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= 90) and \
        np.all(boxes[:, [1, 3]] <= 121)
    drawn = np.asarray(Image.open(out / "grey_boxes.png"))
    np.testing.assert_array_equal(drawn, draw_boxes(
        image, boxes, [d["label"] for d in dets], scores, class_names=summary["classes"]))


def test_write_outputs_keeps_scores_at_least_the_threshold_highest_first(tmp_path):
    image = np.full((40, 60, 3), 200, np.uint8)
    dets = {"boxes": np.array([[1, 2, 30, 20], [5, 5, 50, 35], [0, 0, 10, 10],
                               [2.5, 3.25, 7.5, 9.0]], np.float32),
            "scores": np.array([0.3, 0.9, 0.7, 0.7], np.float32),
            "labels": np.array([1, 2, 2, 3])}
    names = ["background", "a", "b", "c"]
    res = write_outputs(tmp_path, "x", image, dets, names, 0.7)
    assert res["size"] == [40, 60] and res["boxes_png"] == str(tmp_path / "x_boxes.png")
    assert [(d["score"], d["label"], d["name"]) for d in res["detections"]] == [
        (pytest.approx(0.9), 2, "b"), (pytest.approx(0.7), 2, "b"), (pytest.approx(0.7), 3, "c")]
    assert res["detections"][2]["box"] == [2.5, 3.25, 7.5, 9.0]
    keep = [1, 2, 3]
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "x_boxes.png")),
        draw_boxes(image, dets["boxes"][keep], dets["labels"][keep], dets["scores"][keep],
                   class_names=names))
    res = write_outputs(tmp_path, "y", image, dets, names, 0.95)
    assert res["detections"] == []
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "y_boxes.png")), image)


def test_detect_with_torchvision_fasterrcnn_equals_torchvision(shared_data, tmp_path,
                                                               capsys):
    photo = shared_data / "photos" / "grace_hopper.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    image = np.asarray(Image.open(photo).convert("RGB"))
    x = torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255
    torch.manual_seed(0)
    tv = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91, min_size=320)
    realistic_batchnorm(tv).eval()
    with torch.no_grad():
        # Random heads score nothing above 0.05, or saturate: rescale them as
        # tests/detection/test_faster_rcnn.py does, so that scores spread over (0, 1).
        image_list, _ = tv.transform([x])
        feats = tv.backbone(image_list.tensors)
        logits, deltas = tv.rpn.head(list(feats.values()))
        _rescale(tv.rpn.head.cls_logits, 2.0, torch.cat([t.flatten() for t in logits]))
        _rescale(tv.rpn.head.bbox_pred, 0.2, torch.cat([t.flatten() for t in deltas]))
        props, _ = tv.rpn(image_list, feats)
        pooled = tv.roi_heads.box_roi_pool(feats, [props[0][:32]], image_list.image_sizes)
        cls, reg = tv.roi_heads.box_predictor(tv.roi_heads.box_head(pooled))
        _rescale(tv.roi_heads.box_predictor.cls_score, 3.0, cls)
        _rescale(tv.roi_heads.box_predictor.bbox_pred, 1.0, reg)
        ref = tv([x])[0]
    weights = tmp_path / "frcnn.pth"
    torch.save(tv.state_dict(), weights)
    out = tmp_path / "out"
    assert main(["detect", str(photo), "--model", "fasterrcnn_resnet50_fpn", "--weights",
                 str(weights), "--min-size", "320", "--score-thresh", "0.05", "--out",
                 str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"{photo}: 606x517, ")
    summary = json.loads((out / "detections.json").read_text())
    assert summary["classes"] == list(COCO_CATEGORIES)
    assert (summary["min_size"], summary["max_size"]) == (320, 1333)
    dets = summary["images"][0]["detections"]

    scores = ref["scores"].numpy()
    assert len(scores) > 10 and scores.max() < 0.99  # spread, not saturated
    assert len(dets) == len(scores)
    # test_faster_rcnn's criterion: each of torchvision's detections has one of ours with
    # its label, IoU >= 0.99 and a score within 1e-3 (float noise may reorder near ties).
    got = torch.tensor([d["box"] for d in dets])
    iou = box_iou(ref["boxes"], got).numpy()
    same = ((ref["labels"].numpy()[:, None] == np.array([d["label"] for d in dets])[None])
            & (iou >= 0.99)
            & (np.abs(scores[:, None] - np.array([d["score"] for d in dets])[None]) <= 1e-3))
    assert same.any(axis=1).mean() >= 0.99
    # Measured: within 1.1e-3 px of the best-overlapping box (1e-3 of it the JSON's rounding).
    assert np.abs(ref["boxes"].numpy() - got.numpy()[iou.argmax(axis=1)]).max() <= 1e-2
    assert all(d["name"] == COCO_CATEGORIES[d["label"]] for d in dets)
    drawn = np.asarray(Image.open(out / "grace_hopper_boxes.png"))
    assert drawn.shape == image.shape and np.any(drawn != image)

    # The published COCO_V1 file (known by its name) gets torchvision's overwrite_eps(0.0).
    published = tmp_path / Path(DETECTION_WEIGHTS["fasterrcnn_resnet50_fpn"].url).name
    published.symlink_to(weights)
    assert "frozen_bn_eps" not in summary  # any other file: FrozenBatchNorm2d's 1e-5
    for path, eps, want in ((published, None, 0.0), (weights, 1e-3, 1e-3)):
        _, _, info = torchvision_detector("fasterrcnn_resnet50_fpn", str(path),
                                          frozen_bn_eps=eps)
        assert info.get("frozen_bn_eps") == want


def test_detect_bad_input_names_the_file(workdir, tmp_path, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    ok = tmp_path / "ok.png"
    Image.new("RGB", (8, 6)).save(ok)
    classification = tmp_path / "cls_workdir"
    wd.write_config(classification, validate({}, []))
    out = str(tmp_path / "out")
    for argv, named in (
            ([str(text), "--workdir", str(workdir)], "notes.jpg"),
            ([str(text.with_name("absent.png")), "--workdir", str(workdir)], "absent.png"),
            ([str(ok), "--workdir", str(tmp_path / "nowhere")], "nowhere"),
            ([str(ok), "--workdir", str(classification)], "detection workdir"),
            ([str(ok), "--model", "fasterrcnn_resnet50_fpn"], "--weights"),
            ([str(ok), "--model", "resnet50", "--weights", str(text)], "fasterrcnn_resnet50_fpn"),
            ([str(ok), "--model", "fasterrcnn_resnet50_fpn", "--weights",
              str(tmp_path / "none.pth")], "none.pth"),
            ([str(ok), "--workdir", str(workdir), "--weights", str(text)], "--weights"),
            ([str(ok), "--model", "fasterrcnn_resnet50_fpn_v2", "--weights", str(text),
              "--frozen-bn-eps", "0"], "--frozen-bn-eps"),
            ([str(ok), "--workdir", str(workdir), "--score-thresh", "1.5"], "--score-thresh")):
        assert main(["detect", *argv, "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith("jaxvision detect: error: ") and named in err, err
    assert not Path(out).exists()
