"""jaxvision.weights.transforms equals torchvision's ImageClassification preset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torchvision.models as tvm
import torchvision.transforms as T
from PIL import Image

from jaxvision.weights import (
    ImageClassificationPreset,
    imagenet_classes,
    imagenet_wnids,
    load_image,
    preprocess,
    sample_image,
    weights_info,
)

PRESETS = {"resnet50": tvm.ResNet50_Weights.IMAGENET1K_V1,
           "inception_v3": tvm.Inception_V3_Weights.IMAGENET1K_V1}


@pytest.mark.parametrize("model", PRESETS)
def test_preset_equals_torchvision_on_real_photos(shared_data: Path, model: str) -> None:
    reference = PRESETS[model].transforms()
    ours = weights_info(model).transforms()
    photos = sorted((shared_data / "photos").iterdir())
    assert len(photos) >= 5
    for photo in photos:
        img = Image.open(photo).convert("RGB")  # PNGs with alpha: torchvision needs RGB too
        expected = reference(img).numpy().transpose(1, 2, 0)
        got = ours(photo)
        assert got.shape == (ours.crop_size,) * 2 + (3,) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=photo.name)
        np.testing.assert_allclose(preprocess(np.asarray(img), resize_size=ours.resize_size,
                                              crop_size=ours.crop_size), expected, atol=1e-6)


def test_small_image_is_padded_like_torchvision() -> None:
    reference = tvm.ResNet50_Weights.IMAGENET1K_V1.transforms()
    reference.resize_size = [200]  # shorter side 200 < crop 224: torchvision zero-pads
    img = Image.open(sample_image()).convert("RGB")
    expected = reference(img).numpy().transpose(1, 2, 0)
    got = ImageClassificationPreset(resize_size=200, crop_size=224)(img)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8"):
        preprocess(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8"):
        preprocess(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(TypeError, match="PIL image"):
        preprocess([1, 2, 3])
    with pytest.raises(ValueError, match="cannot read"):
        preprocess(Path(__file__))


def test_load_image_rules_equal_torchvision(shared_data: Path) -> None:
    """Both resize rules of load_image, pixel for pixel against torchvision on PIL."""
    photo = shared_data / "photos" / "chelsea.png"
    img = Image.open(photo).convert("RGB")
    # torchvision's ImageNet rule, square and (H, W) crops.
    for size, resize in ((224, 256), ((160, 96), 183)):
        expected = np.asarray(T.Compose([T.Resize(resize), T.CenterCrop(size)])(img))
        np.testing.assert_array_equal(load_image(photo, size, resize_size=resize), expected)
    # The small-image rule: the whole picture stretched, aspect not kept.
    expected = np.asarray(T.Resize((28, 40))(img.convert("L")))[..., None]
    got = load_image(photo, (28, 40), mode="L")
    assert got.shape == (28, 40, 1) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    assert load_image(photo).shape == (*img.size[::-1], 3)


def test_load_image_names_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"cannot read .*notes\.png"):
        load_image(tmp_path / "notes.png", 32)
    with pytest.raises(ValueError, match="mode"):
        load_image(sample_image(), mode="CMYK")


def test_imagenet_classes_are_torchvision_categories() -> None:
    assert list(imagenet_classes()) == tvm.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    assert weights_info("vgg16").categories[0] == "tench"
    assert len(set(imagenet_classes())) == 1000
    assert imagenet_wnids()[:2] == ("n01440764", "n01443537")
