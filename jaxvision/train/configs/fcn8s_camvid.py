"""fcn8s on CamVid (11 classes, 360x480): the shared recipe of ``_camvid.py``.

    jaxvision train --config fcn8s_camvid data.root=DIR --workdir runs/fcn8s_camvid
"""

from __future__ import annotations

import ml_collections

from jaxvision.train.configs._camvid import camvid_config


def get_config() -> ml_collections.ConfigDict:
    return camvid_config("fcn8s", learning_rate=0.0001, num_train_steps=20000)
