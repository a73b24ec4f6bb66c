"""Building blocks shared by the model zoo, with PyTorch's exact semantics.

Everything here is NHWC. The layers reproduce ``torch.nn`` to the last detail that changes
numbers: symmetric explicit padding (Flax's ``'SAME'`` pads stride-2 convs (0, 1), torch
pads (1, 1)), ``ceil_mode`` pooling, ``AdaptiveAvgPool2d`` bins, ``count_include_pad``
averaging, and BatchNorm whose running variance is updated with the *unbiased* batch
variance, as torch does.

Naming convention used by every model in the zoo: a module's Flax name is the dotted path
of the corresponding torchvision module (``"features.0"``, ``"layer1.0"``), so that the Flax
variable path joined with ``.`` equals the torchvision ``state_dict`` key (up to the leaf
renames ``kernel``/``weight``, ``scale``/``weight``, ``mean``/``running_mean``, ``var``/
``running_var``). :mod:`jaxvision.weights.convert` relies on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.checks import pair
from jaxvision.ops.conv import conv_general_dilated

Dtype = Any
IntPair = int | Sequence[int]

# torchvision initializes most conv weights with kaiming normal (fan_out, relu).
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def torch_padding(padding: IntPair) -> tuple[tuple[int, int], tuple[int, int]]:
    """torch's symmetric ``padding=`` as Flax explicit padding ``((ph, ph), (pw, pw))``."""
    ph, pw = pair(padding, "padding", minimum=0)
    return ((ph, ph), (pw, pw))


def conv2d(
    features: int,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    *,
    groups: int = 1,
    use_bias: bool = True,
    dilation: IntPair = 1,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    kernel_init: Callable = conv_kernel_init,
    name: str | None = None,
) -> nn.Conv:
    """An ``nn.Conv`` configured like ``torch.nn.Conv2d`` (symmetric explicit padding)."""
    return nn.Conv(
        features,
        pair(kernel_size, "kernel_size"),
        strides=pair(stride, "stride"),
        padding=torch_padding(padding),
        kernel_dilation=pair(dilation, "dilation"),
        feature_group_count=groups,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=kernel_init,
        conv_general_dilated=conv_general_dilated,
        name=name,
    )


def _norm_variables(module: nn.Module, c: int) -> tuple[jax.Array, jax.Array, Any, Any]:
    """The variables of :class:`BatchNorm` and :class:`FrozenBatchNorm` (one layout, so one
    torchvision ``state_dict`` converts to either): ``params/{scale, bias}`` [C] and the
    ``batch_stats/{mean, var}`` [C] float32 variables."""
    scale = module.param("scale", nn.initializers.ones, (c,), module.param_dtype)
    bias = module.param("bias", nn.initializers.zeros, (c,), module.param_dtype)
    mean = module.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    var = module.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    return scale, bias, mean, var


class BatchNorm(nn.Module):
    """``torch.nn.BatchNorm2d`` (or ``1d`` on the last axis) with torch's exact semantics.

    In training mode the output is normalized with the biased batch variance, and the
    running statistics are updated as ``running = (1 - momentum) * running + momentum *
    batch`` with the *unbiased* batch variance, exactly as torch does (Flax's own
    ``nn.BatchNorm`` uses the biased variance for the running average). ``momentum`` is
    torch's convention (0.1 by default), not Flax's.

    Under ``jax.jit`` with the batch sharded over a mesh, the batch statistics are global
    (XLA inserts the cross-device reductions), i.e. this is synchronized BatchNorm.

    Attributes:
      use_running_average: evaluation mode (use ``batch_stats``) when True.
      momentum: torch-style momentum of the running statistics.
      epsilon: added to the variance.
      dtype: computation dtype; statistics are computed in float32 (float64 for float64
        input, so that a float64 model is float64 throughout).
      param_dtype: dtype of ``scale`` and ``bias``.

    Variables: ``params/{scale, bias}: [C]``, ``batch_stats/{mean, var}: [C]`` float32.
    Input ``x: [..., C]``; statistics are reduced over every axis but the last.
    """

    use_running_average: bool = False
    momentum: float = 0.1
    epsilon: float = 1e-5
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale, bias, ra_mean, ra_var = _norm_variables(self, x.shape[-1])
        # At least float32 (bf16/f16 statistics lose digits), but never below the input.
        ct = jnp.promote_types(x.dtype, jnp.float32)
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            xf = x.astype(ct)
            mean = jnp.mean(xf, axis=axes)
            # Two-pass variance: the one-pass E[x^2]-E[x]^2 loses digits torch keeps.
            var = jnp.mean(jnp.square(xf - mean), axis=axes)
            if not self.is_initializing():
                n = math.prod(x.shape[:-1])
                unbiased = var * (n / max(n - 1, 1))
                m = self.momentum
                dt = ra_mean.value.dtype  # the statistics keep their dtype across steps
                ra_mean.value = ((1.0 - m) * ra_mean.value + m * mean).astype(dt)
                ra_var.value = ((1.0 - m) * ra_var.value + m * unbiased).astype(dt)
        inv = jax.lax.rsqrt(var + self.epsilon) * scale.astype(ct)
        y = (x.astype(ct) - mean) * inv + bias.astype(ct)
        return y.astype(self.dtype)


