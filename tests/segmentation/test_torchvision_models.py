"""torchvision's FCN and DeepLabV3 (jaxvision/segmentation/torchvision_models.py) vs torch."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.models.segmentation as tvseg

from jaxvision.models import get_model
from jaxvision.segmentation.torchvision_models import DeepLabHead, FCNHead, upsample_bilinear
from jaxvision.weights import convert_torchvision
from jaxvision.weights.convert import CheckpointMismatchError, variable_shapes
from tests.models.test_resnet import trained_like
from tests.torch_parity import nchw_to_nhwc

NAMES = ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101")
WEIGHTS = {"fcn_resnet50": tvseg.FCN_ResNet50_Weights,
           "fcn_resnet101": tvseg.FCN_ResNet101_Weights,
           "deeplabv3_resnet50": tvseg.DeepLabV3_ResNet50_Weights,
           "deeplabv3_resnet101": tvseg.DeepLabV3_ResNet101_Weights}


def _torch_model(name: str, **kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(tvseg, name)(weights=None, weights_backbone=None, **kw).eval()


@pytest.mark.parametrize(("hw", "size"), [((13, 17), (97, 131)), ((1, 1), (13, 17)),
                                          ((12, 16), (5, 7)), ((7, 9), (7, 9))])
def test_upsample_bilinear_matches_torch_interpolate(hw: tuple[int, int],
                                                     size: tuple[int, int]) -> None:
    x = np.random.default_rng(0).standard_normal((2, *hw, 3)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=size, mode="bilinear",
                        align_corners=False)
    out = jax.jit(upsample_bilinear, static_argnums=1)(jnp.asarray(x), size)
    assert out.shape == (2, *size, 3)
    np.testing.assert_allclose(np.asarray(out), nchw_to_nhwc(ref), rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_equals_torchvision(name: str) -> None:
    model = get_model(name, num_classes=21, aux_loss=True)
    params = variable_shapes(model, (64, 64, 3))["params"]
    ours = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    # torchvision's own count of the model (building the torch ResNet-101s costs seconds).
    assert ours == WEIGHTS[name].COCO_WITH_VOC_LABELS_V1.meta["num_params"]


@pytest.mark.parametrize(("name", "num_classes", "batch"), [("fcn_resnet50", 21, 2),
                                                            ("deeplabv3_resnet50", 5, 1)])
def test_eval_outputs_equal_torchvision(name: str, num_classes: int, batch: int) -> None:
    # Realistic BatchNorm statistics, residual branches small as in a trained ResNet (with
    # every BN scale in [0.5, 1.5] the logits reach ~100 and float32 roundoff ~1e-3).
    tv = trained_like(_torch_model(name, num_classes=num_classes, aux_loss=True))
    # num_classes and aux_loss are read off the checkpoint.
    variables = convert_torchvision(name, tv.state_dict())
    model = get_model(name, num_classes=num_classes, aux_loss=True)
    x = torch.randn(batch, 3, 97, 131, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = tv(x)
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, nchw_to_nhwc(x))
    assert set(out) == {"out", "aux"}
    for key in ("out", "aux"):
        assert out[key].shape == (batch, 97, 131, num_classes)
        want = nchw_to_nhwc(ref[key])
        assert float(np.abs(want).max()) > 0.1  # a real signal, not all zeros
        print(f"{name} {key}: max|jax - torch| = {np.abs(np.asarray(out[key]) - want).max():.3g}"
              f" (logit scale {np.abs(want).max():.3g})")
        np.testing.assert_allclose(np.asarray(out[key]), want, rtol=0, atol=1e-4,
                                   err_msg=f"{name} {key}")


def test_aux_loss_default_and_checkpoint_mismatch() -> None:
    model = get_model("fcn_resnet50")  # torchvision's defaults: 21 classes, no aux head
    x = jax.ShapeDtypeStruct((1, 33, 35, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(model.apply, variables, x)
    assert set(out) == {"out"} and out["out"].shape == (1, 33, 35, 21)
    assert "aux_classifier" not in variables["params"]
    sd = _torch_model("fcn_resnet50", num_classes=3, aux_loss=True).state_dict()
    with pytest.raises(CheckpointMismatchError, match="aux_classifier.0.weight"):
        convert_torchvision("fcn_resnet50", sd, aux_loss=False)


@pytest.mark.parametrize("head", [FCNHead(4), DeepLabHead(4, atrous_rates=(1, 2, 3))])
def test_heads_train_mode_use_dropout_and_batch_statistics(head: nn.Module) -> None:
    # The heads alone (the ResNet's train mode is tested with the classifiers).
    x = jax.random.normal(jax.random.key(1), (2, 9, 11, 32))
    variables = jax.jit(head.init)(jax.random.key(0), x)

    @jax.jit
    def train(v: dict, seed: int) -> tuple[jax.Array, dict]:
        return head.apply(v, x, train=True, rngs={"dropout": jax.random.key(seed)},
                          mutable=["batch_stats"])

    (a, stats), (b, _) = train(variables, 0), train(variables, 1)
    assert a.shape == (2, 9, 11, 4)
    assert float(jnp.abs(a - b).max()) > 0  # dropout differs per rng
    evaluate = jax.jit(head.apply)
    np.testing.assert_array_equal(evaluate(variables, x), evaluate(variables, x))
    moved = jax.tree_util.tree_map(lambda s, t: float(jnp.abs(s - t).max()),
                                   stats["batch_stats"], variables["batch_stats"])
    assert min(jax.tree_util.tree_leaves(moved)) > 0  # every BatchNorm updated


def test_replace_stride_with_dilation_is_fixed() -> None:
    with pytest.raises(TypeError, match="replace_stride_with_dilation"):
        get_model("fcn_resnet50", replace_stride_with_dilation=(False, False, True))
