"""The model commands of the CLI: ``jaxvision summary / classify / convert``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from jaxvision.cli import main
from jaxvision.models import list_models
from jaxvision.weights import imagenet_classes, load, sample_image, weights_info
from tests.torch_parity import realistic_batchnorm


def _needs(model: str) -> None:
    if model not in list_models():
        pytest.skip(f"{model} is not registered in jaxvision.models yet")


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A real torchvision resnet18 checkpoint (trained-like BatchNorm statistics)."""
    _needs("resnet18")
    torch.manual_seed(0)
    tv = realistic_batchnorm(torchvision.models.resnet18()).eval()
    path = tmp_path_factory.mktemp("ck") / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    return path, tv


def test_summary_command(capsys: pytest.CaptureFixture) -> None:
    _needs("resnet18")
    assert main(["summary", "resnet18", "--depth", "1", "--no-flops"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 11,689,512" in out and "layer4.1 (BasicBlock)" in out
    assert "layer4.1.conv1" not in out  # depth 1
    assert main(["summary", "resnet18", "--input-size", "160", "128", "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)
    assert totals["input_shape"] == [1, 160, 128, 3] and totals["output_shape"] == "[1, 1000]"
    # XLA's cost analysis counts only the kernel taps that land inside the input, while
    # torchvision's MAC convention counts padded taps too: at 160x128, layer4's 5x4 maps
    # lose ~28% of their 3x3 taps to padding, so FLOPs sit a little under 2x MACs here.
    assert 2 * 0.8 * totals["macs"] < totals["flops"] < 2 * 1.05 * totals["macs"]


def test_summary_errors(capsys: pytest.CaptureFixture) -> None:
    assert main(["summary", "no_such_net"]) == 2
    assert "unknown model 'no_such_net'" in capsys.readouterr().err
    assert main(["summary", "--list"]) == 0
    assert capsys.readouterr().out.split() == list_models()


def test_classify_top5_equals_torchvision(resnet18, capsys: pytest.CaptureFixture,
                                          shared_data: Path) -> None:
    path, tv = resnet18
    images = [str(sample_image()), str(shared_data / "photos" / "chelsea.png")]
    assert main(["classify", *images, "--model", "resnet18", "--weights", str(path),
                 "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    preset = weights_info("resnet18").transforms()
    x = torch.from_numpy(preset.batch(images).transpose(0, 3, 1, 2))
    with torch.inference_mode():
        probs = torch.softmax(tv(x), -1).numpy()
    names = imagenet_classes()
    for line, p in zip(lines, probs, strict=True):
        expected = np.argsort(-p)[:5]
        assert [t["index"] for t in line["top"]] == list(expected)
        assert [t["label"] for t in line["top"]] == [names[i] for i in expected]
        np.testing.assert_allclose([t["prob"] for t in line["top"]], p[expected], atol=1e-4)
        assert not line["random_weights"]
    assert main(["classify", images[0], "--model", "resnet18", "--weights", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == images[0] and out.splitlines()[1].startswith("  1. ")


def test_classify_refuses_without_weights(capsys: pytest.CaptureFixture) -> None:
    assert main(["classify", str(sample_image()), "--model", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert "no --weights" in err and "meaningless" in err
    _needs("resnet18")
    assert main(["classify", str(sample_image()), "--model", "resnet18",
                 "--random-weights", "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    assert "random weights" in captured.err and "RANDOM WEIGHTS" in captured.out
    assert len(captured.out.splitlines()) == 3


def test_classify_bad_inputs(resnet18, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, _ = resnet18
    assert main(["classify", str(tmp_path / "missing.jpg"), "--model", "resnet18",
                 "--weights", str(path)]) == 2
    assert "missing.jpg" in capsys.readouterr().err
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("not weights")
    assert main(["classify", str(sample_image()), "--model", "resnet18",
                 "--weights", str(not_a_checkpoint)]) == 2
    assert "not a checkpoint" in capsys.readouterr().err


def test_convert_writes_safe_loadable_files(resnet18, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    path, _ = resnet18
    reference = load("resnet18", path)
    for suffix in (".safetensors", ".msgpack"):
        dst = tmp_path / f"r18{suffix}"
        assert main(["convert", "resnet18", str(path), str(dst)]) == 0
        assert "11,689,512 parameters" in capsys.readouterr().out
        back = load("resnet18", dst)
        np.testing.assert_array_equal(back["params"]["fc"]["kernel"],
                                      reference["params"]["fc"]["kernel"])
        np.testing.assert_array_equal(back["batch_stats"]["bn1"]["var"],
                                      reference["batch_stats"]["bn1"]["var"])
        assert b"torch._utils" not in dst.read_bytes()[:4096]
    # The converted file works with classify too.
    assert main(["classify", str(sample_image()), "--model", "resnet18",
                 "--weights", str(tmp_path / "r18.safetensors")]) == 0


def test_convert_errors(resnet18, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, _ = resnet18
    assert main(["convert", "resnet18", str(path), str(tmp_path / "out.pth")]) == 2
    assert ".safetensors or .msgpack" in capsys.readouterr().err
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"fc.weight": Exploit()}, tmp_path / "evil.pth")
    assert main(["convert", "resnet18", str(tmp_path / "evil.pth"),
                 str(tmp_path / "evil.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "posix.system" in err and "evil.pth" in err
    assert not marker.exists() and not (tmp_path / "evil.safetensors").exists()
    assert main(["convert", "resnet34", str(path), str(tmp_path / "r34.msgpack")]) == 2
    err = capsys.readouterr().err
    assert "layer3.5.conv1.weight" in err and "resnet18.pth" in err
