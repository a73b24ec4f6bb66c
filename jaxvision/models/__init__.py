"""The classification zoo: torchvision's ImageNet models and the classic papers' nets.

Every model is a Flax Linen module taking ``images: [N, H, W, C] float32`` (NHWC) and
returning logits ``[N, num_classes]``; ``module.apply(variables, images, train=False)``.
Build one by name with :func:`get_model`; :func:`list_models` lists the names.

Backbones for dense tasks (named feature maps, FPN, torchvision's ``resnet_fpn_backbone``)
are in :mod:`jaxvision.models.backbone` and :mod:`jaxvision.models.fpn`.
"""

from jaxvision.models import (  # noqa: F401  (importing registers the builders)
    alexnet,
    cifar_resnet,
    densenet,
    fcn,
    googlenet,
    inception,
    lenet,
    nin,
    overfeat,
    resnet,
    segnet,
    vgg,
    wide_resnet,
)
from jaxvision.models.backbone import (
    BackboneWithFPN,
    IntermediateLayerGetter,
    frozen_patterns,
    resnet_fpn_backbone,
)
from jaxvision.models.convolutionize import (
    ConvolutionizeSpec,
    FullyConvolutional,
    convolutionize,
    network_stride,
)
from jaxvision.models.fpn import FeaturePyramidNetwork, LastLevelMaxPool
from jaxvision.models.registry import get_model, get_model_builder, list_models, register_model
from jaxvision.segmentation import (  # noqa: F401  (registers fcn_/deeplabv3_resnet*)
    torchvision_models as _segmentation_models,
)

# isort: split
# After the zoo: the detectors' module builds on jaxvision.models.backbone.
from jaxvision.detection import (  # noqa: F401  (registers fast_rcnn_vgg16, _resnet18)
    fast_rcnn as _fast_rcnn_models,
)
from jaxvision.detection import (  # noqa: F401  (registers fasterrcnn_resnet50_fpn*)
    faster_rcnn as _detection_models,
)

__all__ = [
    "BackboneWithFPN",
    "ConvolutionizeSpec",
    "FeaturePyramidNetwork",
    "IntermediateLayerGetter",
    "LastLevelMaxPool",
    "frozen_patterns",
    "resnet_fpn_backbone",
    "FullyConvolutional",
    "convolutionize",
    "network_stride",
    "get_model", "get_model_builder", "list_models", "register_model"]
