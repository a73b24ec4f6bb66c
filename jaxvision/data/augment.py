"""On-device image augmentation: pure, jit-able functions of a PRNG key and a batch.

Every function takes a *batch* ``x: [B, H, W, C]`` (NHWC, the layout of the models) and
draws independent randomness per example from one ``key`` (so one key per training step
is enough, and the same key always gives the same batch). Pixel values stay in *pixel
units* (uint8, or float32 in ``[0, 255]``) until :func:`normalize` maps them to the
network's input scale; that keeps each transform's constants in the units of the paper or
library it follows.

Training: :func:`random_crop` (pad-and-crop of the CIFAR ResNet recipe),
:func:`random_resized_crop` (Inception / torchvision ``RandomResizedCrop``),
:func:`random_flip`, :func:`pca_color_noise` (AlexNet's "fancy PCA" lighting noise),
:func:`normalize`. Evaluation: :func:`center_crop`, :func:`ten_crop` and
:func:`ten_crop_average` (AlexNet's 5 crops x 2 flips, predictions averaged).

Crops follow torchvision's conventions exactly (offsets, rounding, crop order), so
``ten_crop`` returns the same pixels as ``torchvision.transforms.TenCrop`` and
``random_resized_crop`` resamples like ``torchvision.transforms.functional.resized_crop``
with ``antialias=True`` (bilinear, triangle filter widened when shrinking).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxvision.checks import pair

#: Eigenvalues and eigenvectors (columns) of the covariance of ImageNet RGB pixels in
#: [0, 1] units, as used by AlexNet's PCA colour augmentation; the values of
#: fb.resnet.torch (datasets/imagenet.lua), the reference every reimplementation copies.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)

Size = int | Sequence[int]


def _check_batch(x: jax.Array, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what}: expected a batch [B, H, W, C], got shape {x.shape}")


def normalize(x: jax.Array, mean: jax.Array | Sequence[float],
              std: jax.Array | Sequence[float]) -> jax.Array:
    """``(x / 255 - mean) / std``: pixel units to the network's input scale.

    Args:
      x: [..., C] uint8, or float in pixel units ``[0, 255]``.
      mean, std: [C] (or broadcastable) per-channel statistics in ``[0, 1]`` units, as
        torchvision's ``Normalize`` after ``ToTensor`` (e.g. ImageNet's (0.485, 0.456,
        0.406) / (0.229, 0.224, 0.225)).
    Returns:
      [..., C] float32.
    """
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (x.astype(jnp.float32) / 255.0 - mean) / std


def random_flip(key: jax.Array, x: jax.Array) -> jax.Array:
    """Mirrors each example left-right with probability 1/2 (independently per example).

    Args:
      key: a PRNG key.
      x: [B, H, W, C] any dtype.
    Returns:
      [B, H, W, C], same dtype.
    """
    _check_batch(x, "random_flip")
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


def crop(x: jax.Array, top: jax.Array, left: jax.Array, size: Size) -> jax.Array:
    """Per-example crops of a static size at traced offsets.

    Args:
      x: [B, H, W, C].
      top, left: [B] int32 offsets of each crop's top-left corner (must fit inside).
      size: int or (h, w), the crop size.
    Returns:
      [B, h, w, C], same dtype.
    """
    _check_batch(x, "crop")
    h, w = pair(size, "size")
    c = x.shape[-1]

    def one(img: jax.Array, t: jax.Array, l_: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(img, (t, l_, 0), (h, w, c))

    return jax.vmap(one)(x, top.astype(jnp.int32), left.astype(jnp.int32))


def random_crop(key: jax.Array, x: jax.Array, size: Size, padding: int = 0) -> jax.Array:
    """Zero-pads by ``padding`` on every side, then takes a uniformly placed crop per example
    (torchvision ``RandomCrop(size, padding)``; the CIFAR ResNet recipe is size 32, padding 4).

    Args:
      key: a PRNG key.
      x: [B, H, W, C] any dtype.
      size: int or (h, w), at most ``(H + 2 * padding, W + 2 * padding)``.
      padding: pixels of zeros added on each side before cropping.
    Returns:
      [B, h, w, C], same dtype. Example ``b`` equals the window ``[top_b : top_b + h,
      left_b : left_b + w]`` of the padded ``x[b]``.
    """
    _check_batch(x, "random_crop")
    h, w = pair(size, "size")
    if padding < 0:
        raise ValueError(f"random_crop: padding must be >= 0, got {padding}")
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    hp, wp = x.shape[1:3]
    if h > hp or w > wp:
        raise ValueError(f"random_crop: crop {(h, w)} larger than the padded image {(hp, wp)}")
    k_top, k_left = jax.random.split(key)
    b = x.shape[0]
    top = jax.random.randint(k_top, (b,), 0, hp - h + 1)
    left = jax.random.randint(k_left, (b,), 0, wp - w + 1)
    return crop(x, top, left, (h, w))


def random_resized_crop_boxes(key: jax.Array, batch: int, height: int, width: int,
                              scale: tuple[float, float] = (0.08, 1.0),
                              ratio: tuple[float, float] = (3 / 4, 4 / 3),
                              attempts: int = 10) -> jax.Array:
    """Crop boxes drawn as torchvision's ``RandomResizedCrop.get_params``, per example.

    Up to ``attempts`` tries each draw an area fraction uniform in ``scale`` and a log-uniform
    aspect ratio (w / h) in ``ratio``; ``w = round(sqrt(area * r))``, ``h = round(sqrt(area /
    r))``; the first box that fits is placed uniformly. If none fits: the central crop of the
    whole image with its aspect ratio clamped into ``ratio``. (torchvision stops drawing at
    the first fit; we draw all tries at once and take the first fit, the same distribution.)

    Args:
      key: a PRNG key.
      batch: number of boxes B.
      height, width: the image size.
    Returns:
      [B, 4] int32 boxes ``(top, left, h, w)`` inside the image.
    """
    area = float(height * width)
    k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
    shape = (batch, attempts)
    target = area * jax.random.uniform(k_area, shape, minval=scale[0], maxval=scale[1])
    log_r = jax.random.uniform(k_ratio, shape, minval=math.log(ratio[0]),
                               maxval=math.log(ratio[1]))
    r = jnp.exp(log_r)
    # round half to even, as Python's round() in torchvision.
    w = jnp.round(jnp.sqrt(target * r)).astype(jnp.int32)
    h = jnp.round(jnp.sqrt(target / r)).astype(jnp.int32)
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = jnp.argmax(ok, axis=1)  # the first fitting attempt (0 if none fits)
    any_ok = jnp.any(ok, axis=1)
    pick = lambda a: jnp.take_along_axis(a, first[:, None], axis=1)[:, 0]
    h_try, w_try = pick(h), pick(w)
    # Fallback box: static, computed in Python exactly as torchvision does.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = height, int(round(height * max(ratio)))
    else:
        fw, fh = width, height
    h_box = jnp.where(any_ok, h_try, fh)
    w_box = jnp.where(any_ok, w_try, fw)
    # Uniform placement (torch.randint(0, H - h + 1)) by flooring a uniform float.
    u_top = jax.random.uniform(k_top, (batch,))
    u_left = jax.random.uniform(k_left, (batch,))
    top_rand = jnp.minimum(jnp.floor(u_top * (height - h_box + 1)), height - h_box)
    left_rand = jnp.minimum(jnp.floor(u_left * (width - w_box + 1)), width - w_box)
    top = jnp.where(any_ok, top_rand.astype(jnp.int32), (height - fh) // 2)
    left = jnp.where(any_ok, left_rand.astype(jnp.int32), (width - fw) // 2)
    return jnp.stack([top, left, h_box, w_box], axis=1).astype(jnp.int32)


def _resample_weights(start: jax.Array, length: jax.Array, in_size: int,
                      out_size: int) -> jax.Array:
    """[out_size, in_size] float32 weights resampling the window ``[start, start + length)``
    of a 1-D signal to ``out_size`` samples: bilinear (triangle filter) that widens by the
    shrink factor when downsampling (antialiasing, as PIL and torchvision's
    ``antialias=True``); pixels outside the window get no weight, rows sum to 1."""
    length_f = length.astype(jnp.float32)
    step = length_f / out_size  # input pixels per output pixel
    support = jnp.maximum(step, 1.0)
    centers = start.astype(jnp.float32) + (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * step
    pos = jnp.arange(in_size, dtype=jnp.float32) + 0.5
    wts = jnp.maximum(0.0, 1.0 - jnp.abs(pos[None, :] - centers[:, None]) / support)
    inside = (pos >= start) & (pos < start + length_f)
    wts = wts * inside[None, :]
    return wts / jnp.maximum(jnp.sum(wts, axis=1, keepdims=True), 1e-12)


def resized_crop(x: jax.Array, boxes: jax.Array, size: Size) -> jax.Array:
    """Crops each example to its box and resizes it to ``size`` (antialiased bilinear), like
    ``torchvision.transforms.functional.resized_crop(..., antialias=True)``.

    Args:
      x: [B, H, W, C] uint8 or float (pixel units).
      boxes: [B, 4] int32 ``(top, left, h, w)``, inside the image.
      size: int or (h, w), the output size.
    Returns:
      [B, h, w, C] float32 (pixel units, not rounded).
    """
    _check_batch(x, "resized_crop")
    oh, ow = pair(size, "size")
    in_h, in_w = x.shape[1:3]

    def one(img: jax.Array, box: jax.Array) -> jax.Array:
        wy = _resample_weights(box[0], box[2], in_h, oh)
        wx = _resample_weights(box[1], box[3], in_w, ow)
        hi = jax.lax.Precision.HIGHEST  # exact float32 sums (TPU/GPU would use bf16 passes)
        tmp = jnp.einsum("oh,hwc->owc", wy, img.astype(jnp.float32), precision=hi)
        return jnp.einsum("pw,owc->opc", wx, tmp, precision=hi)

    return jax.vmap(one)(x, boxes)


def random_resized_crop(key: jax.Array, x: jax.Array, size: Size,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> jax.Array:
    """Inception-style random resized crop (torchvision ``RandomResizedCrop(size, scale,
    ratio, antialias=True)``): a box per example from :func:`random_resized_crop_boxes`,
    resized to ``size`` by :func:`resized_crop`.

    Args:
      key: a PRNG key.
      x: [B, H, W, C] uint8 or float (pixel units).
      size: int or (h, w), the output size.
    Returns:
      [B, h, w, C] float32 (pixel units).
    """
    _check_batch(x, "random_resized_crop")
    boxes = random_resized_crop_boxes(key, x.shape[0], x.shape[1], x.shape[2], scale, ratio)
    return resized_crop(x, boxes, size)


def pca_color_noise(key: jax.Array, x: jax.Array, std: float = 0.1,
                    eigval: Sequence[float] = IMAGENET_PCA_EIGVAL,
                    eigvec: Sequence[Sequence[float]] = IMAGENET_PCA_EIGVEC) -> jax.Array:
    """AlexNet's PCA colour augmentation ("fancy PCA", Krizhevsky et al. 2012, sec. 4.1).

    Per example, ``alpha ~ N(0, std^2)`` [3] and every pixel gets
    ``eigvec @ (alpha * eigval)`` added (the same RGB shift for the whole image), as
    fb.resnet.torch's ``Lighting(0.1, eigval, eigvec)``. The eigen-decomposition is of
    pixels in [0, 1] units, so the shift is multiplied by 255 here.

    Args:
      key: a PRNG key.
      x: [B, H, W, 3] uint8 or float in pixel units [0, 255] (before :func:`normalize`).
      std: standard deviation of ``alpha`` (0.1 in the paper).
    Returns:
      [B, H, W, 3] float32, pixel units, not clipped (as in the paper).
    """
    _check_batch(x, "pca_color_noise")
    if x.shape[-1] != 3:
        raise ValueError(f"pca_color_noise needs RGB images (C=3), got shape {x.shape}")
    alpha = std * jax.random.normal(key, (x.shape[0], 3), jnp.float32)
    vec = jnp.asarray(eigvec, jnp.float32)
    val = jnp.asarray(eigval, jnp.float32)
    rgb = (alpha * val) @ vec.T  # [B, 3]: rgb[b, i] = sum_j vec[i, j] * alpha[b, j] * val[j]
    return x.astype(jnp.float32) + 255.0 * rgb[:, None, None, :]


def _center_offsets(in_size: int, out_size: int) -> int:
    # torchvision: int(round((in - out) / 2.0)), Python's round (half to even).
    return int(round((in_size - out_size) / 2.0))


def center_crop(x: jax.Array, size: Size) -> jax.Array:
    """The central ``size`` window of each example (torchvision ``CenterCrop`` offsets).

    Args:
      x: [B, H, W, C] any dtype, with ``H >= h`` and ``W >= w``.
      size: int or (h, w).
    Returns:
      [B, h, w, C], same dtype.
    """
    _check_batch(x, "center_crop")
    h, w = pair(size, "size")
    hh, ww = x.shape[1:3]
    if h > hh or w > ww:
        raise ValueError(f"center_crop: crop {(h, w)} larger than the image {(hh, ww)}")
    t, l_ = _center_offsets(hh, h), _center_offsets(ww, w)
    return x[:, t:t + h, l_:l_ + w, :]


def ten_crop(x: jax.Array, size: Size) -> jax.Array:
    """AlexNet's test-time crops: the four corners and the centre, then the same five of the
    mirrored image, in ``torchvision.transforms.TenCrop`` order (top-left, top-right,
    bottom-left, bottom-right, centre, then those of the horizontally flipped image).

    Args:
      x: [B, H, W, C] any dtype.
      size: int or (h, w), at most (H, W).
    Returns:
      [B, 10, h, w, C], same dtype.
    """
    _check_batch(x, "ten_crop")
    h, w = pair(size, "size")
    hh, ww = x.shape[1:3]
    if h > hh or w > ww:
        raise ValueError(f"ten_crop: crop {(h, w)} larger than the image {(hh, ww)}")

    def five(img: jax.Array) -> list[jax.Array]:
        return [img[:, :h, :w], img[:, :h, ww - w:], img[:, hh - h:, :w],
                img[:, hh - h:, ww - w:], center_crop(img, (h, w))]

    return jnp.stack(five(x) + five(x[:, :, ::-1]), axis=1)


def ten_crop_average(predict: Callable[[jax.Array], jax.Array], x: jax.Array,
                     size: Size) -> jax.Array:
    """Averages ``predict`` over the :func:`ten_crop` crops of each example (AlexNet:
    "averaging the predictions made by the network's softmax layer on the ten patches").

    Args:
      predict: maps crops [N, h, w, C] to per-crop predictions [N, K] (e.g. softmax
        probabilities; any preprocessing such as :func:`normalize` goes inside it).
      x: [B, H, W, C] images.
      size: the crop size.
    Returns:
      [B, K] float32, the mean over the 10 crops.
    """
    crops = ten_crop(x, size)
    b = crops.shape[0]
    out = predict(crops.reshape(b * 10, *crops.shape[2:]))
    return out.astype(jnp.float32).reshape(b, 10, -1).mean(axis=1)
