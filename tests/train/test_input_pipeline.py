"""jaxvision/train/input_pipeline.py: config.data -> the dense sources (VOC, COCO, CamVid)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxvision import data
from jaxvision.train import config as config_lib
from jaxvision.train import input_pipeline


def _config(**data_values):
    cfg = config_lib.default_config()
    for key, value in data_values.items():
        setattr(cfg.data, key, value)
    return cfg


def test_voc_source_from_config(shared_data):
    root = str(shared_data / "bccd")
    cfg = _config(source="voc", root=root, train_split="train", max_boxes=64)
    test = input_pipeline.make_source(cfg, "test")
    assert isinstance(test, data.VOCSource) and len(test) == 72
    # The labels come from the training split's names, whatever split is read.
    assert test.classes == ["Platelets", "RBC", "WBC"] and test[0]["boxes"].shape == (64, 4)
    named = input_pipeline.make_source(_config(source="voc", root=root,
                                               classes=["WBC", "RBC", "Platelets"]), "test")
    assert named.classes == ["WBC", "RBC", "Platelets"]
    assert input_pipeline.class_names(named) == ["WBC", "RBC", "Platelets"]


def test_coco_and_segmentation_sources_from_config(shared_data):
    coco = input_pipeline.make_source(
        _config(source="coco", root=str(shared_data / "coco128"), on_error="skip"), "train2017")
    assert isinstance(coco, data.COCOSource) and len(coco) == 128 and coco.on_error == "skip"
    seg = input_pipeline.make_source(
        _config(source="segmentation_folder", root=str(shared_data / "camvid"),
                ignore_index=11), "test")
    assert isinstance(seg, data.SegmentationFolderSource) and len(seg) == 233
    assert seg.num_classes == 11 and seg.ignore_index == 11
    with pytest.raises(ValueError, match="data.source='voc' needs data.root"):
        input_pipeline.make_source(_config(source="voc"), "train")


def test_tfds_detection_names_give_dense_sources_and_loaders_take_a_transform():
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("array_record")
    with tfds.testing.mock_data(num_examples=3):
        src = input_pipeline.make_source(_config(source="tfds", tfds_name="voc/2007",
                                                 max_boxes=7), "train")
    assert isinstance(src, data.TFDSDetectionSource) and src.max_boxes == 7
    assert src.num_classes == 20

    def add_one(example, rng):
        return {**example, "image": example["image"] + 1}

    cfg = _config()
    images = data.ArraySource(np.zeros((4, 2, 2, 1), np.uint8))
    for make in (input_pipeline.train_loader, input_pipeline.eval_loader):
        batch = next(iter(make(cfg, images, 2, transform=add_one)))
        assert (batch["image"] == 1).all() and batch[data.VALID].all()
