"""Bad input to the detection task: too many boxes, images without objects or with only
degenerate boxes, grayscale and very large images, a diverging run."""

from __future__ import annotations

import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import tests.train.tiny_detector  # noqa: F401  (registers tiny_fasterrcnn_test_model)
from jaxvision.data import VALID
from jaxvision.train import NonFiniteLossError, input_pipeline
from jaxvision.train import train_and_evaluate as train
from jaxvision.train.tasks import get_task
from tests.train.test_detection_task import _config


def _voc(root: Path, images: dict[str, tuple[np.ndarray, list[tuple]]]) -> Path:
    """A VOC folder: ``{stem: (image uint8 [H, W] or [H, W, 3], [(name, x1, y1, x2, y2)])}``,
    every image in both the train and the test split."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for stem, (pixels, objects) in images.items():
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{stem}.jpg")
        h, w = pixels.shape[:2]
        objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}"
                       f"</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox>"
                       "</object>" for n, a, b, c, d in objects)
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{w}</width><height>{h}"
            f"</height><depth>3</depth></size>{objs}</annotation>")
    for split in ("train", "test"):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(images) + "\n")
    return root


def test_more_boxes_than_max_boxes_is_a_clear_error(bccd_subset, tmp_path):
    with pytest.raises(ValueError, match=r"BloodImage_\d+.*exceed max_boxes=2.*data.max_boxes"):
        train(_config(bccd_subset, "data.max_boxes=2"), tmp_path)


def test_empty_degenerate_grayscale_and_large_images_train_and_predict(tmp_path):
    rng = np.random.default_rng(0)
    root = _voc(tmp_path / "voc", {
        # A grayscale photo 25x the canvas: resized down onto it, both in training and test.
        "large_gray": (rng.integers(0, 256, (1600, 2400), np.uint8),
                       [("cell", 100, 200, 900, 1000), ("blob", 1500, 300, 2300, 1500)]),
        "empty": (rng.integers(0, 256, (120, 160, 3), np.uint8), []),
        # Its only box has zero area: dropped (warned), so the image has no object.
        "degenerate": (rng.integers(0, 256, (120, 160, 3), np.uint8),
                       [("cell", 50, 40, 50, 90)]),
    })
    # The shapes of test_detection_task's (batch 2, 4 classes): its compiled programs serve.
    config = _config(root, "data.classes=['blob', 'cell', 'other']")
    task = get_task(config)
    model = task.build_model(config)
    with pytest.warns(UserWarning, match="degenerate"):
        source = input_pipeline.make_source(config, "train")
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 64, 96, 3)))
    key = jax.random.PRNGKey(1)
    loss_fn = jax.jit(lambda v, b: task.loss(model, config, (64, 96), v, b, key, key))
    predict = jax.jit(lambda v, b: task.predict(model, config, (64, 96), v, b))
    seen = {}
    for train_mode in (True, False):
        loader = (input_pipeline.train_loader(config, source, 2) if train_mode
                  else input_pipeline.eval_loader(config, source, 2))
        for raw in itertools.islice(loader, 2):
            assert raw["image"].shape == (2, 64, 96, 3)
            batch = {k: jnp.asarray(v) for k, v in raw.items()
                     if k in (*task.fields(config), VALID)}
            loss, (metrics, _) = loss_fn(variables, batch)
            assert np.isfinite(float(loss)), metrics
            for i in np.flatnonzero(raw[VALID]):
                seen[source.ids[int(raw["image_id"][i])]] = int(raw["box_valid"][i].sum())
            if not train_mode:  # boxes come back in each image's own pixels
                preds = predict(variables, batch)
                boxes, keep = np.asarray(preds["boxes"]), np.asarray(preds["valid"])
                for i in range(2):
                    h, w = raw["orig_size"][i]
                    assert np.all(boxes[i][keep[i]][:, [0, 2]] <= w + 1e-3)
                    assert np.all(boxes[i][keep[i]][:, [1, 3]] <= h + 1e-3)
    assert seen["empty"] == seen["degenerate"] == 0 and seen["large_gray"] >= 1
    # Images without objects: every sampled anchor and RoI is background, no box loss.
    empty = dict(batch, box_valid=jnp.zeros_like(batch["box_valid"]))
    loss0, (m0, _) = loss_fn(variables, empty)
    assert np.isfinite(float(loss0)) and float(m0["loss_box_reg"]) == 0.0
    assert float(m0["loss_rpn_box_reg"]) == 0.0 and float(m0["num_fg_rois"]) == 0.0


def test_a_diverging_run_stops_with_a_clear_error(bccd_subset, tmp_path):
    with pytest.raises(NonFiniteLossError, match="training loss is .* at step"):
        train(_config(bccd_subset, "optimizer.learning_rate=1e12", "schedule.warmup_steps=0",
                      "num_train_steps=4", "eval_every_steps=4"), tmp_path)
