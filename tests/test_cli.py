"""``jaxvision.cli``: a bare ``jaxvision`` prints its help; every command reports a bad input
the same way (``jaxvision COMMAND: error: ...`` on stderr, exit 2, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxvision.cli import COMMANDS, exit_code, main

REPO = Path(__file__).resolve().parents[1]


def test_bare_jaxvision_prints_help_and_runs_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jaxvision")
    assert all(name in out for name in COMMANDS), out
    assert list(tmp_path.iterdir()) == []  # no runs/ folder: no training started


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """One wrong input per command, and what its message must name."""
    nowhere = str(tmp / "nowhere")
    return {
        "summary": (["summary", "no_such_net"], "no_such_net"),
        "classify": (["classify", str(tmp / "missing.jpg"), "--model", "resnet18",
                      "--random-weights"], "missing.jpg"),
        "convert": (["convert", "resnet18", str(tmp / "missing.pth"),
                     str(tmp / "out.safetensors")], "missing.pth"),
        "train": (["train", "--workdir", nowhere, "optimizer.no_such_key=1"], "no_such_key"),
        "eval": (["eval", "--workdir", nowhere], "nowhere"),
        "predict": (["predict", str(tmp / "a.png"), "--workdir", nowhere], "nowhere"),
        "segment": (["segment", str(tmp / "missing.jpg"), "--workdir", nowhere, "--out",
                     str(tmp / "out")], "missing.jpg"),
        "detect": (["detect", str(tmp / "missing.jpg"), "--workdir", nowhere, "--out",
                    str(tmp / "out")], "missing.jpg"),
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_reports_errors_the_same_way(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv, named = _bad_inputs(tmp_path)[command]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line, *rest = captured.err.splitlines()
    assert line.startswith(f"jaxvision {command}: error: ") and named in line, captured.err
    assert not [r for r in rest if r.strip()], captured.err  # one line, no traceback
    assert not (tmp_path / "nowhere").exists()


def test_usage_errors_share_the_format(capsys: pytest.CaptureFixture) -> None:
    """argparse's own errors (exit 2) and ours read alike."""
    with pytest.raises(SystemExit) as e:
        main(["summary", "resnet18", "--input-size", "x", "1"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "jaxvision summary: error: argument --input-size")
    assert main(["predict", "a.png", "--checkpoint", "runs/x"]) == 2
    assert "jaxvision predict: error: --checkpoint runs/x is not a" in capsys.readouterr().err


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    for argv in (["--debug", "summary", "no_such_net"], ["summary", "no_such_net", "--debug"]):
        with pytest.raises(ValueError, match="no_such_net"):
            main(argv)
    monkeypatch.setenv("JAXVISION_DEBUG", "1")
    with pytest.raises(ValueError, match="no_such_net"):
        main(["summary", "no_such_net"])


def test_exit_codes_tell_bad_input_from_bugs() -> None:
    from jaxvision.train.config import ConfigError
    from jaxvision.train.loop import NonFiniteLossError
    from jaxvision.weights import CheckpointError, CheckpointMismatchError, DownloadError

    for error in (ConfigError("x"), CheckpointError("x"), CheckpointMismatchError("x"),
                  DownloadError("x"), FileNotFoundError("x"), ValueError("x")):
        assert exit_code(error) == 2, error
    assert exit_code(NonFiniteLossError("loss nan at step 3")) == 3
    # A bug keeps its traceback: main re-raises what it cannot explain to a user.
    for error in (TypeError("x"), KeyError("x"), AttributeError("x"), AssertionError()):
        assert exit_code(error) is None


def test_installed_entry_point_reports_without_traceback() -> None:
    """The real process a user runs: message on stderr, exit status 2."""
    proc = subprocess.run([sys.executable, "-m", "jaxvision.cli", "summary", "no_such_net"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("jaxvision summary: error: unknown model 'no_such_net'")
    assert "Traceback" not in proc.stderr


def test_train_eval_predict_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The three workdir commands on a 2-step LeNet-5 run: eval and predict read what train
    wrote, and predict takes a 28x28 digit as stored and any photo resized to 28x28 grey."""
    from jaxvision.data import mnist_source

    workdir = tmp_path / "run"
    assert main(["train", "--workdir", str(workdir), "num_train_steps=2", "batch_size=32",
                 "eval_batch_size=1000", "progress_bar=False", "tensorboard=False",
                 "schedule.warmup_steps=0", "log_every_steps=1"]) == 0
    capsys.readouterr()
    assert main(["eval", "--workdir", str(workdir), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["step"] == 2 and metrics["eval_count"] == 2000
    assert 0.0 <= metrics["eval_top1"] <= metrics["eval_top5"] <= 1.0

    digit = tmp_path / "digit.png"
    Image.fromarray(mnist_source("test")[0]["image"][..., 0]).save(digit)
    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)).save(photo)
    assert main(["predict", str(digit), str(photo), "--workdir", str(workdir), "--top-k", "3",
                 "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in lines] == [str(digit), str(photo)]
    for r in lines:
        probs = [t["probability"] for t in r["top"]]
        assert r["step"] == 2 and len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert {t["class"] for t in r["top"]} <= {str(i) for i in range(10)}
        assert 0.0 < sum(probs) <= 1.0 + 1e-6
