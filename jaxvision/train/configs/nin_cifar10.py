"""Network in Network on CIFAR-10 (Lin, Chen, Yan, 2014, "Network In Network"; paper:
10.41% test error with dropout, 8.81% with translation + flip augmentation).

The paper's global-average-pooling NiN with dropout between the mlpconv stages, trained
with SGD momentum; we use the augmented setting (pad-4 crop + flip) and a step schedule.
The data is the lossy JPEG re-encoding of CIFAR-10 in ``/work/shared/data/cifar10-jpeg``.
"""

import ml_collections

from jaxvision.train.config import default_config
from jaxvision.train.configs.resnet20_cifar10 import CIFAR10_MEAN, CIFAR10_STD


def get_config() -> ml_collections.ConfigDict:
    config = default_config()
    config.model.name = "nin_cifar10"
    config.model.num_classes = 10
    config.data.source = "image_folder"
    config.data.root = "/work/shared/data/cifar10-jpeg"
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
    config.schedule.boundaries = [40000, 60000]
    config.schedule.decay_factor = 0.1
    config.schedule.warmup_steps = 400
    config.batch_size = 128
    config.num_train_steps = 80000
    config.eval_every_steps = 2000
    config.eval_batch_size = 1000
    return config
