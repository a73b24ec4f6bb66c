"""The ``lenet5_mnist`` experiment; its one definition ships in the package
(jaxvision/train/configs/lenet5_mnist.py) so ``jaxvision train --config lenet5_mnist`` works from an install.
This file lets ``jaxvision train --config experiments/configs/lenet5_mnist.py`` work from a checkout."""

from jaxvision.train.configs.lenet5_mnist import get_config

__all__ = ["get_config"]
