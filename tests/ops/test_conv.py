"""jaxvision.ops.conv: the matrix-product kernel gradient equals XLA's convolution gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

from jaxvision.ops import conv as conv_ops

DN = ("NHWC", "HWIO", "NHWC")


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 4]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = ((draw(st.integers(0, 3)), draw(st.integers(0, 3))),
            (draw(st.integers(0, 3)), draw(st.integers(0, 3))))
    h = draw(st.integers(max(1, (kh - 1) * dh + 1 - sum(pads[0])), 11))
    w = draw(st.integers(max(1, (kw - 1) * dw + 1 - sum(pads[1])), 11))
    n = draw(st.integers(1, 2))
    return n, h, w, cin, cout, (kh, kw), (sh, sw), pads, (dh, dw), groups


def _random(shape, seed):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _lax_grads(x, w, strides, pads, dil, groups, g):
    def f(x_, w_):
        return lax.conv_general_dilated(x_, w_, strides, pads, rhs_dilation=dil,
                                        dimension_numbers=DN, feature_group_count=groups)
    y, vjp = jax.vjp(f, x, w)
    return y, *vjp(g)


@settings(max_examples=8, deadline=None)
@given(conv_cases())
def test_kernel_gradient_equals_xla(case):
    n, h, w, cin, cout, k, s, pads, dil, groups = case
    x = _random((n, h, w, cin), 0)
    kernel = _random((*k, cin // groups, cout), 1)
    out_shape = jax.eval_shape(lambda: lax.conv_general_dilated(
        x, kernel, s, pads, rhs_dilation=dil, dimension_numbers=DN,
        feature_group_count=groups)).shape
    g = _random(out_shape, 2)
    _, _, dw_ref = _lax_grads(x, kernel, s, pads, dil, groups, g)
    dw = jax.jit(conv_ops.kernel_gradient, static_argnums=(2, 3, 4, 5, 6))(
        x, g, k, s, pads, dil, groups)
    assert dw.shape == kernel.shape
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [
    # (n, h, w, cin, cout, k, stride, padding, dilation, groups): the shapes that take the
    # matrix-product path (1x1, grouped, >= 5x5 on >= 16 channels) and ones that do not.
    (2, 9, 11, 16, 8, 1, 1, "VALID", 1, 1),
    (2, 9, 11, 16, 24, 1, 2, ((0, 0), (0, 0)), 1, 1),
    (2, 10, 7, 16, 16, 3, 1, ((1, 1), (1, 1)), 1, 4),
    (1, 13, 17, 16, 8, 7, 1, ((3, 3), (3, 3)), 1, 1),
    (1, 13, 17, 16, 8, 5, 2, "SAME", 2, 1),
    (2, 9, 11, 4, 8, 3, 1, ((1, 1), (1, 1)), 1, 1),
])
def test_conv_general_dilated_matches_lax(case):
    n, h, w, cin, cout, k, s, padding, d, groups = case
    x = _random((n, h, w, cin), 3)
    kernel = _random((k, k, cin // groups, cout), 4)

    def run(conv):
        def f(x_, w_):
            y = conv(x_, w_, (s, s), padding, rhs_dilation=(d, d), dimension_numbers=DN,
                     feature_group_count=groups)
            return jnp.sum(jnp.sin(y)), y
        (_, y), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(x, kernel)
        return y, grads

    y_ref, (dx_ref, dw_ref) = run(lax.conv_general_dilated)
    y, (dx, dw) = run(conv_ops.conv_general_dilated)
    np.testing.assert_array_equal(y, y_ref)  # the forward pass is XLA's own
    np.testing.assert_array_equal(dx, dx_ref)  # so is the input gradient
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-5, atol=2e-5)


def test_fast_path_is_taken_where_it_wins():
    x = _random((1, 8, 8, 16), 5)

    def has_custom_vjp(kernel_shape, groups=1):
        kernel = jnp.zeros(kernel_shape)
        jaxpr = jax.make_jaxpr(lambda x_, w_: conv_ops.conv_general_dilated(
            x_, w_, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=groups))(
                x, kernel)
        return "custom_vjp" in str(jaxpr)

    assert has_custom_vjp((1, 1, 16, 8))
    assert has_custom_vjp((7, 7, 16, 8))
    assert has_custom_vjp((3, 3, 4, 8), groups=4)
    assert not has_custom_vjp((3, 3, 16, 8))  # dense 3x3: XLA's gradient measured as fast
    wide = _random((1, 8, 8, 128), 5)
    jaxpr = jax.make_jaxpr(lambda x_, w_: conv_ops.conv_general_dilated(
        x_, w_, (1, 1), "SAME", dimension_numbers=DN))(wide, jnp.zeros((3, 3, 128, 8)))
    assert "custom_vjp" in str(jaxpr)  # ... but not on >= 128 channels (4-9x slower there)
    conv_ops.set_lowering("xla")
    try:
        assert not has_custom_vjp((1, 1, 16, 8))
    finally:
        conv_ops.set_lowering(None)


def test_lowering_names_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="set_lowering"):
        conv_ops.set_lowering("winograd")
    monkeypatch.setenv("JAXVISION_CONV_LOWERING", "fast")
    with pytest.raises(ValueError, match="JAXVISION_CONV_LOWERING"):
        conv_ops.get_lowering()
    monkeypatch.setenv("JAXVISION_CONV_LOWERING", "XLA")
    assert conv_ops.get_lowering() == "xla"


def test_input_dilation_falls_back_to_lax():
    x, kernel = _random((1, 5, 5, 2), 6), _random((3, 3, 2, 2), 7)
    args = ((1, 1), ((2, 2), (2, 2)))
    y = conv_ops.conv_general_dilated(x, kernel, *args, lhs_dilation=(2, 2),
                                      dimension_numbers=DN)
    ref = lax.conv_general_dilated(x, kernel, *args, lhs_dilation=(2, 2), dimension_numbers=DN)
    np.testing.assert_array_equal(y, ref)
