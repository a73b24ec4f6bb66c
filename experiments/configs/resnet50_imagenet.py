"""The ``resnet50_imagenet`` experiment; its one definition ships in the package
(jaxvision/train/configs/resnet50_imagenet.py) so ``jaxvision train --config resnet50_imagenet`` works from an install.
This file lets ``jaxvision train --config experiments/configs/resnet50_imagenet.py`` work from a checkout."""

from jaxvision.train.configs.resnet50_imagenet import get_config

__all__ = ["get_config"]
