"""jaxvision.data: random-access sources, a resumable sharded loader, on-device augmentation.

Sources (``len(src)``, ``src[i] -> {"image": uint8 [H, W, C], "label": int}``):
:class:`ArraySource`, :func:`mnist_source` (embedded subset or the official IDX files),
:class:`ImageFolderSource`, :func:`tfds_source`. :class:`DataLoader` batches them
(per-epoch shuffling from ``(seed, epoch)``, per-process sharding, padding masks,
``get_state``/``set_state``). :mod:`jaxvision.data.augment` holds the jit-able augmentations.
"""

from jaxvision.data.loader import VALID, DataLoader, load_batch
from jaxvision.data.mnist import (
    MNIST_MEAN,
    MNIST_STD,
    IDXFormatError,
    mnist_source,
    read_idx,
    read_mnist_idx,
)
from jaxvision.data.sources import (
    ArraySource,
    ImageDecodeError,
    ImageFolderSource,
    Source,
    TFDSSource,
    decode_image,
    tfds_source,
)

__all__ = [
    "VALID",
    "MNIST_MEAN",
    "MNIST_STD",
    "ArraySource",
    "DataLoader",
    "IDXFormatError",
    "ImageDecodeError",
    "ImageFolderSource",
    "Source",
    "TFDSSource",
    "decode_image",
    "load_batch",
    "mnist_source",
    "read_idx",
    "read_mnist_idx",
    "tfds_source",
]
