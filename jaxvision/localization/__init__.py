"""Classification + localization: regression heads on zoo classifiers, the staged training
recipe, the ILSVRC localization metric and a DeepPose-style keypoint variant."""

from jaxvision.localization.heads import (
    Localizer,
    classifier_from_localizer,
    localizer_from_classifier,
    make_localizer,
)
from jaxvision.localization.keypoints import digit_keypoints
from jaxvision.localization.losses import class_boxes, l2_loss, smooth_l1_loss
from jaxvision.localization.metrics import localization_correct, paired_iou, pck
from jaxvision.localization.targets import TargetScaler, boxes_to_cxcywh, cxcywh_to_boxes
from jaxvision.localization.training import fit, make_optimizer, partition, predict

__all__ = [
    "Localizer", "TargetScaler", "boxes_to_cxcywh", "class_boxes", "classifier_from_localizer",
    "cxcywh_to_boxes", "digit_keypoints", "fit",
    "l2_loss", "localization_correct", "localizer_from_classifier", "make_localizer",
    "make_optimizer", "paired_iou", "partition", "pck", "predict", "smooth_l1_loss",
]
