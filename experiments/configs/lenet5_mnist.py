"""The ``lenet5_mnist`` experiment, re-exported for readers of the repository.

Its one definition is ``jaxvision/train/configs/lenet5_mnist.py`` (shipped in the package, so
``jaxvision train --config lenet5_mnist`` works from an install); this file lets
``jaxvision train --config experiments/configs/lenet5_mnist.py`` work from a checkout too.
"""

from jaxvision.train.configs.lenet5_mnist import get_config

__all__ = ["get_config"]
