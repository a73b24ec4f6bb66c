"""Tests for jaxvision/models/backbone.py against torchvision's IntermediateLayerGetter,
resnet_fpn_backbone and _resnet_fpn_extractor (random trained-like weights, odd sizes)."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from flax import traverse_util
from torchvision.models._utils import IntermediateLayerGetter as TorchGetter
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone as torch_rfb
from torchvision.ops.misc import FrozenBatchNorm2d

from jaxvision.models import get_model
from jaxvision.models.backbone import (
    BackboneWithFPN,
    IntermediateLayerGetter,
    frozen_patterns,
    resnet_fpn_backbone,
)
from jaxvision.weights.convert import CheckpointMismatchError, convert_state_dict, torch_key
from tests.models.test_resnet import trained_like
from tests.torch_parity import nchw_to_nhwc

HW = (97, 131)
ALL = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}


@functools.lru_cache(maxsize=1)
def tv_resnet50() -> torch.nn.Module:
    torch.manual_seed(0)
    return trained_like(torchvision.models.resnet50()).eval()


def _images(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, *HW, generator=torch.Generator().manual_seed(seed))


def _assert_maps_close(out: dict, ref: dict, tol: float = 1e-4) -> None:
    assert list(out) == list(ref)
    for k, r in ref.items():
        r = nchw_to_nhwc(r)
        assert out[k].shape == r.shape, k
        err = float(np.abs(np.asarray(out[k]) - r).max())
        print(f"{k} {r.shape}: max|jax - torch| = {err:.3g} (scale {np.abs(r).max():.3g})")
        assert err < tol, (k, err)


def test_resnet50_getter_matches_torchvision() -> None:
    tv = TorchGetter(tv_resnet50(), ALL).eval()
    x = _images()
    with torch.no_grad():
        ref = tv(x)
    getter = IntermediateLayerGetter(get_model("resnet50"), ALL)
    # strict conversion: torchvision's getter keys (conv1.weight, layer4.2.bn3.running_var,
    # no fc) are exactly our variables
    variables = convert_state_dict(getter, tv.state_dict())
    _assert_maps_close(jax.jit(getter.apply)(variables, nchw_to_nhwc(x)), ref)


def test_getter_stops_at_the_last_returned_map() -> None:
    """Cut at layer2, like torchvision's getter: no layer3, layer4 or fc variables."""
    tv = TorchGetter(torchvision.models.resnet18(), {"layer2": "feat", "relu": "s2"})
    getter = IntermediateLayerGetter(get_model("resnet18"), {"layer2": "feat", "relu": "s2"})
    variables = convert_state_dict(getter, tv.state_dict())  # strict both ways
    assert not any(k.startswith(("layer3", "layer4", "fc")) for k in variables["params"])
    out = getter.apply(variables, jnp.zeros((1, *HW, 3)))  # no jit: it would sort the keys
    assert list(out) == ["s2", "feat"]  # the model's order, as torchvision
    assert out["s2"].shape == (1, 49, 66, 64) and out["feat"].shape == (1, 13, 17, 128)
    with pytest.raises(CheckpointMismatchError, match="layer3"):
        convert_state_dict(getter, torchvision.models.resnet18().state_dict())


def test_getter_refuses_unknown_names() -> None:
    getter = IntermediateLayerGetter(get_model("resnet18"), {"layer5": "x"})
    with pytest.raises(ValueError, match="no feature map 'layer5'.*layer4"):
        jax.eval_shape(getter.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="return_layers is empty"):
        jax.eval_shape(IntermediateLayerGetter(get_model("vgg11"), []).init,
                       jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(TypeError, match="mapping or a list"):
        IntermediateLayerGetter(get_model("vgg11"), "conv5_3")


def _tv_fpn_backbone(name: str, tv_body: torch.nn.Module, **kw) -> torch.nn.Module:
    """torchvision's resnet_fpn_backbone with ``tv_body``'s weights and random FPN biases."""
    torch.manual_seed(2)
    tv = torch_rfb(backbone_name=name, weights=None, **kw)
    missing, unexpected = tv.body.load_state_dict(tv_body.state_dict(), strict=False)
    assert not missing and all(k.startswith(("fc.", "layer")) for k in unexpected)
    with torch.no_grad():
        for n, p in tv.fpn.named_parameters():
            if n.endswith("bias"):
                p.normal_(0.0, 0.5)
    return tv.eval()


def test_resnet50_fpn_backbone_matches_torchvision() -> None:
    """The whole BackboneWithFPN: FrozenBatchNorm body, FPN levels '0'..'3' and 'pool'."""
    tv = _tv_fpn_backbone("resnet50", tv_resnet50(), trainable_layers=3)
    assert isinstance(tv.body.bn1, FrozenBatchNorm2d)
    x = _images()
    with torch.no_grad():
        ref = tv(x)
    model = resnet_fpn_backbone("resnet50", trainable_layers=3)
    variables = convert_state_dict(model, tv.state_dict())  # body.*, fpn.inner_blocks.0.0.*
    # train=True too: frozen BatchNorm ignores the mode, as torchvision's
    out, upd = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))(
        variables, nchw_to_nhwc(x))
    _assert_maps_close(out, ref)
    assert list(out) == ["0", "1", "2", "3", "pool"]
    assert out["pool"].shape == (2, 2, 3, 256)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda a, b: np.array_equal(np.asarray(a), b), upd["batch_stats"],
        variables["batch_stats"]))


