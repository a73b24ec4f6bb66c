"""The ImageNet recipe shared by the ILSVRC-2012 experiments (Flax ``examples/imagenet``):
SGD with Nesterov momentum, learning rate ``0.1 * batch / 256`` with 5 warmup epochs and a
cosine decay, weight decay 1e-4 on kernels, random resized crop + flip, bfloat16 compute
with float32 parameters, images resized to 256x256 on load, data from TFDS
``imagenet2012`` (which must be prepared in ``data.root`` beforehand: it cannot be
downloaded automatically).
"""

import ml_collections

from jaxvision.train.config import default_config

IMAGENET_TRAIN_EXAMPLES = 1_281_167
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def imagenet_config(model: str, *, batch_size: int = 1024, num_epochs: int = 100,
                    base_learning_rate: float = 0.1, weight_decay: float = 1e-4,
                    warmup_epochs: int = 5) -> ml_collections.ConfigDict:
    """The Flax-example recipe for ``model`` (a registered builder name)."""
    config = default_config()
    steps_per_epoch = IMAGENET_TRAIN_EXAMPLES // batch_size
    config.model.name = model
    config.model.num_classes = 1000
    config.model.dtype = "bfloat16"
    config.data.source = "tfds"
    config.data.tfds_name = "imagenet2012"
    config.data.root = None  # TFDS data_dir; None = TFDS's default (~/tensorflow_datasets)
    config.data.train_split = "train"
    config.data.eval_split = "validation"
    # ImageNet images vary in size; batches must be static-shaped, so every image is
    # resized to 256x256 on load and the 224x224 input is cropped from it (random resized
    # crop for training, center crop for evaluation), as AlexNet's 256x256 preprocessing.
    config.data.load_size = 256
    config.data.image_size = 224
    config.data.mean = IMAGENET_MEAN
    config.data.std = IMAGENET_STD
    config.data.worker_count = 16
    config.augment.random_resized_crop = True
    config.augment.flip = True
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = base_learning_rate * batch_size / 256
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = True
    config.optimizer.weight_decay = weight_decay
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = warmup_epochs * steps_per_epoch
    config.batch_size = batch_size
    config.num_epochs = float(num_epochs)
    config.eval_every_steps = 5 * steps_per_epoch
    config.eval_batch_size = 1000
    config.log_every_steps = 100
    config.checkpoint.every_steps = steps_per_epoch
    return config
