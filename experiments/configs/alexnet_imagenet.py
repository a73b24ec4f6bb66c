"""The ``alexnet_imagenet`` experiment, re-exported for readers of the repository.

Its one definition is ``jaxvision/train/configs/alexnet_imagenet.py`` (shipped in the package, so
``jaxvision train --config alexnet_imagenet`` works from an install); this file lets
``jaxvision train --config experiments/configs/alexnet_imagenet.py`` work from a checkout too.
"""

from jaxvision.train.configs.alexnet_imagenet import get_config

__all__ = ["get_config"]
