"""FCN's bilinear upsampling initializer (:mod:`jaxvision.ops.init`)."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxvision.ops import bilinear_kernel, bilinear_upsampling_init
from tests.ops._tv import to_nchw, to_nhwc


def get_upsampling_weight(in_channels, out_channels, kernel_size):
    """The FCN reference's initializer, verbatim (wkentaro/pytorch-fcn, torchfcn/models)."""
    factor = (kernel_size + 1) // 2
    if kernel_size % 2 == 1:
        center = factor - 1
    else:
        center = factor - 0.5
    og = np.ogrid[:kernel_size, :kernel_size]
    filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
    weight = np.zeros((in_channels, out_channels, kernel_size, kernel_size), dtype=np.float64)
    weight[range(in_channels), range(out_channels), :, :] = filt
    return torch.from_numpy(weight).float()


@pytest.mark.parametrize("k", [1, 3, 4, 5, 16, 64])
def test_matches_fcn_reference(k):
    ref = get_upsampling_weight(3, 3, k).numpy().transpose(2, 3, 0, 1)  # -> HWIO
    np.testing.assert_array_equal(np.asarray(bilinear_kernel(k, 3, 3)), ref)


@pytest.mark.parametrize("f", [2, 4, 8])
def test_flax_conv_transpose_is_fcn_bilinear_upsampling(f):
    rng = np.random.default_rng(f)
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    layer = nn.ConvTranspose(3, (2 * f, 2 * f), strides=(f, f), padding="VALID",
                             use_bias=False, kernel_init=bilinear_upsampling_init)
    params = layer.init(jax.random.key(0), x)
    out = np.asarray(layer.apply(params, x))
    # FCN's layer: ConvTranspose2d(n, n, 2f, stride=f, bias=False) with the upsampling weight.
    ref = F.conv_transpose2d(to_nchw(x), get_upsampling_weight(3, 3, 2 * f), stride=f)
    np.testing.assert_allclose(out, to_nhwc(ref), atol=1e-5)
    # After FCN's crop of f // 2, the interior is bilinear interpolation (half-pixel centres).
    interp = to_nhwc(F.interpolate(to_nchw(x), scale_factor=f, mode="bilinear",
                                   align_corners=False))
    crop = out[:, f // 2:f // 2 + 5 * f, f // 2:f // 2 + 6 * f]
    np.testing.assert_allclose(crop[:, f:-f, f:-f], interp[:, f:-f, f:-f], atol=1e-5)
