"""Preemption: SIGKILL at several points and SIGTERM; resumed runs end bit-identical."""

from __future__ import annotations

import signal
import subprocess

import numpy as np

from tests.train.conftest import (
    REPO,
    cli_command,
    final_params,
    run_train,
    saved_steps,
    subprocess_env,
    train_losses,
    wait_for_checkpoint,
)


def _assert_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_sigkill_at_three_points_then_resume_is_bit_identical(reference_run, tmp_path):
    workdir = tmp_path / "killed"
    killed_after = []
    for k in (10, 30, 50):
        proc = subprocess.Popen(cli_command(workdir), env=subprocess_env(), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for_checkpoint(proc, workdir, k)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        killed_after.append(max(saved_steps(workdir)))
        assert killed_after[-1] < 60
    assert killed_after == sorted(killed_after)
    run_train(workdir)  # resumes from the latest checkpoint and finishes
    assert max(saved_steps(workdir)) == 60
    _assert_identical(final_params(workdir), final_params(reference_run))
    # Steps logged by the resumed runs carry the same losses as the uninterrupted run.
    ref, got = train_losses(reference_run), train_losses(workdir)
    assert got.keys() == ref.keys()
    assert all(got[s] == ref[s] for s in ref)


def test_sigterm_saves_and_exits_cleanly_then_resumes_identically(reference_run, tmp_path):
    workdir = tmp_path / "preempted"
    proc = subprocess.Popen(cli_command(workdir), env=subprocess_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_checkpoint(proc, workdir, 20)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    step = max(saved_steps(workdir))
    assert 20 < step < 60, (step, out[-2000:])  # saved at the step it was told to stop
    assert f"SIGTERM: saved a checkpoint at step {step}" in out
    assert "final:" not in out
    run_train(workdir)
    _assert_identical(final_params(workdir), final_params(reference_run))


def test_localization_sigterm_then_resume_is_bit_identical(localization_reference_run,
                                                           tmp_path):
    # The same engine path for another task: a boxes batch, the localization loss, its
    # evaluators; SIGTERM saves, the resumed run ends where the uninterrupted one did.
    workdir = tmp_path / "loc_preempted"
    proc = subprocess.Popen(cli_command(workdir, task="localization"), env=subprocess_env(),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    wait_for_checkpoint(proc, workdir, 20)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    step = max(saved_steps(workdir))
    assert 20 < step < 60, (step, out[-2000:])
    assert f"SIGTERM: saved a checkpoint at step {step}" in out and "final:" not in out
    resumed = run_train(workdir, task="localization")
    assert f"resumed at step {step}" in resumed.stdout
    assert "final: step 60, test localization accuracy" in resumed.stdout
    _assert_identical(final_params(workdir), final_params(localization_reference_run))
    ref, got = train_losses(localization_reference_run), train_losses(workdir)
    assert got.keys() == ref.keys() and all(got[s] == ref[s] for s in ref)
