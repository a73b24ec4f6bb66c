"""Tasks: the localization targets encode and decode consistently; the registry."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.train import load_config
from jaxvision.train.tasks import TASKS, get_task
from jaxvision.train.tasks.localization import decode_outputs, encode_targets


@pytest.mark.parametrize("target,encoding", [("boxes", "cxcywh"), ("boxes", "xyxy"),
                                             ("keypoints", "cxcywh")])
def test_localization_targets_decode_back_to_pixels(target, encoding):
    n = 4 if target == "boxes" else 6
    config = load_config("lenet5_mnist", [
        "task.name=localization", f"localization.target={target}",
        f"localization.box_encoding={encoding}", "localization.num_keypoints=3",
        f"localization.target_mean={[0.1 * i for i in range(n)]}",
        f"localization.target_std={[0.5 + 0.1 * i for i in range(n)]}"])
    rng = np.random.default_rng(0)
    size = (40, 56)  # h != w: a swapped axis would show
    xy = rng.uniform(0, 20, (5, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (5, 2))], 1).astype(np.float32)
    kp = rng.uniform(0, 40, (5, 3, 2)).astype(np.float32)
    batch = {"boxes": jnp.asarray(boxes[:, None]), "keypoints": jnp.asarray(kp)}
    t = encode_targets(config, batch, size)
    assert t.shape == (5, n) and t.dtype == jnp.float32
    back = decode_outputs(config, t, size)
    if target == "boxes":
        np.testing.assert_allclose(np.asarray(back["boxes"]), boxes, rtol=1e-5, atol=1e-4)
        # The x coordinates are over the width, the y coordinates over the height.
        raw = load_config("lenet5_mnist", ["task.name=localization",
                                           f"localization.box_encoding={encoding}"])
        unit = np.asarray(encode_targets(raw, batch, size))
        if encoding == "xyxy":
            np.testing.assert_allclose(unit, boxes / [56, 40, 56, 40], rtol=1e-6)
    else:
        np.testing.assert_allclose(np.asarray(back["keypoints"]), kp, rtol=1e-5, atol=1e-4)


def test_get_task():
    assert set(TASKS) == {"classification", "localization", "segmentation", "detection"}
    assert get_task(load_config("lenet5_mnist")).name == "classification"
    assert get_task(load_config("faster_rcnn_voc", ["data.root=VOC"])).name == "detection"
    with pytest.raises(ValueError, match="unknown task 'keypoints'; available"):
        get_task("keypoints")
