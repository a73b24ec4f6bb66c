"""Classification + localization: regression heads on zoo classifiers, target encodings,
losses, the ILSVRC localization metric and a DeepPose-style keypoint variant.

Training runs on the shared engine (``task.name='localization'``,
:mod:`jaxvision.train.tasks.localization`); the staged recipe (classifier, frozen classifier
+ head, joint fine-tuning) is configuration there: ``localization.box_weight`` /
``class_weight``, ``optimizer.frozen`` and ``model.init_from``.
"""

from jaxvision.localization.heads import (
    Localizer,
    classifier_from_localizer,
    localizer_from_classifier,
    make_localizer,
)
from jaxvision.localization.keypoints import digit_keypoints
from jaxvision.localization.losses import class_boxes, l2_loss, smooth_l1_loss
from jaxvision.localization.metrics import localization_correct, paired_iou, pck, pck_correct
from jaxvision.localization.targets import TargetScaler, boxes_to_cxcywh, cxcywh_to_boxes

__all__ = [
    "Localizer", "TargetScaler", "boxes_to_cxcywh", "class_boxes", "classifier_from_localizer",
    "cxcywh_to_boxes", "digit_keypoints", "l2_loss", "localization_correct",
    "localizer_from_classifier", "make_localizer", "paired_iou", "pck", "pck_correct",
    "smooth_l1_loss",
]
