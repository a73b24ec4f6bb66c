"""FCN-32s/16s/8s (:mod:`jaxvision.models.fcn`): parameter counts, output sizes, init.

Parameter counts are checked against the Caffe definitions of the FCN authors'
``voc-fcn32s``/``voc-fcn16s``/``voc-fcn8s`` ``train.prototxt`` (shelhamer/fcn.berkeleyvision.org):
VGG-16's 13 convs, fc6 7x7x512x4096, fc7 1x1x4096x4096, score layers 1x1 with bias, and
``Deconvolution`` layers with ``bias_term: false`` (kernel 2f, ``num_output`` = classes). At 21
classes FCN-8s has 134,489,759 parameters (about 134.5M, as the paper's 134M).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import get_model
from jaxvision.models.fcn import fcn_params_from_vgg16
from jaxvision.ops import bilinear_kernel

VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
               (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


def _prototxt_count(variant: int, c: int) -> int:
    """Parameters of voc-fcn{variant}s, layer by layer from the prototxt's shapes."""
    n = sum(9 * i * o + o for i, o in VGG16_CONVS)
    n += 7 * 7 * 512 * 4096 + 4096 + 4096 * 4096 + 4096  # fc6, fc7
    n += 4096 * c + c  # score_fr
    deconv = lambda k: k * k * c * c  # noqa: E731  (no bias)
    if variant == 32:
        return n + deconv(64)  # upscore
    n += deconv(4) + 512 * c + c  # upscore2, score_pool4
    if variant == 16:
        return n + deconv(32)  # upscore16
    return n + deconv(4) + 256 * c + c + deconv(16)  # upscore_pool4, score_pool3, upscore8


def _abstract(model, hw):
    x = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x), x)


@pytest.mark.parametrize("variant", [32, 16, 8])
def test_parameter_counts_equal_the_caffe_nets(variant):
    _, variables = _abstract(get_model(f"fcn{variant}s", num_classes=21), (64, 64))
    n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["params"]))
    assert n == _prototxt_count(variant, 21)
    if variant == 8:
        assert n == 134_489_759


@pytest.mark.parametrize("variant", [32, 16, 8])
@pytest.mark.parametrize("pad100", [False, True])
def test_output_size_equals_input_size(variant, pad100):
    model = get_model(f"fcn{variant}s", num_classes=5, pad100=pad100)
    for hw in [(1, 1), (31, 33), (47, 64), (65, 50)]:
        out, _ = _abstract(model, hw)
        assert out.shape == (1, *hw, 5), hw


def test_forward_init_bilinear_and_zero_scores():
    """Real compute once: bilinear upsamplers, zero-initialised scores, and a constant
    score spreads to a constant in the output's interior (bilinear upsampling preserves
    constants, the skips add zero)."""
    model = get_model("fcn8s", num_classes=3, fc_width=16)  # init does not depend on it
    x = np.random.default_rng(0).standard_normal((1, 96, 96, 3)).astype(np.float32)
    # Only the layers under test are materialised (XLA drops the unused random draws);
    # the rest is zeros of the right shapes.
    up = jax.jit(lambda k, x: {n: model.init(k, x)["params"][n]
                               for n in ("upscore2", "upscore_pool4", "upscore8",
                                         "score_fr", "score_pool4", "score_pool3")})(
        jax.random.key(0), x)
    for name, k in (("upscore2", 4), ("upscore_pool4", 4), ("upscore8", 16)):
        np.testing.assert_array_equal(up[name]["kernel"], bilinear_kernel(k, 3, 3))
        assert "bias" not in up[name]
    for name in ("score_fr", "score_pool4", "score_pool3"):
        assert not np.asarray(up[name]["kernel"]).any()
    _, shapes = _abstract(model, (96, 96))
    params = {**jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["params"]), **up}
    variables = {"params": params}
    apply = jax.jit(model.apply)
    out = apply(variables, x)
    assert out.shape == (1, 96, 96, 3) and not np.asarray(out).any()
    bias = np.array([1.0, -2.0, 0.5], np.float32)
    params = {**params, "score_fr": {**params["score_fr"], "bias": bias}}
    out = np.asarray(apply({"params": params}, x))
    np.testing.assert_allclose(out[0, 40:56, 40:56], np.broadcast_to(bias, (16, 16, 3)),
                               rtol=1e-5)
    assert np.abs(out[0, 0, 0] - bias).max() > 0.1  # the border sees the zero padding


