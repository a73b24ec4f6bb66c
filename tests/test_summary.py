"""jaxvision.summary: per-layer table, parameter totals, MACs and XLA FLOPs vs torchvision."""

from __future__ import annotations

import flax.linen as nn
import pytest
import torch
import torchvision.models as tvm

from jaxvision.models import list_models
from jaxvision.summary import summarize, summary

# XLA's HloCostAnalysis leaves out kernel taps on zero padding; AlexNet's 5x5 pad-2 and
# 3x3 pad-1 convs on 27x27 / 13x13 maps lose ~8% of their taps that way (see the module
# docstring), the others under 5%.
XLA_TOLERANCE = {"resnet50": 0.05, "vgg16": 0.05, "alexnet": 0.10}


def _needs(model: str) -> None:
    if model not in list_models():
        pytest.skip(f"{model} is not registered in jaxvision.models yet")


@pytest.mark.parametrize("model", sorted(XLA_TOLERANCE))
def test_totals_match_torchvision(model: str) -> None:
    _needs(model)
    meta = tvm.get_model_weights(model).IMAGENET1K_V1.meta
    s = summarize(model)
    assert s.params == meta["num_params"]
    assert s.output_shape == "[1, 1000]"
    # torchvision's "_ops" is GMAC of the convs and linears, padding taps included.
    assert s.macs / 1e9 == pytest.approx(meta["_ops"], rel=2e-3)
    two_gmac = 2e9 * meta["_ops"]
    assert abs(s.flops - two_gmac) / two_gmac < XLA_TOLERANCE[model]
    # What XLA counts: every non-padding multiply-add (2 FLOPs) plus a few elementwise ops.
    assert 2 * s.valid_macs <= s.flops <= 2 * s.valid_macs * 1.03
    text = str(s)
    assert f"Total params: {meta['num_params']:,}" in text and "FLOPs (XLA" in text


def test_alexnet_rows_match_torchvision_modules() -> None:
    """Every row's output shape and parameter count equal the torchvision module's."""
    _needs("alexnet")
    tv = tvm.alexnet().eval()
    shapes = {}
    for name, m in tv.named_modules():
        if name:
            m.register_forward_hook(
                lambda mod, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    with torch.inference_mode():
        tv(torch.zeros(2, 3, 256, 256))  # not 224: the adaptive pool must follow
    modules = dict(tv.named_modules())
    s = summarize("alexnet", (2, 256, 256, 3), flops=False)
    named = [r for r in s.rows if r.path in modules]
    assert {r.path for r in named} >= {"features.0", "features.3", "features.6",
                                       "features.8", "features.10", "classifier.1",
                                       "classifier.4", "classifier.6"}
    for r in named:
        assert r.params == sum(p.numel() for p in modules[r.path].parameters()), r.path
        nchw = shapes[r.path]
        nhwc = [nchw[0], *nchw[2:], nchw[1]] if len(nchw) == 4 else list(nchw)
        assert r.output_shape == str(nhwc), r.path


def test_custom_module_depth_and_errors() -> None:
    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.relu(nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), name="conv")(x))

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = Block(name="block")(x)
            return nn.Dense(10, name="head")(x.reshape(x.shape[0], -1))

    s = summarize(Net(), (4, 4, 3))
    assert [r.path for r in s.rows] == ["block", "block.conv", "head"]
    assert s.params == 3 * 3 * 3 * 8 + 8 + 4 * 4 * 8 * 10 + 10
    assert s.rows[1].macs == 4 * 4 * 8 * 27 and s.rows[0].macs == s.rows[1].macs
    # 4x4 map, 3x3 pad 1: 3 valid taps per output on each axis except 2 at both borders.
    assert s.valid_macs == (10 * 10) * 8 * 3 + 4 * 4 * 8 * 10
    assert "block.conv" not in summary(Net(), (4, 4, 3), depth=1)
    with pytest.raises(ValueError, match="default_input_shape"):
        summarize(Net())
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        summarize(Net(), (4, 4))
