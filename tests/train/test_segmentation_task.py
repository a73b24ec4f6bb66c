"""The segmentation task on the engine: pixel loss, median-frequency weights, a tiny model
trained on real CamVid images through ``train_and_evaluate``, exact resume."""

from __future__ import annotations

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxvision.models import list_models, register_model
from jaxvision.segmentation.balancing import median_frequency_weights
from jaxvision.train import evaluate_checkpoint, input_pipeline
from jaxvision.train import train_and_evaluate as train
from jaxvision.train import workdir as wd
from jaxvision.train.config import ConfigError, validate
from jaxvision.train.tasks import get_task
from jaxvision.train.tasks.segmentation import pixel_cross_entropy, split_outputs
from jaxvision.train.writers import read_metrics
from tests.train.conftest import final_params

CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
                  "Car", "Pedestrian", "Bicyclist"]


class _TinySeg(nn.Module):
    """conv3x3-BN-ReLU, conv1x1: logits [N, H, W, C] at the input's size; with ``aux`` a
    torchvision-style dict ``{"out", "aux"}``."""

    num_classes: int
    aux: bool = False
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array | dict:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        h = nn.Conv(8, (3, 3), **kw)(x)
        h = nn.relu(nn.BatchNorm(use_running_average=not train, **kw)(h))
        out = nn.Conv(self.num_classes, (1, 1), **kw)(h)
        if self.aux:
            return {"out": out, "aux": nn.Conv(self.num_classes, (1, 1), **kw)(h)}
        return out


def tiny_segmentation_test_model(**kwargs) -> nn.Module:
    return _TinySeg(**kwargs)


if "tiny_segmentation_test_model" not in list_models():
    register_model(tiny_segmentation_test_model)


@pytest.fixture(scope="module")
def camvid_subset(shared_data, tmp_path_factory) -> Path:
    """8 training and 3 test images of the real CamVid, in its folder layout (links)."""
    camvid = shared_data / "camvid"
    if not camvid.is_dir():
        pytest.skip(f"CamVid not found at {camvid}")
    root = tmp_path_factory.mktemp("camvid_subset")
    (root / "classes.txt").symlink_to(camvid / "classes.txt")
    for split, n in (("train", 8), ("test", 3)):
        for sub in ("images", "labels"):
            (root / split / sub).mkdir(parents=True)
        for image in sorted((camvid / split / "images").iterdir())[:n]:
            (root / split / "images" / image.name).symlink_to(image)
            label = camvid / split / "labels" / f"{image.stem}.png"
            (root / split / "labels" / label.name).symlink_to(label)
    return root


def _config(root: Path, *extra: str):
    # eval batch 2 over 3 test images: the last batch has a padding row.
    return validate({}, ["task.name=segmentation", "model.name=tiny_segmentation_test_model",
                         "model.num_classes=11", "data.source=segmentation_folder",
                         f"data.root={root}", "data.ignore_index=11",
                         "data.mean=[0.39, 0.41, 0.43]", "data.std=[0.30, 0.31, 0.31]",
                         "dense.canvas=[64, 96]", "batch_size=4", "eval_batch_size=2",
                         "num_train_steps=6", "eval_every_steps=3", "checkpoint.every_steps=1",
                         "checkpoint.keep=10", "checkpoint.best_metric=eval_miou",
                         "log_every_steps=1", "optimizer.learning_rate=0.05",
                         "progress_bar=False", "tensorboard=False", *extra])


def test_pixel_cross_entropy_ignores_void_and_padding_and_matches_torch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 6, 4)).astype(np.float32)
    target = rng.integers(0, 4, size=(3, 5, 6)).astype(np.uint8)
    target[:, :2] = 11  # void rows
    weights = np.array([0.5, 2.0, 1.0, 3.0], np.float32)
    valid = np.array([True, True, False])
    ours = pixel_cross_entropy(jnp.asarray(logits), jnp.asarray(target), 11,
                               jnp.asarray(valid), jnp.asarray(weights))
    ref = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weights), ignore_index=11)(
        torch.from_numpy(logits[valid]).permute(0, 3, 1, 2),
        torch.from_numpy(target[valid].astype(np.int64)))
    np.testing.assert_allclose(float(ours), float(ref), rtol=1e-5)
    # Logits of void pixels and padding rows, even infinite ones, do not change the loss.
    moved = logits.copy()
    moved[:, :2] = 1e3
    moved[2] = -np.inf
    again = pixel_cross_entropy(jnp.asarray(moved), jnp.asarray(target), 11,
                                jnp.asarray(valid), jnp.asarray(weights))
    assert float(again) == float(ours)
    # Nothing counted: 0, not NaN.
    assert float(pixel_cross_entropy(jnp.asarray(logits), jnp.full((3, 5, 6), 11), 11)) == 0.0
    with pytest.raises(ValueError, match="logits must be"):
        pixel_cross_entropy(jnp.asarray(logits), jnp.asarray(target[:, :4]), 11)