def test_params_from_vgg16():
    vgg = get_model("vgg16")
    vgg_shapes = jax.eval_shape(vgg.init, jax.random.key(0),
                                jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))["params"]
    _, fcn_vars = _abstract(get_model("fcn8s", num_classes=21), (64, 64))
    merged = jax.eval_shape(lambda v, f: fcn_params_from_vgg16(f, v), vgg_shapes,
                            fcn_vars["params"])
    same = jax.tree.map(lambda a, b: a.shape == b.shape, merged, fcn_vars["params"])
    assert all(jax.tree.leaves(same))
    bad = {**vgg_shapes, "classifier.0": {"kernel": jax.ShapeDtypeStruct((10, 4096),
                                                                         jnp.float32)}}
    with pytest.raises(ValueError, match="classifier.0"):
        fcn_params_from_vgg16(fcn_vars["params"], bad)


def test_bad_variant():
    from jaxvision.models.fcn import FCN
    with pytest.raises(ValueError, match="32, 16 or 8"):
        _abstract(FCN(variant=4), (32, 32))


def test_pad100_fcn8s_matches_a_torch_replica():
    """The Caffe alignment (pad 100, ceil pools, crops 5 / 9 / 31) against a torch build of
    voc-fcn8s (as pytorch-fcn writes it), random weights everywhere; fc6/fc7 narrowed to 16
    channels to keep the test small (the layout is unchanged)."""
    import torch
    import torch.nn.functional as F
    import torchvision

    from tests.ops._tv import to_nchw, to_nhwc

    torch.manual_seed(0)
    c, fc = 3, 16
    feats = torchvision.models.vgg16().features.eval()
    t = torch.nn
    fc6, fc7 = t.Conv2d(512, fc, 7), t.Conv2d(fc, fc, 1)
    score_fr, score_pool4, score_pool3 = t.Conv2d(fc, c, 1), t.Conv2d(512, c, 1), \
        t.Conv2d(256, c, 1)
    up2, up4, up8 = (t.ConvTranspose2d(c, c, 2 * f, f, bias=False) for f in (2, 2, 8))
    x = np.random.default_rng(0).standard_normal((1, 45, 37, 3)).astype(np.float32)
    with torch.no_grad():
        h, pools = F.pad(to_nchw(x), (99,) * 4), []
        for m in feats:
            h = F.max_pool2d(h, 2, 2, ceil_mode=True) if isinstance(m, t.MaxPool2d) else m(h)
            if isinstance(m, t.MaxPool2d):
                pools.append(h)
        h = score_fr(torch.relu(fc7(torch.relu(fc6(h)))))
        u = up2(h)
        h = u + score_pool4(pools[3])[:, :, 5:5 + u.shape[2], 5:5 + u.shape[3]]
        u = up4(h)
        h = u + score_pool3(pools[2])[:, :, 9:9 + u.shape[2], 9:9 + u.shape[3]]
        ref = to_nhwc(up8(h)[:, :, 31:31 + 45, 31:31 + 37])

    hwio = lambda w: w.detach().numpy().transpose(2, 3, 1, 0)  # noqa: E731
    conv = lambda m: {"kernel": hwio(m.weight), "bias": m.bias.detach().numpy()}  # noqa: E731
    params = {"backbone": {f"features.{i}": conv(m) for i, m in enumerate(feats)
                           if isinstance(m, t.Conv2d)},
              "fc6": conv(fc6), "fc7": conv(fc7), "score_fr": conv(score_fr),
              "score_pool4": conv(score_pool4), "score_pool3": conv(score_pool3),
              "upscore2": {"kernel": hwio(up2.weight)},
              "upscore_pool4": {"kernel": hwio(up4.weight)},
              "upscore8": {"kernel": hwio(up8.weight)}}
    model = get_model("fcn8s", num_classes=c, pad100=True, fc_width=fc)
    out = jax.jit(model.apply)({"params": params}, x)

    scale = np.abs(ref).max()
    assert scale > 0
    np.testing.assert_allclose(np.asarray(out) / scale, ref / scale, atol=1e-4)
