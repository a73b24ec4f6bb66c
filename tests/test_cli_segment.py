"""``jaxvision segment``: from a tiny segmentation workdir trained on real CamVid images, and
from a torchvision ``fcn_resnet50`` state dict (labels equal to torchvision's argmax); the
outputs' sizes are the inputs'; bad input names the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision.transforms._presets import SemanticSegmentation

from jaxvision.cli import main
from jaxvision.train import train_and_evaluate
from jaxvision.visualize import class_colors, colorize, overlay, voc_palette
from jaxvision.weights.hub import VOC_CATEGORIES
from tests.train.test_segmentation_task import _config, camvid_subset  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def workdir(camvid_subset, tmp_path_factory) -> Path:  # noqa: F811
    """A 2-step segmentation run on 8 CamVid images, canvas [48, 64]."""
    w = tmp_path_factory.mktemp("seg_workdir")
    train_and_evaluate(_config(camvid_subset, "dense.canvas=[48, 64]", "num_train_steps=2",
                               "eval_every_steps=2", "checkpoint.every_steps=2",
                               "checkpoint.keep_best=0"), w)
    return w


def _outputs(out: Path, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.asarray(Image.open(out / f"{stem}_{kind}.png"))
                 for kind in ("labels", "mask", "overlay"))


def test_segment_with_a_workdir(workdir, camvid_subset, tmp_path, capsys):  # noqa: F811
    photo = sorted((camvid_subset / "test" / "images").iterdir())[0]
    # A grey portrait crop: resizes past the landscape canvas, which grows to fit.
    grey = tmp_path / "grey.png"
    Image.open(photo).convert("L").crop((10, 20, 100, 141)).save(grey)
    out = tmp_path / "out"
    assert main(["segment", str(photo), str(grey), "--workdir", str(workdir),
                 "--out", str(out), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == lines and summary["step"] == 2
    for path, size in ((photo, (360, 480)), (grey, (121, 90))):
        labels, mask, over = _outputs(out, path.stem)
        assert labels.shape == size and mask.shape == over.shape == (*size, 3)
        assert labels.max() < 11
        np.testing.assert_array_equal(mask, colorize(labels, 11, palette=class_colors(11)))
        image = np.asarray(Image.open(path).convert("RGB"))
        np.testing.assert_array_equal(over, overlay(image, mask, 0.5))
        res = next(r for r in lines if r["image"] == str(path))
        assert res["size"] == list(size)
        names = summary["classes"]
        counts = np.bincount(labels.ravel(), minlength=11)
        order = [i for i in np.argsort(-counts, kind="stable") if counts[i]]
        assert list(res["class_shares"]) == [names[i] for i in order]  # most pixels first
        assert res["class_shares"] == pytest.approx(
            {names[i]: counts[i] / labels.size for i in order}, abs=1e-6)


def test_segment_with_torchvision_fcn_resnet50_equals_torchvision(camvid_subset,  # noqa: F811
                                                                 tmp_path, capsys):
    torch.manual_seed(0)
    net = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None,
                                                       num_classes=21).eval()
    weights = tmp_path / "fcn.pth"
    torch.save(net.state_dict(), weights)
    photo = sorted((camvid_subset / "test" / "images").iterdir())[1]
    out = tmp_path / "out"
    assert main(["segment", str(photo), "--model", "fcn_resnet50", "--weights", str(weights),
                 "--size", "64", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"{photo}: 360x480, ")
    labels, mask, _ = _outputs(out, photo.stem)
    img = Image.open(photo).convert("RGB")
    with torch.no_grad():
        logits = net(SemanticSegmentation(resize_size=64)(img)[None])["out"]
        ref = F.interpolate(logits, size=(img.height, img.width), mode="bilinear",
                            align_corners=False).argmax(1)[0].numpy()
    assert labels.shape == ref.shape == (360, 480)
    assert np.mean(labels != ref) < 1e-3
    assert len(np.unique(ref)) > 1  # a random net still picks several classes
    np.testing.assert_array_equal(mask, colorize(labels, 21, palette=voc_palette(21)))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"] == list(VOC_CATEGORIES) and summary["size"] == 64


def test_segment_bad_input_names_the_file(workdir, tmp_path, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    out = str(tmp_path / "out")
    for argv, named in (
            ([str(text), "--workdir", str(workdir)], "notes.jpg"),
            ([str(text.with_name("absent.png")), "--workdir", str(workdir)], "absent.png"),
            ([str(text.with_name("a.png")), "--workdir", str(tmp_path / "nowhere")], "a.png"),
            ([str(text), "--model", "fcn_resnet50"], "--weights"),
            ([str(text), "--workdir", str(workdir), "--size", "64"], "--size")):
        assert main(["segment", *argv, "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith("jaxvision segment: error: ") and named in err, err
    # A readable image and a missing workdir: the workdir is named.
    Image.new("RGB", (8, 6)).save(tmp_path / "ok.png")
    assert main(["segment", str(tmp_path / "ok.png"), "--workdir", str(tmp_path / "nowhere"),
                 "--out", out]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not Path(out).exists()
