"""segnet_basic on CamVid (11 classes, 360x480): the shared recipe of ``_camvid.py``.

    jaxvision train --config segnet_basic_camvid data.root=DIR --workdir runs/segnet_basic_camvid
"""

from __future__ import annotations

import ml_collections

from jaxvision.train.configs._camvid import camvid_config


def get_config() -> ml_collections.ConfigDict:
    return camvid_config("segnet_basic", learning_rate=0.01, num_train_steps=20000)
