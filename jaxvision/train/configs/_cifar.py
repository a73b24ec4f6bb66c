"""The CIFAR-10 setting shared by the CIFAR experiments: CIFAR-10 as an image folder
(``<data.root>/{train,test}/<class>/*``, e.g. this project's JPEG re-encoding
``cifar10-jpeg``: lossy, quality ~75, expect a little more error than on the original
data), its channel statistics, 4-pixel zero padding + random 32x32 crop + horizontal flip,
SGD momentum 0.9 with weight decay 1e-4, batch 128, a step schedule dividing the learning
rate by 10 at each boundary.

``data.root`` is left unset (where the data lives differs from machine to machine): give it
on the command line, ``jaxvision train --config resnet20_cifar10 data.root=DIR``.
"""

import ml_collections

from jaxvision.train.config import default_config

CIFAR10_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR10_STD = [0.2470, 0.2435, 0.2616]


def cifar10_config(model: str, *, num_train_steps: int,
                   boundaries: list[int]) -> ml_collections.ConfigDict:
    """The shared CIFAR-10 recipe for ``model`` (a registered builder name)."""
    config = default_config()
    config.model.name = model
    config.model.num_classes = 10
    config.data.source = "image_folder"
    config.data.root = None  # required: the image folder, given on the command line
    config.data.train_split = "train"
    config.data.eval_split = "test"
    config.data.mean = CIFAR10_MEAN
    config.data.std = CIFAR10_STD
    config.data.worker_count = 2
    config.augment.crop_padding = 4
    config.augment.flip = True
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 1e-4
    config.schedule.name = "step"
    config.schedule.boundaries = boundaries
    config.schedule.decay_factor = 0.1
    config.batch_size = 128
    config.num_train_steps = num_train_steps
    config.eval_every_steps = 2000
    config.eval_batch_size = 1000
    return config
