"""Network in Network against the same networks written with torch layers (there is no
torchvision NiN): parameter counts, eval parity (CIFAR at 32x32 and an odd size, ImageNet at
an odd size), feature-map shapes, minimum sizes, dropout, input errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

from jaxvision.models import get_model, list_models
from jaxvision.models.nin import CIFAR10, IMAGENET, min_input_size
from jaxvision.weights.convert import variable_shapes
from tests.torch_parity import (
    converted,
    count_params,
    input_error_cases,
    nchw_to_nhwc,
    torch_eval_logits,
)


class TorchNiN(nn.Module):
    """NiN from torch layers, following the Caffe zoo prototxts; keys are our module names.

    Caffe pools round up, i.e. torch's ``ceil_mode=True``; the last 1x1 conv is ReLU'd
    before the global average pool.
    """

    def __init__(self, blocks, num_classes: int) -> None:
        super().__init__()
        self.ops = []  # a plain list: the convs are registered once, under their names
        in_ch = 3
        for convs, pool, dropout in blocks:
            for name, c, k, s, p in convs:
                conv = nn.Conv2d(in_ch, c or num_classes, k, s, p)
                self.add_module(name, conv)  # names like "conv4-1024" are fine here
                self.ops += [conv, nn.ReLU()]
                in_ch = c or num_classes
            if pool == "max":
                self.ops.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            elif pool == "avg":
                self.ops.append(nn.AvgPool2d(3, 2, ceil_mode=True))
            if dropout:
                self.ops.append(nn.Dropout(0.5))
        for i, op in enumerate(self.ops):  # parameter-free ops too, so that eval() reaches
            if not isinstance(op, nn.Conv2d):  # the dropouts; they add no state_dict keys
                self.add_module(f"op{i}", op)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.ops:
            x = m(x)
        return x.mean(dim=(2, 3))


def torch_nin(blocks, num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    m = TorchNiN(blocks, num_classes)
    # torch's default conv init (std 1/sqrt(3 fan_in)) shrinks activations ~2.4x per layer
    # and would leave near-zero logits that anything matches; scaled by sqrt(6) it is He's
    # variance-preserving std, so logits stay O(1-10).
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 4:
                p.mul_(6 ** 0.5)
    return m


@pytest.mark.parametrize(("name", "blocks", "num_classes", "expected"), [
    ("nin", CIFAR10, 10, 966_986),
    ("nin_imagenet", IMAGENET, 1000, 7_595_176),
])
def test_param_counts(name, blocks, num_classes, expected):
    assert name in list_models()
    tv = TorchNiN(blocks, num_classes)
    n = count_params(variable_shapes(get_model(name)))
    assert n == sum(p.numel() for p in tv.parameters())
    # The module docstring's per-layer arithmetic, rechecked: k*k*cin*cout + cout per conv.
    assert n == expected
    assert count_params(variable_shapes(get_model(name, num_classes=7))) == sum(
        p.numel() for p in TorchNiN(blocks, 7).parameters())


@pytest.mark.parametrize(("name", "blocks", "num_classes", "hw"), [
    ("nin", CIFAR10, 10, (32, 32)),
    ("nin", CIFAR10, 10, (37, 51)),
    ("nin_imagenet", IMAGENET, 1000, (163, 131)),
], ids=["cifar-32x32", "cifar-37x51", "imagenet-163x131"])
def test_eval_parity_with_torch_layers(name, blocks, num_classes, hw):
    tv = torch_nin(blocks, num_classes)
    model = get_model(name)
    variables = converted(model, tv)
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(1))
    ref = torch_eval_logits(tv, x)
    out = np.asarray(jax.jit(lambda v, x: model.apply(v, x))(variables, nchw_to_nhwc(x)))
    assert out.shape == ref.shape == (2, num_classes)
    scale = float(np.abs(ref).max())
    err = float(np.abs(out - ref).max())
    print(f"{name} {hw}: max abs err {err:.3g}, logit scale {scale:.3g}")
    assert scale > 1e-3  # the comparison is not between two vectors of zeros
    assert err < 1e-4


@pytest.mark.parametrize(("name", "hw", "maps"), [
    ("nin", (32, 32), (8, 8, 10)),
    ("nin_imagenet", (224, 224), (6, 6, 1000)),
])
def test_feature_map_shapes(name, hw, maps):
    model = get_model(name)
    x = jnp.zeros((2, *hw, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    feats = jax.eval_shape(lambda v, x: model.apply(v, x, method="features"), variables, x)
    assert feats.shape == (2, *maps)
    assert jax.eval_shape(model.apply, variables, x).shape == (2, maps[-1])


def torch_min_size(blocks) -> int:
    """The smallest square input the torch-layer NiN runs on, found by trying."""
    tv = TorchNiN(blocks, 10).eval()
    for size in range(1, 100):
        try:
            with torch.no_grad():
                tv(torch.zeros(1, 3, size, size))
            return size
        except RuntimeError:
            continue
    raise AssertionError("no size up to 99 works")


@pytest.mark.parametrize(("name", "blocks"), [("nin", CIFAR10), ("nin_imagenet", IMAGENET)])
def test_sizes_from_the_minimum_work_and_smaller_ones_fail_clearly(name, blocks):
    size = min_input_size(blocks)
    assert size >= torch_min_size(blocks)  # never accepts what torch rejects
    model = get_model(name, num_classes=10)
    out = jax.eval_shape(model.init_with_output, jax.random.key(0),
                         jnp.zeros((1, size, size, 3)))[0]
    assert out.shape == (1, 10)
    with pytest.raises(ValueError, match=f"at least {size}x{size}"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size - 1, size, 3)))


@pytest.mark.parametrize(("name", "blocks"), [("nin", CIFAR10), ("nin_imagenet", IMAGENET)])
def test_min_size_is_torchs(name, blocks):
    assert min_input_size(blocks) == torch_min_size(blocks)


def test_dropout_only_in_training():
    model = get_model("nin")
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 32, 32, 3)), jnp.float32)
    variables = model.init(jax.random.key(0), x)
    run = jax.jit(lambda v, x, k, train: model.apply(v, x, train=train, rngs={"dropout": k}),
                  static_argnums=3)
    a, b = (np.asarray(run(variables, x, jax.random.key(s), False)) for s in (1, 2))
    np.testing.assert_array_equal(a, b)
    a, b = (np.asarray(run(variables, x, jax.random.key(s), True)) for s in (1, 2))
    assert not np.allclose(a, b)


# torch fails below 4x4 too
@pytest.mark.parametrize(("x", "exc", "match"), input_error_cases(32, 3, "at least"))
def test_input_errors(x, exc, match):
    with pytest.raises(exc, match=match):
        jax.eval_shape(get_model("nin").init, jax.random.key(0), x)
