"""Semantic segmentation (issue 10). For now: the evaluation metrics.

:func:`confusion_matrix` counts (truth, prediction) pixel pairs inside a jitted eval step;
:class:`ConfusionMatrix` sums the counts on the host; :func:`segmentation_metrics` gives
``eval_pixel_acc``, ``eval_class_acc``, ``eval_miou`` and per-class ``eval_iou/<class>``,
``eval_acc/<class>`` as torchvision's ``references/segmentation`` computes them.
"""

from jaxvision.segmentation.metrics import ConfusionMatrix, confusion_matrix, segmentation_metrics
from jaxvision.segmentation.torchvision_models import (
    ASPP,
    DeepLabHead,
    FCNHead,
    SimpleSegmentationModel,
)

__all__ = ["ConfusionMatrix", "confusion_matrix", "segmentation_metrics",
           "ASPP", "DeepLabHead", "FCNHead", "SimpleSegmentationModel"]
