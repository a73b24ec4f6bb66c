"""Detection and segmentation ops with ``torchvision.ops`` semantics, in pure ``jnp``/``lax``.

Every op is exact to its torchvision counterpart (same formulas, rounding and gradients;
tested against the installed torchvision and torchvision's own ``test_ops.py`` cases),
jit-compiles and takes NHWC feature maps. Every op works with ``jax_enable_x64`` on, and
float64 inputs then give torchvision's float64 results. Argument checks live in
:mod:`jaxvision.checks`.

Detection code is static-shape by design: where torchvision returns a variable number of
items, these ops return fixed-size padded arrays plus a count or a mask (``nms`` returns
``max_output_size`` indices padded with ``-1`` and the count; ``remove_small_boxes`` a keep
mask; the FPN pooler runs every level over all RoIs and selects), so that one compiled
function serves every input.
"""

from jaxvision.ops.anchors import AnchorGenerator, cell_anchors, grid_anchors
from jaxvision.ops.boxes import (
    BoxCoder,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    complete_box_iou,
    distance_box_iou,
    generalized_box_iou,
    remove_small_boxes,
)
from jaxvision.ops.init import bilinear_kernel, bilinear_upsampling_init
from jaxvision.ops.nms import batched_nms, nms
from jaxvision.ops.poolers import (
    MultiScaleRoIAlign,
    infer_scale,
    map_levels,
    multi_scale_roi_align,
)
from jaxvision.ops.roi_align import RoIAlign, roi_align
from jaxvision.ops.roi_pool import RoIPool, roi_pool
from jaxvision.ops.unpool import (
    max_pool_with_argmax,
    max_unpool,
    unpool_bed_of_nails,
    unpool_nearest,
)

__all__ = [
    "AnchorGenerator",
    "BoxCoder",
    "MultiScaleRoIAlign",
    "RoIAlign",
    "RoIPool",
    "batched_nms",
    "bilinear_kernel",
    "bilinear_upsampling_init",
    "box_area",
    "box_convert",
    "box_iou",
    "cell_anchors",
    "clip_boxes_to_image",
    "complete_box_iou",
    "distance_box_iou",
    "generalized_box_iou",
    "grid_anchors",
    "infer_scale",
    "map_levels",
    "max_pool_with_argmax",
    "max_unpool",
    "multi_scale_roi_align",
    "nms",
    "remove_small_boxes",
    "roi_align",
    "roi_pool",
    "unpool_bed_of_nails",
    "unpool_nearest",
]
