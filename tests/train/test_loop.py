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
