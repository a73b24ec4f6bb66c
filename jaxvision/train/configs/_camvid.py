"""The shared CamVid recipe (SegNet's benchmark: 11 classes + void, 360x480).

``data.root`` is left unset (where the data lives differs from machine to machine): give it on
the command line, ``jaxvision train --config segnet_basic_camvid data.root=DIR``, DIR in the
layout of :class:`~jaxvision.data.segmentation.SegmentationFolderSource` (one folder per split,
each with its images and their label PNGs; this project's copy: ``../shared/data/camvid``).
Label 11 is void: ignored by the loss and the metrics.

The recipe follows the SegNet paper's CamVid setup: full 360x480 images, median-frequency
class balancing, SGD with momentum 0.9; augmentation is the joint image + mask flip only
(no scale jitter), as SegNet trained. Learning rate and length are this project's choice,
not the paper's solver files: tune before quoting numbers.
"""

from __future__ import annotations

import ml_collections

from jaxvision.train.config import default_config
from jaxvision.weights.transforms import IMAGENET_MEAN, IMAGENET_STD


def camvid_config(model: str, *, learning_rate: float, num_train_steps: int,
                  batch_size: int = 4) -> ml_collections.ConfigDict:
    """CamVid segmentation with ``model`` (a registered builder returning logits or
    ``{"out", "aux"}`` at the input's size)."""
    config = default_config()
    config.task.name = "segmentation"
    config.model.name = model
    config.model.num_classes = 11
    config.data.source = "segmentation_folder"
    config.data.root = None  # required: the CamVid folder, given on the command line
    config.data.train_split = "train"
    config.data.eval_split = "test"
    config.data.ignore_index = 11
    config.data.mean = list(IMAGENET_MEAN)
    config.data.std = list(IMAGENET_STD)
    config.data.worker_count = 2
    config.dense.canvas = [360, 480]
    config.dense.scale_range = [1.0, 1.0]
    config.dense.flip = True
    config.dense.crop = False
    config.segmentation.class_weights = "median_frequency"
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = learning_rate
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4
    config.schedule.name = "cosine"
    config.num_train_steps = num_train_steps
    config.batch_size = batch_size
    config.eval_batch_size = 4
    config.eval_every_steps = 1000
    config.checkpoint.best_metric = "eval_miou"
    return config
