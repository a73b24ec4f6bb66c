"""MNIST: the IDX file reader and the embedded class-balanced subset.

MNIST (Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits")
is licensed CC BY-SA 3.0. The package ships a subset of it in
``jaxvision/assets/mnist_subset.npz`` (same licence, same credit) so that examples, tests
and the ``train`` command work with no download:

* 12,000 train images (1,200 per class) drawn from the 60,000 official train images and
  2,000 test images (200 per class) from the 10,000 official test images;
* chosen by :func:`make_subset` with ``numpy.random.default_rng(0)``: per class, a sorted
  random choice without replacement; the kept examples appear in original file order;
* arrays ``{train,test}_images`` uint8 [N, 28, 28], ``{train,test}_labels`` uint8 [N] and
  ``{train,test}_index`` int32 [N] (the row of each example in the official IDX files), so
  anyone can check the subset against the original data.

Rebuild with ``python -m jaxvision.data.mnist /path/to/mnist`` (the four official ``.gz``
files).
"""

from __future__ import annotations

import gzip
import os
from importlib import resources
from pathlib import Path

import numpy as np

from jaxvision.data.sources import ArraySource

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SUBSET_PER_CLASS = {"train": 1200, "test": 200}
_SUBSET_SEED = 0
SUBSET_FILE = "mnist_subset.npz"

#: Per-channel mean and std of the 60,000 MNIST train images scaled to [0, 1].
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


class IDXFormatError(ValueError):
    """An IDX file is malformed (bad magic number, wrong type or truncated)."""


def read_idx(path: str | os.PathLike[str], ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or ``.gz``) of unsigned bytes.

    The format (LeCun's MNIST page): a 4-byte magic ``0x00 0x00 <type> <ndim>`` with type
    ``0x08`` (uint8), then ``ndim`` big-endian int32 dimension sizes, then the data.

    Args:
      path: the file.
      ndim: expected number of dimensions (3 for images, 1 for labels); checked when given.

    Returns:
      uint8 array of the stored shape, e.g. [60000, 28, 28].

    Raises:
      IDXFormatError: naming the file, on a bad magic number, type, ndim or size.
    """
    path = Path(os.fspath(path))
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise IDXFormatError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4:
        raise IDXFormatError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise IDXFormatError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000080N); "
            "is it really an (uncompressed or .gz) IDX file?"
        )
    if raw[2] != 0x08:
        raise IDXFormatError(
            f"{path}: IDX data type 0x{raw[2]:02x} unsupported (expected 0x08, unsigned byte)"
        )
    nd = raw[3]
    if ndim is not None and nd != ndim:
        raise IDXFormatError(f"{path}: IDX file has {nd} dimensions, expected {ndim}")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise IDXFormatError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=nd, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    got = len(raw) - header
    if got != expected:
        raise IDXFormatError(
            f"{path}: IDX header says shape {shape} ({expected} bytes of data) "
            f"but the file holds {got} bytes of data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    """The IDX file ``stem`` (raw or .gz) in ``root`` or torchvision's ``root/MNIST/raw``."""
    for d in (root, root / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    raise FileNotFoundError(
        f"MNIST file {stem}[.gz] not found in {root} (nor in {root / 'MNIST' / 'raw'}); "
        "expected the four official IDX files, e.g. train-images-idx3-ubyte.gz"
    )


def read_mnist_idx(root: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read an official MNIST split from IDX files.

    Returns:
      (images uint8 [N, 28, 28], labels uint8 [N]).
    """
    if split not in _FILES:
        raise ValueError(f"MNIST split must be 'train' or 'test', got {split!r}")
    root = Path(os.fspath(root)).expanduser()
    img_path, lab_path = (_find(root, s) for s in _FILES[split])
    images = read_idx(img_path, ndim=3)
    labels = read_idx(lab_path, ndim=1)
    if images.shape[1:] != (28, 28):
        raise IDXFormatError(f"{img_path}: images are {images.shape[1:]}, expected (28, 28)")
    if images.shape[0] != labels.shape[0]:
        raise IDXFormatError(
            f"{img_path} holds {images.shape[0]} images but {lab_path} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise IDXFormatError(f"{lab_path}: label {labels.max()} outside 0..9")
    return images, labels


def _subset_path() -> Path:
    return Path(str(resources.files("jaxvision") / "assets" / SUBSET_FILE))


def mnist_source(split: str = "train", root: str | os.PathLike[str] | None = None) -> ArraySource:
    """MNIST as a source of {"image": uint8 [28, 28, 1], "label": int} examples.

    Args:
      split: "train" or "test".
      root: a directory holding the official IDX files (raw or ``.gz``; also found under
        torchvision's ``root/MNIST/raw``) -> the full 60,000 / 10,000 images. ``None`` ->
        the embedded class-balanced subset (12,000 / 2,000 images; see the module
        docstring for how it was made). MNIST: LeCun, Cortes, Burges; CC BY-SA 3.0.
    """
    if split not in _FILES:
        raise ValueError(f"MNIST split must be 'train' or 'test', got {split!r}")
    if root is None:
        path = _subset_path()
        if not path.is_file():
            raise FileNotFoundError(f"embedded MNIST subset missing: {path}")
        with np.load(path) as z:
            images, labels = z[f"{split}_images"], z[f"{split}_labels"]
    else:
        images, labels = read_mnist_idx(root, split)
    return ArraySource(images[..., None], labels, num_classes=10)


def make_subset(labels: np.ndarray, per_class: int, seed: int = _SUBSET_SEED) -> np.ndarray:
    """Class-balanced pick: ``per_class`` indices per class, sorted; int32 [10 * per_class]."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(10):
        (idx,) = np.nonzero(labels == c)
        if idx.size < per_class:
            raise ValueError(f"class {c} has {idx.size} examples < {per_class}")
        picks.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(picks)).astype(np.int32)


def build_embedded_subset(root: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Write the embedded subset ``out`` (.npz) from the official IDX files in ``root``."""
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        images, labels = read_mnist_idx(root, split)
        index = make_subset(labels, _SUBSET_PER_CLASS[split])
        arrays[f"{split}_images"] = images[index]
        arrays[f"{split}_labels"] = labels[index]
        arrays[f"{split}_index"] = index
    np.savez_compressed(out, **arrays)


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m jaxvision.data.mnist /path/to/mnist")
    build_embedded_subset(sys.argv[1], _subset_path())
    print(f"wrote {_subset_path()}")