def test_model_outputs_dict_or_logits():
    x = jnp.zeros((1, 2, 2, 3))
    assert split_outputs(x) == (x, None)
    assert split_outputs({"out": x, "aux": 2 * x})[1].shape == x.shape
    with pytest.raises(ValueError, match="must give 'out'"):
        split_outputs({"logits": x})


def test_median_frequency_weights_hand_case():
    masks = [np.array([[0, 0], [1, 255]]), np.zeros((2, 3), np.uint8),
             np.array([[2, 1], [2, 2]])]
    # freq: class 0 = 8 px / (4 + 6) px of the images holding it = 0.8; class 1 = 2 / 8 =
    # 0.25; class 2 = 3 / 4 = 0.75; class 3 absent. median 0.75.
    w = median_frequency_weights(masks, 4, ignore_index=255)
    np.testing.assert_allclose(w, [0.75 / 0.8, 3.0, 1.0, 0.0], rtol=1e-6)
    assert w.dtype == np.float32
    with pytest.raises(ValueError, match="outside 0..3"):
        median_frequency_weights([np.array([[4]])], 4)
    with pytest.raises(ValueError, match="no pixel"):
        median_frequency_weights([np.full((2, 2), 255)], 4)


def test_config_refuses_what_segmentation_cannot_honour(camvid_subset):
    task = get_task("segmentation")
    for extra, match in ((["augment.flip=True"], "augment.flip"),
                         (["dense.canvas=None"], "dense.canvas"),
                         (["checkpoint.best_metric=eval_top1"], "best_metric"),
                         (["data.ignore_index=5"], "ignore_index")):
        with pytest.raises(ConfigError, match=match):
            task.check_config(_config(camvid_subset, *extra))


def test_trains_on_camvid_metrics_in_range_and_resume_is_exact(camvid_subset, tmp_path):
    config = _config(camvid_subset, "segmentation.class_weights=median_frequency")
    result = train(config, tmp_path / "full")
    assert result["step"] == 6 and not result["preempted"]
    for k in ("eval_pixel_acc", "eval_class_acc", "eval_miou"):
        assert 0.0 <= result[k] <= 1.0, (k, result[k])
    # Per-class IoU under CamVid's names; every present class has an IoU in [0, 1].
    ious = [result[f"eval_iou/{name}"] for name in CAMVID_CLASSES]
    assert sum(np.isfinite(ious)) >= 5 and all(0 <= v <= 1 for v in ious if np.isfinite(v))
    # Void (11) and canvas padding pixels are not counted; nor is the padding row.
    source = input_pipeline.make_source(config, "test")
    transform = input_pipeline.dense_transform(config, train=False)
    counted = sum(int(np.sum(transform(source[i])["mask"] != 11)) for i in range(len(source)))
    assert result["eval_pixels"] == counted > 0
    assert [r["step"] for r in read_metrics(tmp_path / "full", "eval")] == [3, 6]
    assert tuple(wd.read_input_shape(tmp_path / "full")) == (64, 96, 3)  # the canvas
    final = read_metrics(tmp_path / "full", "final")[-1]
    assert final["eval_miou"] == result["eval_miou"]
    assert {r["step"] for r in read_metrics(tmp_path / "full", "train")} == set(range(1, 7))
    assert all(np.isfinite(r["loss"]) for r in read_metrics(tmp_path / "full", "train"))
    # The saved checkpoint evaluates to the same numbers.
    again = evaluate_checkpoint(config, tmp_path / "full")
    assert again["eval_miou"] == result["eval_miou"]

    # Stopped at step 3 and resumed: bit for bit the uninterrupted run.
    config3 = _config(camvid_subset, "segmentation.class_weights=median_frequency",
                      "num_train_steps=3")
    train(config3, tmp_path / "resumed")
    resumed = train(config, tmp_path / "resumed")
    assert resumed["step"] == 6 and resumed["eval_miou"] == result["eval_miou"]
    a, b = final_params(tmp_path / "full"), final_params(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_aux_head_adds_weighted_loss(camvid_subset):
    config = _config(camvid_subset, "model.kwargs={'aux': True}")
    task = get_task(config)
    model = task.build_model(config)
    batch = next(iter(input_pipeline.train_loader(config, input_pipeline.make_source(
        config, "train"), 4)))
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 96, 3)), train=False)
    key = jax.random.PRNGKey(1)
    loss, (metrics, _) = task.loss(model, config, (64, 96), variables, batch, key, key)
    np.testing.assert_allclose(float(loss), float(metrics["ce"] + 0.5 * metrics["aux_ce"]),
                               rtol=1e-6)
    assert batch["image"].shape == (4, 64, 96, 3) and batch["mask"].shape == (4, 64, 96)
    preds = task.predict(model, config, (64, 96), variables, batch)
    assert preds["label"].shape == (4, 64, 96) and preds["label"].dtype == jnp.int32
