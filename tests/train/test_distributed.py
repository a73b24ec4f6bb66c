"""Data parallelism: 8 simulated devices and 2 processes (gloo) match 1 device; a
checkpoint written on 8 devices restores on 1; the same for the localization task."""

from __future__ import annotations

import socket
import subprocess

import numpy as np
import pytest

from tests.train.conftest import (
    REPO,
    cli_command,
    final_params,
    run_train,
    subprocess_env,
    train_losses,
)


@pytest.fixture(scope="module")
def eight_device_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("eight")
    proc = run_train(workdir, devices=8)
    assert "on 8 device(s)" in proc.stdout
    return workdir


def _assert_same_training(a, b, rtol=1e-4):
    la, lb = train_losses(a), train_losses(b)
    assert la.keys() == lb.keys() and len(la) == 60
    np.testing.assert_allclose([la[s] for s in sorted(la)], [lb[s] for s in sorted(lb)],
                               rtol=rtol, atol=1e-5)
    pa, pb = final_params(a), final_params(b)
    for k in pa:
        np.testing.assert_allclose(pa[k], pb[k], rtol=1e-3, atol=1e-4, err_msg=k)


def test_eight_devices_match_one(reference_run, eight_device_run):
    _assert_same_training(eight_device_run, reference_run)


def test_checkpoint_from_eight_devices_restores_on_one(eight_device_run):
    import jax

    from jaxvision.train.loop import evaluate_checkpoint, load_workdir_config
    from jaxvision.train.writers import read_metrics

    assert jax.device_count() == 1  # this test process
    got = evaluate_checkpoint(load_workdir_config(eight_device_run), eight_device_run)
    final = read_metrics(eight_device_run, "final")[-1]
    assert got["step"] == 60 and got["eval_count"] == final["eval_count"] == 2000
    assert abs(got["eval_top1"] - final["eval_top1"]) <= 1 / 2000
    assert got["eval_loss"] == pytest.approx(final["eval_loss"], rel=1e-4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(reference_run, tmp_path):
    workdir = tmp_path / "two_proc"
    port = _free_port()
    procs = [subprocess.Popen(
        cli_command(workdir, "--coordinator", f"localhost:{port}", "--num-processes", "2",
                    "--process-id", str(i)),
        env=subprocess_env(1), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    assert "on 2 device(s), 2 process(es)" in outs[0]
    _assert_same_training(workdir, reference_run)


def test_localization_eight_devices_match_one_and_restore_on_one(localization_reference_run,
                                                                 tmp_path):
    from jaxvision.train.loop import evaluate_checkpoint, load_workdir_config
    from jaxvision.train.writers import read_metrics
    from tests.train.localization_run import scene_sources

    workdir = tmp_path / "loc_eight"
    proc = run_train(workdir, devices=8, task="localization")
    assert "on 8 device(s)" in proc.stdout
    _assert_same_training(workdir, localization_reference_run)
    # The 8-device checkpoint evaluates on this 1-device process to the same metrics.
    got = evaluate_checkpoint(load_workdir_config(workdir), workdir,
                              eval_source=scene_sources()[1])
    final = read_metrics(workdir, "final")[-1]
    assert got["step"] == 60 and got["eval_count"] == final["eval_count"] == 128
    for key in ("eval_localization", "eval_top1"):
        assert abs(got[key] - final[key]) <= 1 / 128, key
    assert got["eval_mean_iou"] == pytest.approx(final["eval_mean_iou"], abs=1e-4)
