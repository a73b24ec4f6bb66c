"""Fast R-CNN on a Pascal VOC-layout folder (Girshick, ICCV 2015), selective-search proposals.

    jaxvision train --config fast_rcnn_voc --workdir W data.root=VOC_DIR [num_train_steps=N]
    jaxvision eval --workdir W     # eval_map50, eval_map50_voc07, eval_ap50/<class>

Defaults, for a GPU and the full VOC: ``fast_rcnn_vgg16`` (VGG16's ``conv5_3``, RoI max
pooling to 7x7, fc6/fc7 of 4096), the paper's recipe: 2 images per batch with 64 RoIs each
(25% foreground), SGD 0.001 with momentum 0.9 and weight decay 5e-4, 30k steps then 10k at
0.0001, shorter side 600 (longer at most 1000) on a 1024x1024 canvas, horizontal flips.
Proposals: OpenCV's selective search in fast mode, 2000 per image, computed on first use
(with a progress bar) and cached under ``detection.proposal_cache`` (default
``~/.cache/jaxvision/proposals``, or ``$JAXVISION_HOME/proposals``; the data folder is only
read). The paper starts from an
ImageNet VGG16 and freezes conv1_1..conv2_2: add ``model.init_from=torchvision:vgg16``
(or a vgg16 workdir of ours) ``model.init_from_target=backbone
'optimizer.frozen=["backbone/features\\.(0|2|5|7)"]'``. ``model.num_classes`` is the
data's classes + 1 (VOC: 21).

On a CPU (the BCCD experiment of ``experiments/README.md``; ResNet-18's C4 from scratch)::

    jaxvision train --config fast_rcnn_voc --workdir W data.root=../shared/data/bccd \\
      model.name=fast_rcnn_resnet18 model.num_classes=4 'dense.canvas=[320,448]' \\
      dense.eval_min_size=320 dense.eval_max_size=448 dense.base_size=None \\
      detection.selective_search_size=320 optimizer.learning_rate=0.01 \\
      schedule.warmup_steps=100 'schedule.boundaries=[450]' num_train_steps=600 \\
      data.max_boxes=32
"""

from __future__ import annotations

import ml_collections

from jaxvision.train.configs.faster_rcnn_voc import detection_config


def get_config() -> ml_collections.ConfigDict:
    config = detection_config("fast_rcnn_vgg16")
    config.model.kwargs = {}
    config.detection.proposals = "selective_search"
    config.detection.num_proposals = 2000
    config.detection.selective_search_mode = "fast"
    config.batch_size = 2  # the paper's N = 2 images, R = 128 RoIs
    config.eval_batch_size = 2
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.001
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4
    config.schedule.name = "step"
    config.schedule.boundaries = [30000]
    config.schedule.decay_factor = 0.1
    config.schedule.warmup_steps = 0
    config.num_train_steps = 40000
    config.eval_every_steps = 5000
    return config
