"""From classification to dense prediction: OverFeat's multi-scale dense evaluation and
sliding-window detection with convolutionized classifiers.

See :func:`jaxvision.models.convolutionize` for turning a classifier's dense layers into
convolutions. Detection outputs are static-shape (padded arrays plus a count).
"""

from jaxvision.dense.overfeat import (
    OVERFEAT_SCALES,
    interleave,
    multiscale_classify,
    offset_max_pool,
    spatial_table,
)
from jaxvision.dense.sliding_window import (
    Detections,
    dense_window_scores,
    detect,
    grid_size,
    naive_window_scores,
    precision_recall,
    window_boxes,
)

__all__ = [
    "OVERFEAT_SCALES", "Detections", "dense_window_scores", "detect", "grid_size",
    "interleave", "multiscale_classify", "naive_window_scores", "offset_max_pool",
    "precision_recall", "spatial_table", "window_boxes",
]
