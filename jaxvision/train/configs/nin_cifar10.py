"""Network in Network on CIFAR-10 (Lin, Chen, Yan, 2014, "Network In Network"; paper:
10.41% test error with dropout, 8.81% with translation + flip augmentation).

The paper's global-average-pooling NiN with dropout between the mlpconv stages, trained
with SGD momentum; we use the augmented setting (pad-4 crop + flip) and a step schedule.
The data is CIFAR-10 as an image folder given as ``data.root`` (see ``_cifar.py``).
"""

import ml_collections

from jaxvision.train.configs._cifar import cifar10_config


def get_config() -> ml_collections.ConfigDict:
    config = cifar10_config("nin", num_train_steps=80000, boundaries=[40000, 60000])
    config.schedule.warmup_steps = 400
    return config
