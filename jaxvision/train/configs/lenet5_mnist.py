"""LeNet-5 on MNIST (LeCun et al., 1998, "Gradient-based learning applied to document
recognition"; paper: 0.95% test error without distortions).

The default experiment of ``jaxvision train``. With ``data.root`` unset it trains on the
MNIST subset embedded in the package (a couple of minutes on a laptop CPU); point
``data.root`` at the full IDX files for the paper's setting::

    jaxvision train --config lenet5_mnist data.root=/path/to/mnist num_epochs=20

The paper trained with stochastic diagonal Levenberg-Marquardt; we use SGD with Nesterov
momentum and a cosine schedule, which reaches the paper's error in a few epochs.
"""

import ml_collections

from jaxvision.train.config import default_config


def get_config() -> ml_collections.ConfigDict:
    config = default_config()
    config.model.name = "lenet5"
    config.model.num_classes = 10
    config.data.source = "mnist"
    config.data.root = None  # None = embedded subset; or an IDX directory for full MNIST
    config.data.mean = [0.1307]
    config.data.std = [0.3081]
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.05
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = True
    config.optimizer.weight_decay = 5e-4
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = 100
    config.batch_size = 128
    config.num_epochs = 12.0
    config.eval_batch_size = 1000
    config.log_every_steps = 50
    return config
