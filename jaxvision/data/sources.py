"""Random-access data sources.

A *source* is anything with ``len(src)`` and ``src[i] -> {"image": uint8 [H, W, C],
"label": int}`` (the protocol of grain's ``RandomAccessDataSource`` and of
``tfds.data_source``), plus the attributes ``num_classes`` and ``image_shape`` where they are
known. :class:`jaxvision.data.DataLoader` batches any source.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from jaxvision.checks import pair

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


def _read_only(value: Any) -> Any:
    """A read-only view of a row of the source's arrays: a transform writing into an example
    in place would otherwise change the source itself (and every later epoch)."""
    if isinstance(value, np.ndarray):
        value = value.view()
        value.flags.writeable = False
    return value


class ArraySource:
    """In-memory source over stacked arrays, with any number of named per-example fields.

    ``src[i]`` -> ``{"image": uint8 [H, W, C], "label": int, <field>: fields[field][i], ...}``
    (``label`` only when ``labels`` is given; arrays are read-only views of the source's
    memory); :meth:`get_batch` gathers the same fields stacked along a leading batch axis.

    Args:
      images: [N, H, W, C] uint8 (a [N, H, W] array is taken as C=1).
      labels: [N] integer class indices, or None for a source without a ``label`` field
        (e.g. dense examples whose boxes carry their own ``labels``).
      num_classes: number of classes; default ``labels.max() + 1`` (None without labels).
      **fields: further per-example arrays, each with leading dimension N (e.g. ``boxes``
        float32 [N, K, 4], ``mask`` uint8 [N, H, W]); names must not start with ``_``
        (reserved for the loader's flags, :data:`jaxvision.data.VALID`).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None, *,
                 num_classes: int | None = None, **fields: Any):
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise ValueError(
                f"ArraySource: images must be [N, H, W, C] (or [N, H, W]), got shape {images.shape}"
            )
        if images.dtype != np.uint8:
            raise ValueError(f"ArraySource: images must be uint8, got {images.dtype}")
        n = images.shape[0]
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim != 1 or labels.shape[0] != n:
                raise ValueError(
                    f"ArraySource: labels must be [N] with N={n} (one per image), "
                    f"got shape {labels.shape}"
                )
            if not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"ArraySource: labels must be integers, got {labels.dtype}")
            if labels.size and labels.min() < 0:
                raise ValueError(f"ArraySource: labels must be >= 0, got min {labels.min()}")
            if num_classes is None:
                num_classes = int(labels.max()) + 1 if labels.size else 0
            elif labels.size and labels.max() >= num_classes:
                raise ValueError(
                    f"ArraySource: label {int(labels.max())} >= num_classes={num_classes}"
                )
            labels = labels.astype(np.int64)
        extra: dict[str, np.ndarray] = {}
        for name, value in fields.items():
            if name.startswith("_"):
                raise ValueError(
                    f"ArraySource: field name {name!r} starts with '_', which is reserved for "
                    "the loader's flags"
                )
            value = np.asarray(value)
            if value.ndim == 0 or value.shape[0] != n:
                raise ValueError(
                    f"ArraySource: field {name!r} must have leading dimension N={n} (one row "
                    f"per image), got shape {value.shape}"
                )
            extra[name] = value
        self.images = images
        self.labels = labels
        self.fields = extra
        self.num_classes = None if num_classes is None else int(num_classes)
        self.image_shape: tuple[int, int, int] = tuple(images.shape[1:])  # type: ignore[assignment]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> Example:
        i = _check_index(index, len(self), "ArraySource")
        ex: Example = {"image": _read_only(self.images[i])}
        if self.labels is not None:
            ex["label"] = int(self.labels[i])
        for name, value in self.fields.items():
            ex[name] = _read_only(value[i])
        return ex

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> Example:
        """Vectorized gather: {"image": uint8 [B, H, W, C], "label": int64 [B], field: [B, ...]}."""
        idx = np.asarray(indices, dtype=np.int64)
        batch: Example = {"image": self.images[idx]}
        if self.labels is not None:
            batch["label"] = self.labels[idx]
        for name, value in self.fields.items():
            batch[name] = value[idx]
        return batch

    def __repr__(self) -> str:
        extra = f", fields={sorted(self.fields)}" if self.fields else ""
        return (
            f"ArraySource(n={len(self)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes}{extra})"
        )


def _fspath(p: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(p)).expanduser()


class ImageDecodeError(OSError):
    """An image file could not be read or decoded (the message names the file)."""


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


ON_ERROR = ("raise", "skip")


