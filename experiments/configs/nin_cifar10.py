"""The ``nin_cifar10`` experiment, re-exported for readers of the repository.

Its one definition is ``jaxvision/train/configs/nin_cifar10.py`` (shipped in the package, so
``jaxvision train --config nin_cifar10`` works from an install); this file lets
``jaxvision train --config experiments/configs/nin_cifar10.py`` work from a checkout too.
"""

from jaxvision.train.configs.nin_cifar10 import get_config

__all__ = ["get_config"]
