"""VGG-16 on ImageNet (Simonyan, Zisserman, 2015, "Very Deep Convolutional Networks for
Large-Scale Image Recognition"; paper: 24.4% top-1 / 7.2% top-5 error, multi-crop + dense).

Flax-example schedule (cosine, warmup); the paper's base rate 0.01 at batch 256 and weight
decay 5e-4.
"""

import ml_collections

from jaxvision.train.configs._imagenet import imagenet_config


def get_config() -> ml_collections.ConfigDict:
    return imagenet_config("vgg16", batch_size=512, num_epochs=74, base_learning_rate=0.01,
                           weight_decay=5e-4)
