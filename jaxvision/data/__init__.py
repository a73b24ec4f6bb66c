"""jaxvision.data: random-access sources, a resumable sharded loader, on-device augmentation.

Classification sources (``len(src)``, ``src[i] -> {"image": uint8 [H, W, C], "label": int}``):
:class:`ArraySource` (also any further named per-example arrays), :func:`mnist_source`
(embedded subset or the official IDX files), :class:`ImageFolderSource`, :func:`tfds_source`.
Dense sources (boxes, instance masks, segmentation masks; the fields are listed in
:mod:`jaxvision.data.annotated`): :class:`VOCSource`, :class:`COCOSource`,
:class:`SegmentationFolderSource`, :func:`tfds_detection_source`. :class:`DataLoader`
batches any of them, stacking every field (per-epoch shuffling from ``(seed, epoch)``,
per-process sharding, a per-example ``transform(example, rng)``, the padding flag
:data:`VALID`, ``get_state``/``set_state``); :class:`GrainLoader` runs the same batches
through a Grain pipeline. :mod:`jaxvision.data.augment` holds the jit-able augmentations.
"""

from jaxvision.data.annotated import AnnotationError, pad_boxes
from jaxvision.data.coco import COCOSource
from jaxvision.data.dense_augment import eval_transform, postprocess_boxes, train_transform
from jaxvision.data.grain_loader import GrainLoader
from jaxvision.data.loader import VALID, DataLoader, example_rng, load_batch, stack_examples
from jaxvision.data.mnist import (
    MNIST_MEAN,
    MNIST_STD,
    IDXFormatError,
    mnist_source,
    read_idx,
    read_mnist_idx,
)
from jaxvision.data.segmentation import SegmentationFolderSource
from jaxvision.data.sources import (
    ArraySource,
    ImageDecodeError,
    ImageFolderSource,
    Source,
    TFDSSource,
    decode_image,
    tfds_source,
)
from jaxvision.data.tfds_detection import TFDSDetectionSource, tfds_detection_source
from jaxvision.data.voc import VOCSource, voc_classes

__all__ = [
    "AnnotationError",
    "ArraySource",
    "COCOSource",
    "DataLoader",
    "decode_image",
    "eval_transform",
    "example_rng",
    "GrainLoader",
    "IDXFormatError",
    "ImageDecodeError",
    "ImageFolderSource",
    "load_batch",
    "MNIST_MEAN",
    "mnist_source",
    "MNIST_STD",
    "pad_boxes",
    "postprocess_boxes",
    "read_idx",
    "read_mnist_idx",
    "SegmentationFolderSource",
    "Source",
    "stack_examples",
    "tfds_detection_source",
    "tfds_source",
    "TFDSDetectionSource",
    "TFDSSource",
    "train_transform",
    "VALID",
    "voc_classes",
    "VOCSource",
]