def test_returned_layers_subset_matches_torchvision() -> None:
    """returned_layers=[2, 3] on ResNet-18: the body stops at layer3, channels inferred."""
    torch.manual_seed(3)
    tv = _tv_fpn_backbone("resnet18", trained_like(torchvision.models.resnet18()),
                          returned_layers=[2, 3])
    x = _images(batch=1)
    with torch.no_grad():
        ref = tv(x)
    model = resnet_fpn_backbone("resnet18", returned_layers=[2, 3])
    variables = convert_state_dict(model, tv.state_dict())
    assert "layer4.0" not in variables["params"]["body"]
    _assert_maps_close(model.apply(variables, nchw_to_nhwc(x)), ref)


def _param_paths(model: BackboneWithFPN) -> list[str]:
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    return ["/".join(p) for p in traverse_util.flatten_dict(shapes["params"])]


@pytest.mark.parametrize("trainable_layers", range(6))
def test_frozen_patterns_freeze_what_torchvision_freezes(trainable_layers: int) -> None:
    tv = torch_rfb(backbone_name="resnet18", weights=None, trainable_layers=trainable_layers)
    # FrozenBatchNorm2d keeps weight/bias as buffers: frozen in torchvision by construction.
    expected = {n for n, p in tv.named_parameters() if not p.requires_grad}
    expected |= {f"{n}.{leaf}" for n, m in tv.named_modules()
                 if isinstance(m, FrozenBatchNorm2d) for leaf in ("weight", "bias")}
    model = resnet_fpn_backbone("resnet18", trainable_layers=trainable_layers)
    patterns = model.frozen_patterns()
    paths = _param_paths(model)
    frozen = {p for p in paths if any(re.fullmatch(r, p) for r in patterns)}
    # anchored: re.search (or re.match) selects the same paths as re.fullmatch
    assert frozen == {p for p in paths if any(re.search(r, p) for r in patterns)}
    assert {torch_key("params", tuple(p.split("/"))) for p in frozen} == expected
    # inside a detector the same parameters sit under "backbone/"
    nested = model.frozen_patterns(prefix="backbone")
    assert {p for p in paths if any(re.fullmatch(r, "backbone/" + p) for r in nested)} == frozen


def test_frozen_patterns_without_frozen_bn() -> None:
    pats = frozen_patterns(5, frozen_bn=False)
    assert [p for p in ("conv1/kernel", "bn1/scale", "layer1.0/bn1/bias", "fc/kernel")
            if any(re.fullmatch(r, p) for r in pats)] == ["fc/kernel"]
    pats = frozen_patterns(1, prefix="m/body", frozen_bn=False)
    assert any(re.fullmatch(r, "m/body/layer3.5/conv2/kernel") for r in pats)
    assert not any(re.fullmatch(r, "m/body/layer4.0/bn1/scale") for r in pats)
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        frozen_patterns(6)


def test_resnet_fpn_backbone_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        resnet_fpn_backbone("resnet50", trainable_layers=-1)
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        resnet_fpn_backbone("resnet50", returned_layers=[0, 1])
    with pytest.raises(ValueError, match="ImageNet ResNet"):
        resnet_fpn_backbone("resnet20")


def test_vgg_and_alexnet_getters() -> None:
    """The same getter serves VGG (FCN's pool3/pool4, SegNet's indices) and AlexNet."""
    vgg = IntermediateLayerGetter(get_model("vgg16", pool_indices=True),
                                  {"pool4": "pool4", "pool3": "pool3", "pool1_indices": "i1"})
    shapes = jax.eval_shape(vgg.init_with_output, jax.random.key(0), jnp.zeros((1, *HW, 3)))
    out, variables = shapes
    assert {k: v.shape for k, v in out.items()} == {
        "pool3": (1, 12, 16, 256), "pool4": (1, 6, 8, 512), "i1": (1, 48, 65, 64)}
    assert out["i1"].dtype == jnp.int32
    assert "features.24" not in variables["params"]  # conv5_1 lies past pool4
    alex = IntermediateLayerGetter(get_model("alexnet"), ["conv5"])
    out = jax.eval_shape(alex.init_with_output, jax.random.key(0), jnp.zeros((1, *HW, 3)))[0]
    assert out["conv5"].shape == (1, 5, 7, 256)
