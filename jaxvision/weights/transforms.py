"""Inference preprocessing of the torchvision ImageNet weights, in numpy and PIL.

The preset is torchvision's ``ImageClassification`` (``ResNet50_Weights.IMAGENET1K_V1
.transforms()``) on PIL images: resize the shorter side to ``resize_size`` with PIL's
bilinear filter (antialiased: PIL widens the filter support when downscaling), crop the
``crop_size`` square at the center (offsets rounded the same way), scale to [0, 1] and
normalize with the ImageNet mean and std. Same PIL call, same float32 arithmetic, so
the result equals torchvision's to float rounding -- but laid out NHWC, as our models take.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from jaxvision.checks import pair

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@contextlib.contextmanager
def _opened(path: str | os.PathLike) -> Iterator[Image.Image]:
    # One place for the errors of an unreadable image file, raised on opening or on
    # decoding inside the block.
    if not Path(path).is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as img:
            yield img
    except (OSError, Image.UnidentifiedImageError) as e:
        raise ValueError(f"cannot read {path} as an image ({e})") from None


def open_image(path: str | os.PathLike, mode: str = "RGB") -> Image.Image:
    """Opens an image file as 8-bit ``mode`` ("RGB", or "L" for grey): grayscale, palette
    and alpha images are converted. Raises ``ValueError`` naming the file if it is not an
    image, ``FileNotFoundError`` if it does not exist."""
    with _opened(path) as img:
        return img.convert(mode)


def check_image_file(path: str | os.PathLike) -> None:
    """Raises as :func:`open_image` does unless ``path`` is a file PIL recognizes as an
    image; reads the header only (a cheap check of many files before a model loads)."""
    with _opened(path):
        pass


def load_image(
    path: str | os.PathLike,
    size: int | tuple[int, int] | None = None,
    *,
    resize_size: int | None = None,
    mode: str = "RGB",
) -> np.ndarray:
    """Reads an image file as ``[H, W, C] uint8`` pixels, resized by one of two rules.

    Args:
      path: an image file (JPEG, PNG, ...).
      size: the output ``(H, W)`` (an int for a square); None keeps the stored size.
      resize_size: None stretches the whole image to ``size`` (bilinear, aspect not kept):
        the rule of the small-image nets (MNIST, CIFAR), whose object fills the frame. An
        int applies torchvision's ImageNet rule instead, exactly as
        :class:`ImageClassificationPreset` does: the shorter side resized to
        ``resize_size`` (aspect kept), then the center ``size`` crop (zero-padded if the
        image is smaller).
      mode: "RGB" (C = 3) or "L" (grey, C = 1).

    Returns:
      ``[H, W, 3] uint8`` (RGB) or ``[H, W, 1] uint8`` (grey).
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"load_image: mode must be 'RGB' or 'L', got {mode!r}")
    img = open_image(path, mode)
    if size is not None:
        img = resize_and_crop(img, size, resize_size)
    arr = np.asarray(img, np.uint8)
    return arr[..., None] if mode == "L" else arr


def resize_and_crop(img: Image.Image, size: int | tuple[int, int],
                    resize_size: int | None = None) -> Image.Image:
    """``img`` resized to ``size`` (H, W) by :func:`load_image`'s rules: stretched when
    ``resize_size`` is None, else shorter side to ``resize_size`` then center-cropped."""
    h, w = pair(size, "size")
    if resize_size is None:
        return img if img.size == (w, h) else img.resize((w, h), Image.BILINEAR)
    return center_crop(resize_shorter_side(img, resize_size), (h, w))


def resize_shorter_side(img: Image.Image, size: int) -> Image.Image:
    """Resizes so the shorter side is ``size``, the longer ``int(size * long / short)``
    (torchvision's truncation), bilinear with antialiasing."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), Image.BILINEAR)


def center_crop(img: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    """The center crop of ``size`` (an int for a square, or (H, W)), zero-padded first when
    the image is smaller, as torchvision's ``CenterCrop``."""
    ch, cw = pair(size, "size")
    w, h = img.size
    if w < cw or h < ch:  # torchvision pads with zeros, then crops
        padded = Image.new(img.mode, (max(w, cw), max(h, ch)))
        left, top = (max(cw - w, 0)) // 2, (max(ch - h, 0)) // 2
        padded.paste(img, (left, top))
        img, (w, h) = padded, padded.size
    # Python's round (half to even), like torchvision's int(round((h - crop) / 2.0)).
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return img.crop((left, top, left + cw, top + ch))


@dataclass(frozen=True)
class ImageClassificationPreset:
    """torchvision's ``ImageClassification`` inference transform, output NHWC.

    ``preset(image)`` maps a PIL image, an ``[H, W, 3] uint8`` array or a file path to
    ``[crop_size, crop_size, 3] float32`` normalized pixels.
    """

    crop_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, image: Image.Image | np.ndarray | str | os.PathLike) -> np.ndarray:
        return preprocess(image, resize_size=self.resize_size, crop_size=self.crop_size,
                          mean=self.mean, std=self.std)

    def batch(self, images: Iterable[Image.Image | np.ndarray | str | os.PathLike]
              ) -> np.ndarray:
        """``[N, crop_size, crop_size, 3] float32`` from N images."""
        return np.stack([self(im) for im in images])


def preprocess(
    image: Image.Image | np.ndarray | str | os.PathLike,
    *,
    resize_size: int = 256,
    crop_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """One image -> ``[crop_size, crop_size, 3] float32``, torchvision's ImageNet preset.

    Args:
      image: a PIL image, an ``[H, W, 3] uint8`` RGB array, or an image file path.
      resize_size: the shorter side after resizing (256; 342 for inception_v3).
      crop_size: the side of the center crop (224; 299 for inception_v3).
      mean, std: per-channel normalization of the [0, 1] pixels.
    """
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image)
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"preprocess expects an [H, W, 3] uint8 RGB array, got shape "
                             f"{image.shape} dtype {image.dtype}")
        image = Image.fromarray(image, "RGB")
    elif isinstance(image, Image.Image):
        if image.mode != "RGB":
            image = image.convert("RGB")
    else:
        raise TypeError(f"preprocess expects a PIL image, a uint8 array or a path, got "
                        f"{type(image).__name__}")
    img = resize_and_crop(image, crop_size, resize_size)
    x = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


# The class index repeats two names for different synsets; torchvision's category list
# tells them apart so, and spells names with spaces.
_DISAMBIGUATE = {134: "crane bird", 639: "maillot tank suit"}


@lru_cache(maxsize=1)
def _class_index() -> dict[str, list[str]]:
    text = resources.files("jaxvision").joinpath("assets/imagenet_class_index.json").read_text()
    return json.loads(text)


def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ILSVRC-2012 class names as torchvision's weights ``meta["categories"]``
    lists them, in class-index order (``"tench"`` first)."""
    index = _class_index()
    return tuple(_DISAMBIGUATE.get(i, index[str(i)][1].replace("_", " "))
                 for i in range(len(index)))


def imagenet_wnids() -> tuple[str, ...]:
    """The WordNet ids of the 1,000 classes (``"n01440764"`` first), class-index order."""
    index = _class_index()
    return tuple(index[str(i)][0] for i in range(len(index)))


def sample_image() -> Path:
    """Path of the bundled photo of Grace Hopper (US Navy, public domain)."""
    return Path(str(resources.files("jaxvision").joinpath("assets/grace_hopper.jpg")))
