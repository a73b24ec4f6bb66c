"""train_and_evaluate in-process: metrics, padded evaluation, resume, NaN stop, bfloat16."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from jaxvision.train import NonFiniteLossError, evaluate_checkpoint, load_config
from jaxvision.train import train_and_evaluate as train
from jaxvision.train.writers import read_metrics
from tests.train.conftest import TINY, final_params, saved_steps


def _config(*extra: str):
    return load_config("lenet5_mnist", [*TINY, *extra])


def test_train_evaluate_metrics_tensorboard_and_resume(tmp_path):
    # eval batch 300 does not divide the 2,000 test images: the last batch is padded.
    config = _config("num_train_steps=20", "eval_every_steps=10", "eval_batch_size=300",
                     "tensorboard=True")
    result = train(config, tmp_path)
    assert result["step"] == 20 and not result["preempted"]
    assert result["eval_count"] == 2000
    assert 0.0 <= result["eval_top1"] <= 1.0 and np.isfinite(result["eval_loss"])
    assert [r["step"] for r in read_metrics(tmp_path, "train")] == list(range(1, 21))
    assert [r["step"] for r in read_metrics(tmp_path, "eval")] == [10, 20]
    final = read_metrics(tmp_path, "final")[-1]
    assert final["eval_top1"] == result["eval_top1"]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "config.json").is_file()
    # Evaluating the saved checkpoint reproduces the final numbers.
    again = evaluate_checkpoint(config, tmp_path)
    assert again["step"] == 20 and again["eval_top1"] == result["eval_top1"]
    # Same workdir, longer run: resumes at step 20 instead of starting over.
    longer = train(_config("num_train_steps=25", "eval_every_steps=10"), tmp_path)
    assert longer["step"] == 25
    assert [r["step"] for r in read_metrics(tmp_path, "train")] == list(range(1, 26))


def test_non_finite_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    config = _config("optimizer.learning_rate=1e30", "schedule.warmup_steps=0",
                     "checkpoint.every_steps=1", "optimizer.momentum=0.0")
    with pytest.raises(NonFiniteLossError, match=r"at step \d+") as e:
        train(config, tmp_path)
    bad = int(re.search(r"at step (\d+)", str(e.value)).group(1))
    assert saved_steps(tmp_path)[-1] == bad - 1
    assert f"last good checkpoint is step {bad - 1}" in str(e.value)
    for name, value in final_params(tmp_path).items():
        assert np.all(np.isfinite(value)), name


def test_bfloat16_compute_keeps_float32_params(tmp_path):
    result = train(_config("model.dtype=bfloat16", "num_train_steps=3", "eval_every_steps=3"),
                   tmp_path)
    assert np.isfinite(result["eval_loss"])
    params = final_params(tmp_path)
    kernels = [v for k, v in params.items() if "params" in k and "kernel" in k]
    assert kernels and all(v.dtype == np.float32 for v in kernels)


def test_batch_size_must_split_over_devices(tmp_path, monkeypatch):
    from jaxvision.train import sharding

    mesh = sharding.make_mesh(jax.devices()[:1])
    with pytest.raises(ValueError, match="eval_batch_size=5 must be divisible"):
        sharding.check_batch_size(5, type("M", (), {"devices": np.zeros(2)})(),
                                  "eval_batch_size")
    assert sharding.check_batch_size(32, mesh) == 32


def test_tfds_source_trains_end_to_end(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("array_record")
    config = _config("data.source=tfds", "data.tfds_name=mnist", "num_train_steps=4",
                     "eval_every_steps=4", "eval_batch_size=48")
    with tfds.testing.mock_data(num_examples=100):
        result = train(config, tmp_path)
    assert result["step"] == 4 and result["eval_count"] == 100
    assert np.isfinite(result["eval_loss"])
    assert (tmp_path / "classes.json").read_text() == '["0", "1", "2", "3", "4", "5", "6", ' \
                                                      '"7", "8", "9"]'


def _digit_folder(root):
    """A tiny real image folder: 3 classes x 12 MNIST digits per split, as PNG files."""
    from PIL import Image

    from jaxvision.data import mnist_source

    src = mnist_source("test")
    for split, offset in (("train", 0), ("test", 100)):
        for cls in range(3):
            folder = root / split / f"digit{cls}"
            folder.mkdir(parents=True)
            rows = np.flatnonzero(src.labels == cls)[offset:offset + 12]
            for i, r in enumerate(rows):
                Image.fromarray(src.images[r][..., 0]).save(folder / f"{i:02d}.png")
    return root


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_corrupt_image_raises_naming_it_or_is_skipped_and_counted(tmp_path, on_error):
    from jaxvision.data import ImageDecodeError

    root = _digit_folder(tmp_path / "data")
    bad = root / "test" / "digit1" / "05.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated PNG
    config = _config("data.source=image_folder", f"data.root={root}", "model.num_classes=3",
                     "data.grayscale=True",
                     f"data.on_error={on_error}", "num_train_steps=2", "eval_every_steps=2",
                     "batch_size=8", "eval_batch_size=12")
    if on_error == "raise":
        with pytest.raises(ImageDecodeError, match=str(bad)):
            train(config, tmp_path / "run")
        return
    result = train(config, tmp_path / "run")
    assert result["skipped_files"] == [str(bad)]
    assert result["eval_count"] == 36  # random access keeps the count: the next file stands in


def _localization(*extra: str):
    from tests.train.localization_run import LOCALIZATION

    return load_config("lenet5_mnist", [*LOCALIZATION, *extra])


def test_localization_trains_resumes_and_evaluates_in_process(tmp_path):
    from jaxvision.train import workdir as wd
    from tests.train.localization_run import scene_sources

    train_src, test_src = scene_sources()
    config = _localization("num_train_steps=20", "eval_every_steps=10")
    result = train(config, tmp_path, train_source=train_src, eval_source=test_src)
    assert result["step"] == 20 and result["eval_count"] == 128
    for key in ("eval_localization", "eval_mean_iou", "eval_top1"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["eval_mean_iou"] > 0.2  # standardised targets: the mean box already overlaps
    assert {"ce", "regression", "top1", "loss", "lr"} <= read_metrics(tmp_path, "train")[-1].keys()
    assert wd.read_input_shape(tmp_path) == (32, 32, 1)
    again = evaluate_checkpoint(config, tmp_path, eval_source=test_src)
    assert again["eval_localization"] == result["eval_localization"]
    # jaxvision predict: the top classes and the box, in the image's pixels.
    from PIL import Image

    from jaxvision.train.predict import predict_files

    Image.fromarray(test_src.images[0, ..., 0]).save(tmp_path / "scene.png")
    step, (out,) = predict_files(config, tmp_path, [str(tmp_path / "scene.png")], top_k=3)
    assert step == 20 and sorted(out) == ["boxes", "top"] and len(out["top"]) == 3
    x1, y1, x2, y2 = out["boxes"]
    assert -16 < x1 < x2 < 48 and -16 < y1 < y2 < 48
    longer = train(_localization("num_train_steps=25", "eval_every_steps=10"), tmp_path,
                   train_source=train_src, eval_source=test_src)
    assert longer["step"] == 25
    assert [r["step"] for r in read_metrics(tmp_path, "train")] == list(range(1, 26))


def test_localization_non_finite_loss_stops_with_step(tmp_path):
    from tests.train.localization_run import scene_sources

    train_src, test_src = scene_sources(64, 64)
    config = _localization("optimizer.learning_rate=1e30", "schedule.warmup_steps=0",
                           "checkpoint.every_steps=1", "optimizer.momentum=0.0")
    with pytest.raises(NonFiniteLossError, match=r"at step \d+") as e:
        train(config, tmp_path, train_source=train_src, eval_source=test_src)
    bad = int(re.search(r"at step (\d+)", str(e.value)).group(1))
    assert saved_steps(tmp_path)[-1] == bad - 1


def test_task_refuses_what_it_cannot_do(tmp_path):
    from jaxvision.data import mnist_source
    from jaxvision.train import ConfigError
    from tests.train.localization_run import scene_sources

    train_src, test_src = scene_sources(64, 64)
    with pytest.raises(ConfigError, match="augment.flip.*moves the object without its box"):
        train(_localization("augment.flip=True"), tmp_path, train_source=train_src,
              eval_source=test_src)
    with pytest.raises(ConfigError, match="target_mean has 3 values"):
        train(_localization("localization.target_mean=[0., 0., 0.]",
                            "localization.target_std=[1., 1., 1.]"), tmp_path)
    # MNIST digits carry no boxes: the error names the missing field and what there is.
    with pytest.raises(ValueError, match=r"needs the batch field\(s\) \['boxes'\]; the "
                                         r"training source gives \['image', 'label'\]"):
        train(_localization(), tmp_path, train_source=mnist_source("test"),
              eval_source=test_src)
