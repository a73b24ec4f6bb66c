"""SegNet and SegNet-Basic (:mod:`jaxvision.models.segnet`): parameter counts, sizes, and
SegNet-Basic's forward against a torch build of the same net.

Parameter counts are checked against the SegNet-Tutorial prototxts
(alexgkendall/SegNet-Tutorial ``Models/segnet_train.prototxt`` and
``segnet_basic_train.prototxt``): convolutions with bias, BN with a learned scale and shift
(running statistics are not parameters). SegNet has 29,449,355 at 11 classes (the paper's
Table 6: 29.45M); SegNet-Basic 1,416,587.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxvision.models import get_model
from tests.ops._tv import to_nchw, to_nhwc

ENCODER = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
           (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
DECODER = [(512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 256),
           (256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64)]


def _conv_bn(layers, k):
    return sum(k * k * i * o + o + 2 * o for i, o in layers)


def _abstract(model, hw):
    x = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x), x)


def _count(variables):
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["params"]))


def test_parameter_counts_equal_the_prototxts():
    c = 11
    segnet = _conv_bn(ENCODER, 3) + _conv_bn(DECODER, 3) + 9 * 64 * c + c  # + conv1_1_D
    basic = _conv_bn([(3, 64)] + [(64, 64)] * 7, 7) + 64 * c + c  # + conv_classifier
    assert _count(_abstract(get_model("segnet", num_classes=c), (64, 64))[1]) == segnet
    assert _count(_abstract(get_model("segnet_basic", num_classes=c), (64, 64))[1]) == basic
    assert (segnet, basic) == (29_449_355, 1_416_587)


@pytest.mark.parametrize("name,sizes", [("segnet", [(32, 32), (45, 61), (97, 33)]),
                                        ("segnet_basic", [(1, 1), (15, 16), (45, 61)])])
def test_output_size_equals_input_size(name, sizes):
    model = get_model(name, num_classes=4)
    for hw in sizes:
        assert _abstract(model, hw)[0].shape == (1, *hw, 4), hw


class _TorchSegNetBasic(torch.nn.Module):
    """The prototxt's net in torch (ceil-mode pools with indices, unpool to the pre-pool
    size, decoders without ReLU)."""

    def __init__(self, c):
        super().__init__()
        nn = torch.nn
        self.lrn = nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)
        self.enc = nn.ModuleList(nn.Conv2d(3 if i == 0 else 64, 64, 7, padding=3)
                                 for i in range(4))
        self.enc_bn = nn.ModuleList(nn.BatchNorm2d(64) for _ in range(4))
        self.dec = nn.ModuleList(nn.Conv2d(64, 64, 7, padding=3) for _ in range(4))
        self.dec_bn = nn.ModuleList(nn.BatchNorm2d(64) for _ in range(4))
        self.cls = nn.Conv2d(64, c, 1)

    def forward(self, x):
        x, skips = self.lrn(x), []
        for conv, bn in zip(self.enc, self.enc_bn, strict=True):
            x = torch.relu(bn(conv(x)))
            size = x.shape[2:]
            x, idx = torch.nn.functional.max_pool2d(x, 2, 2, ceil_mode=True,
                                                    return_indices=True)
            skips.append((idx, size))
        for i in range(3, -1, -1):  # dec[i] is conv_decode{i + 1}
            idx, size = skips[i]
            x = torch.nn.functional.max_unpool2d(x, idx, 2, 2, output_size=size)
            x = self.dec_bn[i](self.dec[i](x))
        return self.cls(x)


def test_segnet_basic_matches_torch():
    torch.manual_seed(0)
    tm = _TorchSegNetBasic(5).eval()
    for bn in [*tm.enc_bn, *tm.dec_bn]:  # realistic statistics, not the identity
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    hwio = lambda w: w.detach().numpy().transpose(2, 3, 1, 0)  # noqa: E731
    params, stats = {}, {}
    pairs = [(f"conv{i + 1}", tm.enc[i], tm.enc_bn[i]) for i in range(4)]
    pairs += [(f"conv_decode{i + 1}", tm.dec[i], tm.dec_bn[i]) for i in range(4)]
    for name, conv, bn in pairs:
        params[name] = {"kernel": hwio(conv.weight), "bias": conv.bias.detach().numpy()}
        params[f"{name}_bn"] = {"scale": bn.weight.detach().numpy(),
                                "bias": bn.bias.detach().numpy()}
        stats[f"{name}_bn"] = {"mean": bn.running_mean.numpy(), "var": bn.running_var.numpy()}
    params["conv_classifier"] = {"kernel": hwio(tm.cls.weight),
                                 "bias": tm.cls.bias.detach().numpy()}
    model = get_model("segnet_basic", num_classes=5)
    x = np.random.default_rng(0).standard_normal((2, 19, 23, 3)).astype(np.float32)
    _, shapes = _abstract(model, (19, 23))
    variables = {"params": params, "batch_stats": stats}
    assert jax.tree.map(np.shape, variables) == jax.tree.map(lambda s: s.shape, shapes)
    out = jax.jit(model.apply)(variables, x)
    with torch.no_grad():
        ref = to_nhwc(tm(to_nchw(x)))
    np.testing.assert_allclose(np.asarray(out), ref, atol=2e-4, rtol=1e-4)



def test_segnet_matches_torch():
    """SegNet in torch from torchvision's ``vgg16_bn`` features (ceil-mode pools with
    indices) and the prototxt's decoder; eval mode, realistic BN statistics, odd size."""
    import torchvision

    from jaxvision.models.segnet import DECODER

    torch.manual_seed(0)
    feats = torchvision.models.vgg16_bn().features.eval()
    dec = []
    cin = 512
    for _, widths in DECODER:
        for w in widths:
            dec.append((torch.nn.Conv2d(cin, w, 3, padding=1), torch.nn.BatchNorm2d(w).eval()))
            cin = w
    cls = torch.nn.Conv2d(64, 3, 3, padding=1)
    bns = [m for m in feats if isinstance(m, torch.nn.BatchNorm2d)] + [b for _, b in dec]
    for bn in bns:
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.bias.data.uniform_(-0.2, 0.2)

    hwio = lambda w: w.detach().numpy().transpose(2, 3, 1, 0)  # noqa: E731

    def conv_bn(conv, bn):
        return ({"kernel": hwio(conv.weight), "bias": conv.bias.detach().numpy()},
                {"scale": bn.weight.detach().numpy(), "bias": bn.bias.detach().numpy()},
                {"mean": bn.running_mean.numpy(), "var": bn.running_var.numpy()})

    params, stats = {"encoder": {}}, {"encoder": {}}
    for i, m in enumerate(feats):
        if isinstance(m, torch.nn.Conv2d):
            c, b, s = conv_bn(m, feats[i + 1])
            params["encoder"][f"features.{i}"] = c
            params["encoder"][f"features.{i + 1}"], stats["encoder"][f"features.{i + 1}"] = b, s
    names = [f"conv{st}_{len(ws) - j + (st == 1)}_D" for st, ws in DECODER
             for j in range(len(ws))]
    for name, (conv, bn) in zip(names, dec, strict=True):
        params[name], params[f"{name}_bn"], stats[f"{name}_bn"] = conv_bn(conv, bn)
    params["conv1_1_D"] = {"kernel": hwio(cls.weight), "bias": cls.bias.detach().numpy()}

    x = np.random.default_rng(0).standard_normal((1, 35, 41, 3)).astype(np.float32)
    with torch.no_grad():
        h, skips = to_nchw(x), []
        for m in feats:
            if isinstance(m, torch.nn.MaxPool2d):
                size = h.shape[2:]
                h, idx = torch.nn.functional.max_pool2d(h, 2, 2, ceil_mode=True,
                                                        return_indices=True)
                skips.append((idx, size))
            else:
                h = m(h)
        k = 0
        for _, widths in DECODER:
            idx, size = skips.pop()
            h = torch.nn.functional.max_unpool2d(h, idx, 2, 2, output_size=size)
            for _ in widths:
                h = torch.relu(dec[k][1](dec[k][0](h)))
                k += 1
        ref = to_nhwc(cls(h))
    model = get_model("segnet", num_classes=3)
    variables = {"params": params, "batch_stats": stats}
    _, shapes = _abstract(model, (35, 41))
    assert jax.tree.map(np.shape, variables) == jax.tree.map(lambda s: s.shape, shapes)
    out = jax.jit(model.apply)(variables, x)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-3, rtol=1e-3)
