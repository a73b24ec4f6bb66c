"""Object detection (the R-CNN family, issue 9).

- :func:`detect`: a detector on a list of images of any sizes (torchvision's transform,
  one jitted forward on a padded canvas, boxes back in each image's pixels).
- :mod:`~jaxvision.detection.faster_rcnn`: torchvision's ``fasterrcnn_resnet50_fpn`` and
  ``fasterrcnn_resnet50_fpn_v2`` (:class:`FasterRCNN`), built from
  :mod:`~jaxvision.detection.rpn` and :mod:`~jaxvision.detection.roi_heads`.

- :class:`~jaxvision.detection.fast_rcnn.FastRCNN`: Fast R-CNN on external (selective
  search) proposals, RoI max pooling, VGG16 or ResNet-18 C4 (``fast_rcnn_vgg16``,
  ``fast_rcnn_resnet18``).

- :class:`VOCEvaluator`: Pascal VOC AP as the official devkit matches it, the 11-point
  VOC2007 and the all-point VOC2010+ metric, ``eval_map50``, ``eval_map50_voc07`` and
  ``eval_ap50/<class>``, and a markdown table per class.
- :class:`COCOEvaluator`: COCO AP through pycocotools' ``COCOeval`` (``eval_coco_map``,
  ``eval_coco_map50``, ``eval_coco_map75``, small / medium / large), detections exported as
  COCO results JSON.
"""

# The model zoo first: it registers the detectors, which build on it (importing a detection
# module before the zoo has loaded would find the zoo half-initialised).
import jaxvision.models  # noqa: F401  # isort: skip
from jaxvision.detection.evaluation import (
    COCOEvaluator,
    COCOResult,
    VOCEvaluator,
    VOCResult,
    coco_results,
    voc_ap,
    voc_iou,
)
from jaxvision.detection.fast_rcnn import FastRCNN
from jaxvision.detection.faster_rcnn import (
    FasterRCNN,
    fasterrcnn_resnet50_fpn,
    fasterrcnn_resnet50_fpn_v2,
)
from jaxvision.detection.inference import detect

__all__ = ["COCOEvaluator", "COCOResult", "FastRCNN", "FasterRCNN", "VOCEvaluator", "VOCResult",
           "coco_results", "detect", "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2",
           "voc_ap", "voc_iou"]
