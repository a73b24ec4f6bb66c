"""Real torchvision checkpoint files -> jaxvision variables -> torchvision's logits."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import torchvision

from jaxvision.models import get_model, list_models
from jaxvision.weights import (
    CheckpointMismatchError,
    convert_torchvision,
    load,
    read,
    sample_image,
    weights_info,
    write,
)
from tests.torch_parity import realistic_batchnorm


def _needs(model: str) -> None:
    if model not in list_models():
        pytest.skip(f"{model} is not registered in jaxvision.models yet")


@pytest.fixture(scope="module")
def resnet18_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A torchvision resnet18 with trained-like BatchNorm, saved both ways as torchvision
    names its files (``resnet18-<sha256 prefix>.pth``), and its logits on a real photo."""
    _needs("resnet18")
    folder = tmp_path_factory.mktemp("resnet18")
    torch.manual_seed(0)
    tv = realistic_batchnorm(torchvision.models.resnet18()).eval()
    files = {}
    for fmt, zipped in (("zip", True), ("legacy", False)):
        tmp = folder / f"{fmt}.tmp"
        torch.save(tv.state_dict(), tmp, _use_new_zipfile_serialization=zipped)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
        files[fmt] = tmp.rename(folder / f"resnet18-{fmt}-{digest}.pth")
    x = weights_info("resnet18").transforms()(sample_image())[None]
    with torch.inference_mode():
        ref = tv(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    return {"files": files, "x": x, "ref": ref, "tv": tv}


@jax.jit
def _resnet18_logits(variables: dict, x: jax.Array) -> jax.Array:
    return get_model("resnet18").apply(variables, x, train=False)  # compiled once per file


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_resnet18_pth_gives_torchvision_logits(resnet18_files: dict, fmt: str,
                                               tmp_path: Path) -> None:
    path = resnet18_files["files"][fmt]
    sd = read(path)
    assert set(sd) == set(resnet18_files["tv"].state_dict())
    variables = load("resnet18", path)
    out = np.asarray(_resnet18_logits(variables, resnet18_files["x"]))
    ref = resnet18_files["ref"]
    assert out.shape == (1, 1000)
    np.testing.assert_allclose(out, ref, atol=2e-4 * max(1.0, float(np.abs(ref).max())))
    assert out.argmax() == ref.argmax()
    # Through a URL (file://): downloaded into the cache, sha256-checked, same variables.
    via_url = load("resnet18", path.as_uri(), cache_dir=tmp_path, progress=False)
    assert (tmp_path / path.name).is_file()
    for a, b in zip(jax.tree_util.tree_leaves(via_url), jax.tree_util.tree_leaves(variables),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_converted_file_loads_back(resnet18_files: dict, tmp_path: Path) -> None:
    variables = load("resnet18", resnet18_files["files"]["zip"])
    for suffix in (".safetensors", ".msgpack"):
        back = load("resnet18", write(variables, tmp_path / f"r18{suffix}"))
        assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(variables)
        for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(variables),
                        strict=True):
            np.testing.assert_array_equal(a, b)


def test_mismatched_checkpoint_lists_keys(resnet18_files: dict, tmp_path: Path) -> None:
    sd = resnet18_files["tv"].state_dict()
    sd = {("layer9.extra" if k == "layer1.0.conv1.weight" else k): v for k, v in sd.items()}
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError) as err:
        load("resnet18", tmp_path / "bad.pth")
    assert "layer1.0.conv1.weight" in str(err.value) and "layer9.extra" in str(err.value)
    assert "bad.pth" in str(err.value)  # the report names the file
    # The same lists, for a program to act on (as torch's load_state_dict returns them).
    assert [k.split()[0] for k in err.value.missing] == ["layer1.0.conv1.weight"]
    assert err.value.unexpected == ["layer9.extra"] and err.value.wrong_shape == []
    # resnet18 weights for resnet34: every missing block is named.
    with pytest.raises(CheckpointMismatchError, match=r"layer3\.5\.conv1\.weight"):
        load("resnet34", resnet18_files["files"]["zip"])
    # A converted file checked against the wrong model lists its keys too.
    variables = load("resnet18", resnet18_files["files"]["zip"])
    with pytest.raises(CheckpointMismatchError, match="layer3.5/conv1/kernel") as err:
        load("resnet34", write(variables, tmp_path / "r18.safetensors"))
    # One report for both kinds of file: same wording, the file named.
    assert str(err.value).startswith(f"{tmp_path / 'r18.safetensors'}: variables do not fit "
                                     "resnet34: missing from the checkpoint (")


def test_old_densenet_key_names_are_renamed(tmp_path: Path) -> None:
    """The published DenseNet files use 'norm.1' where torchvision now says 'norm1'."""
    _needs("densenet121")
    sd = torchvision.models.densenet121().state_dict()
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
           for k, v in sd.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save(old, tmp_path / "densenet121-old.pth")
    variables = load("densenet121", tmp_path / "densenet121-old.pth")
    assert "norm1" in variables["params"]["features.denseblock1.denselayer1"]
    expected = convert_torchvision("densenet121", sd)  # the same weights under today's names
    same = jax.tree_util.tree_map(np.array_equal, variables, expected)
    assert all(jax.tree_util.tree_leaves(same))
