"""ResNet-20 on CIFAR-10, the recipe of He et al., 2016 ("Deep Residual Learning for Image
Recognition", section 4.2; paper: 8.75% test error).

SGD momentum 0.9, weight decay 1e-4, batch 128, learning rate 0.1 divided by 10 at 32k and
48k iterations, stop at 64k; 4-pixel zero padding + random 32x32 crop + horizontal flip.
The data is the JPEG re-encoding of CIFAR-10 in ``/work/shared/data/cifar10-jpeg`` (lossy,
quality ~75), read as an image folder; expect a little more error than on the original.
"""

import ml_collections

from jaxvision.train.config import default_config

CIFAR10_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR10_STD = [0.2470, 0.2435, 0.2616]


def get_config() -> ml_collections.ConfigDict:
    config = default_config()
    config.model.name = "resnet20"
    config.model.num_classes = 10
    config.data.source = "image_folder"
    config.data.root = "/work/shared/data/cifar10-jpeg"
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
    # He et al. decay every weight, BatchNorm's scale and bias included.
    config.optimizer.decay_norm_and_bias = True
    config.schedule.name = "step"
    config.schedule.boundaries = [32000, 48000]
    config.schedule.decay_factor = 0.1
    config.batch_size = 128
    config.num_train_steps = 64000
    config.eval_every_steps = 2000
    config.eval_batch_size = 1000
    config.log_every_steps = 100
    return config
