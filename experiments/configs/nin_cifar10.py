"""The ``nin_cifar10`` experiment; its one definition ships in the package
(jaxvision/train/configs/nin_cifar10.py) so ``jaxvision train --config nin_cifar10`` works from an install.
This file lets ``jaxvision train --config experiments/configs/nin_cifar10.py`` work from a checkout."""

from jaxvision.train.configs.nin_cifar10 import get_config

__all__ = ["get_config"]
