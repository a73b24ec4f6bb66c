"""fcn_resnet50 on CamVid (11 classes, 360x480): the shared recipe of ``_camvid.py``.

    jaxvision train --config fcn_resnet50_camvid data.root=DIR --workdir runs/fcn_resnet50_camvid
"""

from __future__ import annotations

import ml_collections

from jaxvision.train.configs._camvid import camvid_config


def get_config() -> ml_collections.ConfigDict:
    config = camvid_config("fcn_resnet50", learning_rate=0.01, num_train_steps=20000)
    config.model.kwargs = {"aux_loss": True}  # torchvision's recipe: aux loss weight 0.5
    return config
