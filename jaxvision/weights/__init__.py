"""torchvision checkpoints: safe reading, conversion to Flax variables, download and cache,
and the preprocessing that goes with the pretrained weights."""

from jaxvision.weights.convert import (
    CheckpointMismatchError,
    check_fit,
    convert_state_dict,
    convert_torchvision,
    torch_to_flax,
)
from jaxvision.weights.hub import (
    WEIGHTS,
    DownloadError,
    WeightsInfo,
    cache_dir,
    download,
    load,
    weights_info,
)
from jaxvision.weights.io import CheckpointError, UnsafeCheckpointError, read, write
from jaxvision.weights.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageClassificationPreset,
    imagenet_classes,
    imagenet_wnids,
    load_image,
    open_image,
    preprocess,
    sample_image,
)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "WEIGHTS", "CheckpointError", "CheckpointMismatchError",
    "DownloadError", "ImageClassificationPreset", "UnsafeCheckpointError", "WeightsInfo",
    "cache_dir", "check_fit", "convert_state_dict", "convert_torchvision", "download",
    "imagenet_classes", "imagenet_wnids", "load", "load_image", "open_image", "preprocess",
    "read", "sample_image", "torch_to_flax", "weights_info", "write",
]
