"""Helpers for the training tests: a tiny LeNet-5 config and subprocess runs of the CLI, for
each task (classification: ``jaxvision train``; localization: ``tests.train.localization_run``,
in-memory scenes with boxes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
XLA_CACHE = Path(tempfile.gettempdir()) / "jaxvision-test-xla-cache"


def enable_compilation_cache() -> None:
    """Shares compiled XLA programs between this process and the training subprocesses:
    the tests run the same tiny config many times, and compiling it dominates their time.
    A cached executable is the one a fresh compile would produce, so results are unchanged."""
    import jax

    settings = {"jax_compilation_cache_dir": str(XLA_CACHE),
                "jax_persistent_cache_min_compile_time_secs": 0,
                "jax_persistent_cache_min_entry_size_bytes": 0}
    for name, value in settings.items():
        os.environ[name.upper()] = str(value)
        jax.config.update(name, value)


enable_compilation_cache()

# 60 steps of batch 32 on the embedded MNIST subset, random crops on, a checkpoint every 10
# steps, an evaluation every 20: a few seconds, yet every part of the loop runs.
TINY = ["num_train_steps=60", "batch_size=32", "eval_batch_size=400", "eval_every_steps=20",
        "checkpoint.every_steps=10", "checkpoint.keep=10", "log_every_steps=1",
        "augment.crop_padding=2", "progress_bar=False", "tensorboard=False",
        "schedule.warmup_steps=5"]


def cli_command(workdir: Path, *extra: str, task: str = "classification") -> list[str]:
    """The command line of the tiny run of ``task``."""
    if task == "localization":
        return [sys.executable, "-m", "tests.train.localization_run", str(workdir), *extra]
    return [sys.executable, "-m", "jaxvision.cli", "train", "--config", "lenet5_mnist",
            "--workdir", str(workdir), *TINY, *extra]


def subprocess_env(devices: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    return env


def run_train(workdir: Path, *extra: str, devices: int = 1, timeout: float = 300,
              task: str = "classification") -> subprocess.CompletedProcess:
    """Runs the tiny config of ``task`` in a fresh process; asserts success."""
    proc = subprocess.run(cli_command(workdir, *extra, task=task), env=subprocess_env(devices),
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train_losses(workdir: Path) -> dict[int, float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"}


def saved_steps(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def wait_for_checkpoint(proc: subprocess.Popen, workdir: Path, step: int,
                        timeout: float = 240) -> None:
    """Polls until ``checkpoints/<step>`` is finalized (orbax renames it into place)."""
    end = time.monotonic() + timeout
    while step not in saved_steps(workdir):
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"training exited ({proc.returncode}) before checkpoint "
                                 f"{step}: {out[-3000:]}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"checkpoint {step} did not appear in {timeout}s")
        time.sleep(0.005)


def final_params(workdir: Path) -> dict[str, np.ndarray]:
    """The latest checkpoint's parameters, flattened to ``{"a/b/kernel": array}``."""
    import jax

    from jaxvision.train import checkpoint, sharding
    from jaxvision.train import workdir as wd
    from jaxvision.train.loop import abstract_state, load_workdir_config

    config = load_workdir_config(workdir)
    _, shapes, _ = abstract_state(config, wd.read_input_shape(workdir))
    mesh = sharding.make_mesh(jax.devices()[:1])
    state, _ = checkpoint.restore_params(workdir, shapes, sharding.replicated(mesh))
    flat = jax.tree_util.tree_flatten_with_path(
        {"params": state.params, "batch_stats": state.batch_stats, "opt": state.opt_state,
         "step": state.step})[0]
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted single-device run of the tiny config (shared by several tests)."""
    workdir = tmp_path_factory.mktemp("reference")
    run_train(workdir)
    return workdir


@pytest.fixture(scope="session")
def localization_reference_run(tmp_path_factory) -> Path:
    """An uninterrupted single-device run of the tiny localization config."""
    workdir = tmp_path_factory.mktemp("localization_reference")
    run_train(workdir, task="localization")
    return workdir