def _pool_out_size(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """torch's pooling output size (``pooling_output_shape`` in ATen)."""
    num = size + 2 * p - k
    out = (-(-num // s) if ceil_mode else num // s) + 1
    # torch: the last window must start inside the input or the left padding.
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_padding(
    x: jax.Array, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
    ceil_mode: bool,
) -> list[tuple[int, int]]:
    pads = [(0, 0)]
    for dim in range(2):
        size, k, s, p = x.shape[1 + dim], kernel[dim], stride[dim], padding[dim]
        if 2 * p > k:
            raise ValueError(f"pad should be at most half of the kernel size, got pad={p}, "
                             f"kernel={k}")
        out = _pool_out_size(size, k, s, p, ceil_mode)
        if out < 1:
            raise ValueError(
                f"pooling with kernel {k}, stride {s}, padding {p} needs a spatial size of at "
                f"least {k - 2 * p}, got {size}"
            )
        hi = max((out - 1) * s + k - size - p, 0)
        pads.append((p, hi))
    pads.append((0, 0))
    return pads


def max_pool(
    x: jax.Array, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
    ceil_mode: bool = False,
) -> jax.Array:
    """``torch.nn.functional.max_pool2d`` on NHWC input (``ceil_mode`` included).

    Args:
      x: ``[N, H, W, C]``.
    Returns:
      ``[N, H', W', C]`` with torch's output size.
    """
    k = pair(kernel_size, "kernel_size")
    s = pair(stride if stride is not None else kernel_size, "stride")
    pads = _pool_padding(x, k, s, pair(padding, "padding", minimum=0), ceil_mode)
    init = np.array(-np.inf, x.dtype)  # numpy: a jnp array is traced under jit and breaks grad
    return jax.lax.reduce_window(x, init, jax.lax.max, (1, *k, 1), (1, *s, 1), pads)


def avg_pool(
    x: jax.Array, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
    ceil_mode: bool = False, count_include_pad: bool = True,
) -> jax.Array:
    """``torch.nn.functional.avg_pool2d`` on NHWC input.

    The divisor follows torch: with ``count_include_pad`` it counts the symmetric padding
    but never the extra right-hand cells that ``ceil_mode`` adds.
    """
    k = pair(kernel_size, "kernel_size")
    s = pair(stride if stride is not None else kernel_size, "stride")
    p = pair(padding, "padding", minimum=0)
    pads = _pool_padding(x, k, s, p, ceil_mode)
    dims, strides = (1, *k, 1), (1, *s, 1)
    summed = jax.lax.reduce_window(x, np.array(0, x.dtype), jax.lax.add, dims, strides, pads)
    h, w = x.shape[1:3]
    if count_include_pad:
        ones = jnp.ones((1, h + 2 * p[0], w + 2 * p[1], 1), x.dtype)
        cpads = [(0, 0)] + [(0, hi - lo) for lo, hi in pads[1:3]] + [(0, 0)]
    else:
        ones = jnp.ones((1, h, w, 1), x.dtype)
        cpads = pads
    count = jax.lax.reduce_window(ones, np.array(0, x.dtype), jax.lax.add, dims, strides, cpads)
    return summed / count


def _adaptive_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Row i averages input cells [floor(i*in/out), ceil((i+1)*in/out)), as torch does."""
    m = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -(-((i + 1) * in_size) // out_size)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: jax.Array, output_size: IntPair) -> jax.Array:
    """``torch.nn.AdaptiveAvgPool2d`` on NHWC input, exact at any input size.

    Args:
      x: ``[N, H, W, C]``.
      output_size: ``(oh, ow)`` or an int.
    Returns:
      ``[N, oh, ow, C]``; bin ``i`` averages rows ``[floor(i*H/oh), ceil((i+1)*H/oh))``.
    """
    oh, ow = pair(output_size, "output_size")
    h, w = x.shape[1:3]
    if (h, w) == (oh, ow):
        return x
    if (oh, ow) == (1, 1):
        return jnp.mean(x, axis=(1, 2), keepdims=True)
    mh = jnp.asarray(_adaptive_matrix(h, oh), x.dtype)
    mw = jnp.asarray(_adaptive_matrix(w, ow), x.dtype)
    return jnp.einsum("oh,nhwc,pw->nopc", mh, x, mw, precision=jax.lax.Precision.HIGHEST)


def local_response_norm(
    x: jax.Array, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> jax.Array:
    """``torch.nn.LocalResponseNorm`` across channels of NHWC input.

    ``b_c = a_c / (k + alpha / size * sum_{c'} a_{c'}^2) ** beta`` with the window
    ``[c - size // 2, c + (size - 1) // 2]`` (torch's convention; the 2012 paper's
    ``alpha`` is not divided by ``size``).
    """
    sq = jnp.square(x)
    pads = [(0, 0)] * (x.ndim - 1) + [(size // 2, (size - 1) // 2)]
    window = (1,) * (x.ndim - 1) + (size,)
    summed = jax.lax.reduce_window(sq, np.array(0, x.dtype), jax.lax.add, window,
                                   (1,) * x.ndim, pads)
    return x / jnp.power(k + alpha * summed / size, beta)


def flatten_nchw(x: jax.Array) -> jax.Array:
    """Flattens ``[N, H, W, C]`` to ``[N, H*W*C]`` in NHWC order.

    Converted torchvision weights have the first dense layer's rows permuted instead (see
    ``torch_flatten_shapes`` in :mod:`jaxvision.weights.convert`), so no transpose is paid
    at run time.
    """
    return x.reshape(x.shape[0], -1)


class ConvBNAct(nn.Module):
    """Conv (no bias) + BatchNorm + optional activation; torchvision's ``BasicConv2d``.

    Submodules are named ``conv`` and ``bn`` as in torchvision's GoogLeNet and Inception.
    Input ``[N, H, W, Cin]`` -> ``[N, H', W', features]``.
    """

    features: int
    kernel_size: IntPair
    stride: IntPair = 1
    padding: IntPair = 0
    groups: int = 1
    eps: float = 1e-5
    act: Callable[[jax.Array], jax.Array] | None = nn.relu
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = conv2d(self.features, self.kernel_size, self.stride, self.padding,
                   groups=self.groups, use_bias=False, dtype=self.dtype,
                   param_dtype=self.param_dtype, name="conv")(x)
        x = BatchNorm(use_running_average=not train, epsilon=self.eps, dtype=self.dtype,
                      param_dtype=self.param_dtype, name="bn")(x)
        return self.act(x) if self.act is not None else x


def check_flatten_shape(x: jax.Array, chw: tuple[int, int, int], model: str,
                        input_shape: tuple[int, int, int]) -> None:
    """Raises when the conv map ``x: [N, h, w, C]`` does not fit a fixed-size classifier.

    Models without an adaptive pool (LeNet-5, the 2012 AlexNet, OverFeat) have dense layers
    sized for one input size; any other size would fail deep inside ``nn.Dense`` with a bare
    shape error, or silently re-initialize at ``init``.
    """
    c, h, w = chw
    if tuple(x.shape[1:]) != (h, w, c):
        raise ValueError(
            f"{model}'s dense classifier expects a {h}x{w}x{c} feature map, i.e. "
            f"{input_shape[0]}x{input_shape[1]} input images, but got a "
            f"{x.shape[1]}x{x.shape[2]}x{x.shape[3]} map; resize the images, or "
            "convolutionize the model to run it on larger ones")


def torch_linear_init(fan_in: int) -> tuple[Callable, Callable]:
    """``torch.nn.Linear``'s default init: kernel and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Returns ``(kernel_init, bias_init)`` for ``nn.Dense``. (Kaiming uniform with ``a=sqrt(5)``
    reduces to that bound; Flax cannot see ``fan_in`` in a bias init, hence the closure.)
    """
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def bias_init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"), bias_init


class FrozenBatchNorm(nn.Module):
    """torchvision's ``FrozenBatchNorm2d``: BatchNorm with statistics and affine fixed.

    ``y = x * s + (bias - mean * s)`` with ``s = scale * rsqrt(var + epsilon)``, in torch's
    order of operations, whatever the mode: the statistics are never updated and no gradient
    reaches ``scale``/``bias`` (``stop_gradient``; keep them out of weight decay too, see
    :func:`jaxvision.models.backbone.frozen_patterns`). The variables are laid out as
    :class:`BatchNorm`'s (``params/{scale, bias}``, ``batch_stats/{mean, var}``: ``[C]``),
    so one torchvision ``state_dict`` converts to either. Input ``x: [..., C]``.
    """

    epsilon: float = 1e-5
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale, bias, ra_mean, ra_var = _norm_variables(self, x.shape[-1])
        mean, var = ra_mean.value, ra_var.value
        ct = jnp.promote_types(x.dtype, jnp.float32)
        scale, bias, mean, var = (jax.lax.stop_gradient(v.astype(ct))
                                  for v in (scale, bias, mean, var))
        s = scale * jax.lax.rsqrt(var + self.epsilon)
        return (x.astype(ct) * s + (bias - mean * s)).astype(self.dtype)