def check_on_error(on_error: str, what: str) -> str:
    """Validate an ``on_error`` argument ('raise' or 'skip')."""
    if on_error not in ON_ERROR:
        raise ValueError(f"{what}: on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error


class FileSource:
    """Base of the file-backed sources: ``on_error`` bookkeeping and the skip-to-next rule.

    Subclasses fill ``self.items`` (one entry per example) and implement
    ``_item_path(item)`` (the file named in reports) and ``_load(i, item) -> Example``,
    raising one of ``skippable`` (:class:`ImageDecodeError`; the dense sources add
    :class:`~jaxvision.data.AnnotationError`) for bad input.

    Items found bad while indexing (:meth:`_reject` in ``__init__``) are left out of the
    source. Items found bad only when loaded (a corrupt JPEG, a label value above the class
    count) cannot leave a random-access source: with ``on_error="skip"``, ``src[i]`` then
    returns the next good item ``i+1, i+2, ...`` (wrapping around; deterministic, so a
    resumed loader sees the same batches), warns, and records the bad file. Either way the
    file is in ``skipped_paths`` (the DataLoader merges the ones its worker processes meet;
    the trainer reports them at the end) with its reason in ``skip_reasons``.
    """

    name = "FileSource"
    skippable: tuple[type[Exception], ...] = (ImageDecodeError,)
    items: Sequence[Any]

    def _init_errors(self, on_error: str) -> None:
        self.on_error = check_on_error(on_error, self.name)
        self.skipped_paths: set[str] = set()
        self.skip_reasons: dict[str, str] = {}

    @property
    def skipped(self) -> int:
        """Number of distinct bad files skipped so far (``on_error="skip"``)."""
        return len(self.skipped_paths)

    def _reject(self, path: str, error: Exception) -> None:
        """While indexing: raise ``error`` (on_error="raise") or record ``path`` as skipped."""
        if self.on_error == "raise":
            raise error
        self.skipped_paths.add(str(path))
        self.skip_reasons[str(path)] = str(error)

    def _warn_skipped(self) -> None:
        """One warning for the items :meth:`_reject` left out while indexing."""
        if not self.skipped_paths:
            return
        paths = sorted(self.skipped_paths)
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        warnings.warn(
            f"{self.name}: skipped {len(paths)} bad item(s) (on_error='skip'): "
            + "; ".join(self.skip_reasons[p] for p in paths[:3]) + more,
            stacklevel=3,
        )

    def __len__(self) -> int:
        return len(self.items)

    def _item_path(self, item: Any) -> str:
        raise NotImplementedError

    def _load(self, index: int, item: Any) -> Example:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Example:
        n = len(self)
        i = _check_index(index, n, self.name)
        for k in range(n):
            j = (i + k) % n
            item = self.items[j]
            path = self._item_path(item)
            if path in self.skipped_paths:  # known bad (on_error="skip"): do not retry
                continue
            try:
                return self._load(j, item)
            except self.skippable as e:
                if self.on_error == "raise":
                    raise
                self.skipped_paths.add(path)
                self.skip_reasons[path] = str(e)
                warnings.warn(f"{self.name}: skipping {path}: {e}", stacklevel=2)
        raise self.skippable[0](f"{self.name}: none of the {n} items can be loaded")


class ImageFolderSource(FileSource):
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
        bad files met so far; the DataLoader merges the ones its worker processes meet;
        see :class:`FileSource`). The file list is not decoded up front, so ``len(src)``
        still counts bad files.
      image_size: int or (height, width): resize every image to it (PIL bilinear) so
        batches are static-shaped; None keeps each file's size (then ``image_shape`` is
        None, and a batch of mixed sizes raises in the loader).
      grayscale: decode to one channel (PIL "L"), ``image`` uint8 [H, W, 1].
    """

    name = "ImageFolderSource"

    def __init__(
        self,
        root: str | os.PathLike[str],
        extensions: Sequence[str] = (".jpg", ".jpeg", ".png"),
        on_error: str = "raise",
        image_size: int | tuple[int, int] | None = None,
        grayscale: bool = False,
    ):
        self._init_errors(on_error)
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
        self.image_size = None if image_size is None else pair(image_size, "image_size")
        self.grayscale = bool(grayscale)
        channels = 1 if self.grayscale else 3
        self.image_shape = None if self.image_size is None else (*self.image_size, channels)
        self.items = samples

    def _item_path(self, item: tuple[str, int]) -> str:
        return item[0]

    def _load(self, index: int, item: tuple[str, int]) -> Example:
        return {"image": decode_image(item[0], self.image_size, self.grayscale),
                "label": item[1]}

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
        self.image_size = None if image_size is None else pair(image_size, "image_size")
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
