"""The ``alexnet_imagenet`` experiment; its one definition ships in the package
(jaxvision/train/configs/alexnet_imagenet.py) so ``jaxvision train --config alexnet_imagenet`` works from an install.
This file lets ``jaxvision train --config experiments/configs/alexnet_imagenet.py`` work from a checkout."""

from jaxvision.train.configs.alexnet_imagenet import get_config

__all__ = ["get_config"]
