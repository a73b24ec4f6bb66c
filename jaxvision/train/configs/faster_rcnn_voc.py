"""Faster R-CNN on a Pascal VOC-layout folder (Ren et al., NeurIPS 2015; torchvision's model).

    jaxvision train --config faster_rcnn_voc --workdir W data.root=VOC_DIR [num_train_steps=N]
    jaxvision eval --workdir W     # eval_map50, eval_map50_voc07, eval_ap50/<class>

Defaults, for a GPU and the full VOC: ``fasterrcnn_resnet50_fpn`` trained from scratch
(``model.init_from='torchvision:fasterrcnn_resnet50_fpn:FILE.pth'`` or a classifier's workdir
with ``model.init_from_target='backbone/body'`` to start from weights), the paper's scale
(shorter side 600, longer at most 1000) on a 1024x1024 canvas, horizontal flips, SGD 0.02
with momentum 0.9 and weight decay 1e-4 (torchvision's reference for batch 16), 500 warm-up
steps, cosine decay. ``model.num_classes`` is the data's classes + 1 (VOC: 21).

On a CPU (the BCCD experiment of ``experiments/README.md``)::

    jaxvision train --config faster_rcnn_voc --workdir W data.root=../shared/data/bccd \\
      model.name=fasterrcnn_resnet18_fpn model.num_classes=4 'dense.canvas=[320,448]' \\
      dense.eval_min_size=320 dense.eval_max_size=448 dense.base_size=None batch_size=2 \\
      optimizer.learning_rate=0.01 num_train_steps=600 data.max_boxes=32
"""

from __future__ import annotations

import ml_collections

from jaxvision.train.config import default_config
from jaxvision.weights.transforms import IMAGENET_MEAN, IMAGENET_STD


def detection_config(model: str) -> ml_collections.ConfigDict:
    """The shared VOC detection recipe with ``model`` (a registered detector)."""
    config = default_config()
    config.task.name = "detection"
    config.model.name = model
    config.model.num_classes = 21
    # From scratch: every stage trains, with batch statistics (torchvision's choice when no
    # weights are given: trainable_backbone_layers=5, nn.BatchNorm2d).
    config.model.kwargs = {"trainable_backbone_layers": 5, "frozen_bn": False}
    config.data.source = "voc"
    config.data.root = None  # required: the VOC folder, given on the command line
    config.data.train_split = "trainval"
    config.data.eval_split = "test"
    config.data.mean = list(IMAGENET_MEAN)
    config.data.std = list(IMAGENET_STD)
    config.data.max_boxes = 64
    config.data.worker_count = 2
    config.dense.canvas = [1024, 1024]
    config.dense.base_size = 600
    config.dense.scale_range = [1.0, 1.0]
    config.dense.flip = True
    config.dense.crop = True
    config.dense.eval_min_size = 600
    config.dense.eval_max_size = 1000
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.02
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 1e-4
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = 500
    config.num_train_steps = 30000
    config.batch_size = 16
    config.eval_batch_size = 8
    config.eval_every_steps = 2000
    config.log_every_steps = 20
    config.checkpoint.best_metric = "eval_map50"
    return config


def get_config() -> ml_collections.ConfigDict:
    return detection_config("fasterrcnn_resnet50_fpn")
