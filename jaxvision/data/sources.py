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
