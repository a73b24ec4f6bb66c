"""ResNet-20 on CIFAR-10, the recipe of He et al., 2016 ("Deep Residual Learning for Image
Recognition", section 4.2; paper: 8.75% test error).

SGD momentum 0.9, weight decay 1e-4, batch 128, learning rate 0.1 divided by 10 at 32k and
48k iterations, stop at 64k; 4-pixel zero padding + random 32x32 crop + horizontal flip.
The data is CIFAR-10 as an image folder given as ``data.root`` (see ``_cifar.py``); on
the JPEG re-encoding (lossy, quality ~75) expect a little more error than on the original.
"""

import ml_collections

from jaxvision.train.configs._cifar import cifar10_config


def get_config() -> ml_collections.ConfigDict:
    config = cifar10_config("resnet20", num_train_steps=64000, boundaries=[32000, 48000])
    # He et al. decay every weight, BatchNorm's scale and bias included.
    config.optimizer.decay_norm_and_bias = True
    config.log_every_steps = 100
    return config
