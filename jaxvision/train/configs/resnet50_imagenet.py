"""ResNet-50 on ImageNet (He et al., 2016, "Deep Residual Learning for Image Recognition";
torchvision's v1 weights: 76.13% top-1; Flax example: 76.37% top-1 in 100 epochs).

Exactly the Flax ``examples/imagenet`` recipe: batch 1024, learning rate 0.4 (0.1 per 256),
5 warmup epochs, cosine decay over 100 epochs, Nesterov momentum 0.9, weight decay 1e-4 on
kernels, bfloat16 compute.
"""

import ml_collections

from jaxvision.train.configs._imagenet import imagenet_config


def get_config() -> ml_collections.ConfigDict:
    return imagenet_config("resnet50", batch_size=1024, num_epochs=100)
