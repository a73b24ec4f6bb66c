"""The ``vgg16_imagenet`` experiment; its one definition ships in the package
(jaxvision/train/configs/vgg16_imagenet.py) so ``jaxvision train --config vgg16_imagenet`` works from an install.
This file lets ``jaxvision train --config experiments/configs/vgg16_imagenet.py`` work from a checkout."""

from jaxvision.train.configs.vgg16_imagenet import get_config

__all__ = ["get_config"]
