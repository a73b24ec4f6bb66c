"""Object detection (the R-CNN family, issue 9). For now: the evaluation metrics.

- :class:`VOCEvaluator`: Pascal VOC AP as the official devkit matches it, the 11-point
  VOC2007 and the all-point VOC2010+ metric, ``eval_map50``, ``eval_map50_voc07`` and
  ``eval_ap50/<class>``, and a markdown table per class.
- :class:`COCOEvaluator`: COCO AP through pycocotools' ``COCOeval`` (``eval_coco_map``,
  ``eval_coco_map50``, ``eval_coco_map75``, small / medium / large), detections exported as
  COCO results JSON.
"""

from jaxvision.detection.evaluation import (
    COCOEvaluator,
    COCOResult,
    VOCEvaluator,
    VOCResult,
    coco_results,
    voc_ap,
    voc_iou,
)

__all__ = ["COCOEvaluator", "COCOResult", "VOCEvaluator", "VOCResult", "coco_results", "voc_ap",
           "voc_iou"]
