"""The ``vgg16_imagenet`` experiment, re-exported for readers of the repository.

Its one definition is ``jaxvision/train/configs/vgg16_imagenet.py`` (shipped in the package, so
``jaxvision train --config vgg16_imagenet`` works from an install); this file lets
``jaxvision train --config experiments/configs/vgg16_imagenet.py`` work from a checkout too.
"""

from jaxvision.train.configs.vgg16_imagenet import get_config

__all__ = ["get_config"]
