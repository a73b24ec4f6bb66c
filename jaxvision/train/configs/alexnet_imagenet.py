"""AlexNet on ImageNet (Krizhevsky, Sutskever, Hinton, 2012, "ImageNet Classification with
Deep Convolutional Neural Networks"; paper: 40.7% top-1 / 18.2% top-5 error, 1 CNN).

Flax-example schedule (cosine, warmup) instead of the paper's divide-by-10-on-plateau;
weight decay 5e-4 as in the paper; PCA colour noise (std 0.1) as in the paper; evaluation
averages the softmax over the paper's 10 crops (four corners + centre, and their mirrors).
"""

import ml_collections

from jaxvision.train.configs._imagenet import imagenet_config


def get_config() -> ml_collections.ConfigDict:
    config = imagenet_config("alexnet", batch_size=1024, num_epochs=90,
                             base_learning_rate=0.01 * 2, weight_decay=5e-4)
    config.augment.pca_noise = 0.1
    config.augment.eval_ten_crop = True
    return config
