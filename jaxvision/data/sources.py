"""Random-access data sources.

A *source* is anything with ``len(src)`` and ``src[i] -> {"image": uint8 [H, W, C],
"label": int}`` (the protocol of grain's ``RandomAccessDataSource`` and of
``tfds.data_source``), plus the attributes ``num_classes`` and ``image_shape`` where they are
known. :class:`jaxvision.data.DataLoader` batches any source.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

Example = dict[str, Any]


@runtime_checkable
class Source(Protocol):
    """The random-access protocol every jaxvision source follows."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Example: ...


def _check_index(index: int, n: int, what: str) -> int:
    """Normalize a (possibly negative) integer index into ``[0, n)`` or raise IndexError."""
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        raise TypeError(f"{what} index must be an int, got {type(index).__name__}")
    i = int(index)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"{what} index {index} out of range for {n} examples")
    return i


class ArraySource:
    """In-memory source over stacked arrays.

    Args:
      images: [N, H, W, C] uint8 (a [N, H, W] array is taken as C=1).
      labels: [N] integer class indices.
      num_classes: number of classes; default ``labels.max() + 1``.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int | None = None):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise ValueError(
                f"ArraySource: images must be [N, H, W, C] (or [N, H, W]), got shape {images.shape}"
            )
        if images.dtype != np.uint8:
            raise ValueError(f"ArraySource: images must be uint8, got {images.dtype}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"ArraySource: labels must be [N] with N={images.shape[0]} (one per image), "
                f"got shape {labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"ArraySource: labels must be integers, got {labels.dtype}")
        if labels.size and labels.min() < 0:
            raise ValueError(f"ArraySource: labels must be >= 0, got min {labels.min()}")
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels.size else 0
        elif labels.size and labels.max() >= num_classes:
            raise ValueError(f"ArraySource: label {int(labels.max())} >= num_classes={num_classes}")
        self.images = images
        self.labels = labels.astype(np.int64)
        self.num_classes = int(num_classes)
        self.image_shape: tuple[int, int, int] = tuple(images.shape[1:])  # type: ignore[assignment]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> Example:
        i = _check_index(index, len(self), "ArraySource")
        return {"image": self.images[i], "label": int(self.labels[i])}

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> Example:
        """Vectorized gather: {"image": uint8 [B, H, W, C], "label": int64 [B]}."""
        idx = np.asarray(indices, dtype=np.int64)
        return {"image": self.images[idx], "label": self.labels[idx]}

    def __repr__(self) -> str:
        return (
            f"ArraySource(n={len(self)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes})"
        )


def _fspath(p: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(p)).expanduser()


class ImageDecodeError(OSError):
    """An image file could not be read or decoded (the message names the file)."""


def _as_hw(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)):
        hw = (int(image_size), int(image_size))
    else:
        hw = tuple(int(s) for s in image_size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"image_size must be an int or (height, width) >= 1, got {image_size!r}")
    return hw  # type: ignore[return-value]


def decode_image(path: str | os.PathLike[str], image_size: tuple[int, int] | None = None,
                 grayscale: bool = False):
    """Decode one file with PIL to RGB: uint8 [H, W, 3] (``grayscale``: PIL's "L", uint8
    [H, W, 1]).

    ``image_size=(h, w)`` resizes with PIL's bilinear filter (antialiased when shrinking,
    like torchvision's ``Resize`` on PIL images).

    Raises:
      ImageDecodeError: naming the file, when PIL cannot open or fully decode it.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            # convert() forces the full decode: truncated files fail here.
            im = im.convert("L" if grayscale else "RGB")
            if image_size is not None and im.size != (image_size[1], image_size[0]):
                im = im.resize((image_size[1], image_size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
            return arr[..., None] if grayscale else arr
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(f"cannot decode image {path}: {type(e).__name__}: {e}") from e


class ImageFolderSource:
    """Class-per-folder images, like torchvision's ``ImageFolder``: ``root/<class>/<file>``.

    Class names are the sorted sub-directory names of ``root`` and map to indices
    0..K-1 (``classes``, ``class_to_idx``); the files of a class are found recursively and
    sorted, with extensions matched case-insensitively. ``src[i]`` decodes file ``i`` with
    PIL to RGB: {"image": uint8 [H, W, 3], "label": int}.

    Args:
      root: the directory (e.g. ``cifar10-jpeg/train``).
      extensions: file endings that count as images.
      on_error: what to do with a file PIL cannot decode. "raise": raise
        :class:`ImageDecodeError` naming the file. "skip": random access cannot drop an
        index, so ``src[i]`` falls back to the next decodable file ``i+1, i+2, ...``
        (wrapping around; deterministic, so a resumed loader still sees the same batches)
        and the bad file is recorded in ``skipped_paths`` (``skipped`` counts the distinct
        bad files met so far; the DataLoader merges the ones its worker processes meet).
        The file list is not decoded up front, so ``len(src)`` still counts bad files.
      image_size: int or (height, width): resize every image to it (PIL bilinear) so
        batches are static-shaped; None keeps each file's size (then ``image_shape`` is
        None, and a batch of mixed sizes raises in the loader).
      grayscale: decode to one channel (PIL "L"), ``image`` uint8 [H, W, 1].
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        extensions: Sequence[str] = (".jpg", ".jpeg", ".png"),
        on_error: str = "raise",
        image_size: int | tuple[int, int] | None = None,
        grayscale: bool = False,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(
                f"ImageFolderSource: on_error must be 'raise' or 'skip', got {on_error!r}"
            )
        root = _fspath(root)
        if not root.is_dir():
            raise FileNotFoundError(f"ImageFolderSource: {root} is not a directory")
        exts = tuple(e.lower() for e in extensions)
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        if not classes:
            raise FileNotFoundError(
                f"ImageFolderSource: no class folders in {root}; expected root/<class>/<image>"
            )
        samples: list[tuple[str, int]] = []
        for label, cls in enumerate(classes):
            files = []
            for dirpath, _, names in os.walk(root / cls, followlinks=True):
                files += [os.path.join(dirpath, n) for n in names if n.lower().endswith(exts)]
            if not files:
                raise FileNotFoundError(
                    f"ImageFolderSource: class folder {root / cls} has no file ending in {exts}"
                )
            samples += [(f, label) for f in sorted(files)]
        self.root = root
        self.classes = classes
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self.samples = samples
        self.targets = np.asarray([s[1] for s in samples], dtype=np.int64)
        self.num_classes = len(classes)
        self.on_error = on_error
        self.image_size = _as_hw(image_size)
        self.grayscale = bool(grayscale)
        channels = 1 if self.grayscale else 3
        self.image_shape = None if self.image_size is None else (*self.image_size, channels)
        self.skipped_paths: set[str] = set()

    @property
    def skipped(self) -> int:
        """Number of distinct undecodable files met so far (on_error="skip")."""
        return len(self.skipped_paths)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Example:
        n = len(self)
        i = _check_index(index, n, "ImageFolderSource")
        for k in range(n):
            path, label = self.samples[(i + k) % n]
            if path in self.skipped_paths:  # known bad (on_error="skip"): do not retry
                continue
            try:
                image = decode_image(path, self.image_size, self.grayscale)
                return {"image": image, "label": label}
            except ImageDecodeError:
                if self.on_error == "raise":
                    raise
                self.skipped_paths.add(path)
        raise ImageDecodeError(f"ImageFolderSource: no file under {self.root} can be decoded")

    def __repr__(self) -> str:
        return (
            f"ImageFolderSource({str(self.root)!r}, n={len(self)}, classes={self.num_classes}, "
            f"image_size={self.image_size}, on_error={self.on_error!r})"
        )


class TFDSSource:
    """A ``tfds.data_source`` (random access over array_record files) as a jaxvision source.

    ``src[i]`` -> {"image": uint8 [H, W, C], "label": int}, read from the features
    ``image_key`` and ``label_key``; ``num_classes``, ``classes`` and ``image_shape`` come
    from the dataset's features (``image_shape`` is None when the images vary in size).

    Args:
      data_source: what ``tfds.data_source(...)`` returns (or any random-access sequence of
        feature dicts).
      image_key, label_key: the feature names of the image and the label.
      image_size: int or (height, width): resize every image to it (PIL bilinear, as
        :class:`ImageFolderSource`) so batches of variable-size data are static-shaped.
    """

    def __init__(self, data_source: Any, image_key: str = "image", label_key: str = "label",
                 image_size: int | tuple[int, int] | None = None):
        self.data_source = data_source
        self.image_key = image_key
        self.label_key = label_key
        self.image_size = _as_hw(image_size)
        self.num_classes: int | None = None
        self.classes: list[str] | None = None
        self.image_shape: tuple[int, int, int] | None = None
        info = getattr(data_source, "dataset_info", None)
        features = getattr(info, "features", None)
        if features is not None:
            for key in (image_key, label_key):
                if key not in features:
                    raise KeyError(
                        f"TFDSSource: dataset has no feature {key!r}; features: {list(features)}"
                    )
            self.num_classes = getattr(features[label_key], "num_classes", None)
            names = getattr(features[label_key], "names", None)
            self.classes = list(names) if names else None
            shape = tuple(features[image_key].shape)
            if len(shape) == 3 and all(s is not None for s in shape):
                self.image_shape = shape  # type: ignore[assignment]
        if self.image_size is not None:
            channels = self.image_shape[2] if self.image_shape is not None else 3
            self.image_shape = (*self.image_size, channels)

    def __len__(self) -> int:
        return len(self.data_source)

    def _convert(self, record: dict[str, Any]) -> Example:
        image = np.asarray(record[self.image_key], dtype=np.uint8)
        if self.image_size is not None and image.shape[:2] != self.image_size:
            from PIL import Image

            # PIL resizes [H, W] or [H, W, 3] arrays; keep a trailing channel axis of 1.
            grey = image.ndim == 3 and image.shape[2] == 1
            pil = Image.fromarray(image[..., 0] if grey else image)
            pil = pil.resize((self.image_size[1], self.image_size[0]), Image.BILINEAR)
            image = np.asarray(pil, dtype=np.uint8)
            image = image[..., None] if grey else image
        return {"image": image, "label": int(record[self.label_key])}

    def __getitem__(self, index: int) -> Example:
        i = _check_index(index, len(self), "TFDSSource")
        return self._convert(self.data_source[i])

    def __repr__(self) -> str:
        return (
            f"TFDSSource(n={len(self)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes})"
        )


def tfds_source(
    name: str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    image_key: str = "image",
    label_key: str = "label",
    image_size: int | tuple[int, int] | None = None,
) -> TFDSSource:
    """A TFDS dataset split as a random-access source, via ``tfds.data_source``.

    Needs ``tensorflow-datasets`` (the optional extra ``jaxvision[tfds]``; TensorFlow itself
    is not needed to read prepared array_record data). The dataset must already be prepared
    in ``data_dir`` in the array_record format unless ``download=True``.

    Args:
      name: TFDS name, e.g. "mnist", "cifar10", "imagenet2012".
      split: e.g. "train", "test", "train[:90%]".
      data_dir: the TFDS data directory (default: TFDS's, ``~/tensorflow_datasets``).
      download: let TFDS download and prepare the dataset when missing.
      image_key, label_key: the feature names of the image and the label.
      image_size: resize every image to it (see :class:`TFDSSource`).

    Raises:
      ImportError: when tensorflow-datasets (or array_record) is not installed.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "tfds_source needs tensorflow-datasets: pip install 'jaxvision[tfds]'"
        ) from e
    ds = tfds.data_source(
        name, split=split, data_dir=None if data_dir is None else os.fspath(data_dir),
        download=download,
    )
    return TFDSSource(ds, image_key=image_key, label_key=label_key, image_size=image_size)
