"""Faster R-CNN (Ren, He, Girshick, Sun, "Faster R-CNN: Towards Real-Time Object Detection with
Region Proposal Networks", NeurIPS 2015), torchvision's ``fasterrcnn_resnet50_fpn`` and
``fasterrcnn_resnet50_fpn_v2`` (Li et al., "Benchmarking Detection Transfer Learning with
Vision Transformers", 2021) in Flax, static-shaped.

A detector is a composition, as torchvision's ``GeneralizedRCNN``: a ResNet-50-FPN
``backbone`` (:class:`~jaxvision.models.backbone.BackboneWithFPN`), a region proposal network
``rpn`` (:class:`~jaxvision.detection.rpn.RegionProposalNetwork`) and the box head
``roi_heads`` (:class:`~jaxvision.detection.roi_heads.RoIHeads`). Variables carry
torchvision's ``state_dict`` names (``backbone.body.layer1.0.conv1.weight``,
``rpn.head.conv.0.0.weight``, ``roi_heads.box_head.fc6.weight``), so
``jaxvision.weights.convert_torchvision("fasterrcnn_resnet50_fpn", state_dict)`` converts
them (the old ``rpn.head.conv.weight`` keys of the COCO_V1 checkpoint included).

The model takes images already resized, normalized and padded onto a canvas (torchvision's
``GeneralizedRCNNTransform``); :func:`jaxvision.detection.detect` does that for a list of
images of any sizes and maps the boxes back.

Example::

    model = jaxvision.models.get_model("fasterrcnn_resnet50_fpn", min_size=800)
    out = model.apply(variables, canvas_images, image_sizes)   # [N, Hc, Wc, 3], [N, 2]
    out["boxes"], out["scores"], out["labels"], out["valid"]   # [N, 100, 4], [N, 100], ...
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.detection.losses import fastrcnn_loss, rpn_loss
from jaxvision.detection.roi_heads import (
    FastRCNNConvFCHead,
    FastRCNNPredictor,
    RoIHeads,
    TwoMLPHead,
)
from jaxvision.detection.rpn import RegionProposalNetwork, RPNHead, filter_proposals
from jaxvision.detection.sampling import (
    BalancedPositiveNegativeSampler,
    Matcher,
    rpn_training_targets,
    sample_rois,
)
from jaxvision.models.backbone import resnet_fpn_backbone
from jaxvision.models.registry import register_model
from jaxvision.weights.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["FasterRCNN", "config_from_state_dict", "fasterrcnn_resnet18_fpn",
           "fasterrcnn_resnet34_fpn", "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"]

Array = jax.Array
Dtype = Any


class FasterRCNN(nn.Module):
    """torchvision's ``FasterRCNN`` (``GeneralizedRCNN``) on padded canvases.

    Attributes:
      backbone: ``{name: [N, h, w, C]}`` feature maps of ``[N, Hc, Wc, 3]`` normalized images
        (a :class:`~jaxvision.models.backbone.BackboneWithFPN`).
      rpn: :class:`~jaxvision.detection.rpn.RegionProposalNetwork`.
      roi_heads: :class:`~jaxvision.detection.roi_heads.RoIHeads`.
      num_classes: classes including the background (91 for COCO).
      min_size, max_size, image_mean, image_std, size_divisible: torchvision's
        ``GeneralizedRCNNTransform``, applied by :func:`jaxvision.detection.detect`.

    ``__call__(images, image_sizes=None, train=False)``:

    * ``images``: ``[N, Hc, Wc, 3]`` float32 normalized, each resized image at the top-left
      of the canvas, zeros elsewhere; ``image_sizes``: ``[N, 2]`` int32 (h, w) of each
      resized image (default: the whole canvas).
    * ``train=False`` returns the detections in canvas pixels: ``{"boxes": [N, D, 4],
      "scores": [N, D], "labels": [N, D] int32, "valid": [N, D] bool, "count": [N] int32}``
      with ``D = roi_heads.detections_per_img``.
    * ``train=True`` is the hook for the training losses: no loss here; it returns the raw
      outputs with the training counts, ``{"features", "rpn"`` (an
      :class:`~jaxvision.detection.rpn.RPNOutput`), ``"class_logits" [N, P, C],
      "box_regression" [N, P, 4C]}`` (the box head on the RPN's own proposals; the training
      code samples proposals and calls :meth:`box_outputs` on them). BatchNorm layers (v2)
      use batch statistics then: ``mutable=["batch_stats"]``.
    """

    backbone: nn.Module
    rpn: RegionProposalNetwork
    roi_heads: RoIHeads
    num_classes: int = 91
    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    size_divisible: int = 32

    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 3)

    @property
    def torch_flatten_shapes(self) -> dict[str, tuple[int, int, int]]:
        """The box head's first dense layer reads torch's (C, 7, 7) flatten."""
        head = self.roi_heads.box_head
        name = "fc6" if isinstance(head, TwoMLPHead) else str(head.flatten_index)
        size = self.roi_heads.output_size
        return {f"roi_heads.box_head.{name}": (_channels(self), size, size)}

    def features(self, images: Array, train: bool = False) -> dict[str, Array]:
        """The FPN maps ``{"0": [N, Hc/4, Wc/4, 256], ..., "pool": [N, Hc/64, Wc/64, 256]}``."""
        return self.backbone(images, train=train)

    def rpn_predict(self, images: Array) -> tuple[dict[str, Array], tuple]:
        """Backbone and RPN head: ``(features, RegionProposalNetwork.predict(...))``."""
        feats = self.features(images)
        return feats, self.rpn.predict(feats, tuple(images.shape[1:3]))

    def box_outputs(self, features: Mapping[str, Array], proposals: Array,
                    train: bool = False) -> tuple[Array, Array]:
        """Class logits ``[N, P, C]`` and box deltas ``[N, P, 4C]`` of ``proposals [N, P, 4]``
        (canvas pixels; the canvas is read off the finest feature map, stride 4)."""
        first = next(iter(features.values()))
        canvas = (first.shape[1] * 4, first.shape[2] * 4)
        return self.roi_heads(features, proposals, canvas, train=train)

    def __call__(self, images: Array, image_sizes: Array | None = None,
                 train: bool = False) -> dict[str, Any]:
        out = self.stages(images, image_sizes, train=train)
        return out if train or "detections" not in out else out["detections"]

    def stages(self, images: Array, image_sizes: Array | None = None,
               train: bool = False) -> dict[str, Any]:
        """Every stage's output: ``{"features", "rpn", "class_logits", "box_regression"}``
        and, unless ``train``, ``"detections"`` (what ``__call__`` returns)."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"FasterRCNN expects images [N, H, W, 3] (normalized, NHWC), got "
                             f"shape {tuple(images.shape)}")
        n, hc, wc = images.shape[:3]
        if hc % self.size_divisible or wc % self.size_divisible:
            raise ValueError(f"FasterRCNN: the canvas {(hc, wc)} must be a multiple of "
                             f"size_divisible={self.size_divisible} (torchvision pads batches "
                             "so); jaxvision.detection.detect pads for you")
        if image_sizes is None:
            image_sizes = jnp.broadcast_to(jnp.asarray([hc, wc], jnp.int32), (n, 2))
        feats = self.features(images, train=train)
        if self.is_initializing():
            # Every variable exists after the heads have run once; proposal filtering and
            # post-processing (nms) have none and would run op by op here: minutes on a CPU.
            self.rpn.predict(feats, (hc, wc))
            logits, deltas = self.roi_heads(feats, jnp.zeros((n, 1, 4), images.dtype),
                                            (hc, wc), train=train)
            return {"features": feats, "class_logits": logits, "box_regression": deltas}
        rpn_out = self.rpn(feats, (hc, wc), image_sizes, train=train)
        logits, deltas = self.roi_heads(feats, rpn_out.proposals, (hc, wc), train=train)
        out = {"features": feats, "rpn": rpn_out, "class_logits": logits,
               "box_regression": deltas}
        if not train:
            out["detections"] = self.roi_heads.postprocess(
                logits, deltas, rpn_out.proposals, rpn_out.valid, image_sizes)
        return out

    def losses(self, images: Array, image_sizes: Array, gt_boxes: Array, gt_labels: Array,
               gt_valid: Array, key: Array, *, min_background_iou: float | None = None
               ) -> dict[str, Array]:
        """torchvision's training-mode ``GeneralizedRCNN.forward``: the four losses.

        The RPN runs with its training counts; its anchors are labelled and a balanced
        ``rpn.batch_size_per_image`` sampled (:func:`~jaxvision.detection.sampling
        .rpn_training_targets`); the proposals (no gradient) get the ground truth appended
        and ``roi_heads.batch_size_per_image`` RoIs are sampled (:func:`~jaxvision.detection
        .sampling.select_training_samples`), pooled and classified. All shapes are static.

        Args:
          images: ``[N, Hc, Wc, 3]`` float normalized canvases; image_sizes: ``[N, 2]`` int.
          gt_boxes: ``[N, G, 4]`` float canvas pixels; gt_labels: ``[N, G]`` int 1..C-1;
          gt_valid: ``[N, G]`` bool (degenerate boxes must be False).
          key: a ``jax.random`` key for both samplers.
          min_background_iou: see :func:`~jaxvision.detection.sampling
            .assign_targets_to_proposals` (None: torchvision).

        Returns:
          ``{"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}``,
          float32 scalars (torchvision's names; their sum is the training loss), and
          ``"num_fg_rois"`` (foreground RoIs sampled per image, a diagnostic).
        """
        n, hc, wc = images.shape[:3]
        canvas = (hc, wc)
        feats = self.features(images, train=True)
        rpn = self.rpn
        objectness, deltas, anchors, boxes, per_level = rpn.predict(feats, canvas)
        props, _, pvalid = filter_proposals(boxes, objectness, image_sizes, per_level,
                                            **rpn.filter_settings(True))
        k_rpn, k_roi = jax.random.split(key)
        rpn_targets = jax.vmap(functools.partial(
            rpn_training_targets,
            matcher=Matcher(rpn.fg_iou_thresh, rpn.bg_iou_thresh, True),
            sampler=BalancedPositiveNegativeSampler(rpn.batch_size_per_image,
                                                    rpn.positive_fraction),
            box_coder=rpn.box_coder), in_axes=(None, 0, 0, 0))(
                anchors, gt_boxes, gt_valid, jax.random.split(k_rpn, n))
        loss_obj, loss_rpn_box = rpn_loss(objectness, deltas, rpn_targets.labels,
                                          rpn_targets.regression_targets,
                                          rpn_targets.pos_mask, rpn_targets.neg_mask)
        heads = self.roi_heads
        samples = sample_rois(props, pvalid, gt_boxes, gt_labels, gt_valid, k_roi,
                              fg_iou_thresh=heads.fg_iou_thresh,
                              bg_iou_thresh=heads.bg_iou_thresh,
                              batch_size_per_image=heads.batch_size_per_image,
                              positive_fraction=heads.positive_fraction,
                              bbox_reg_weights=heads.bbox_reg_weights,
                              min_background_iou=min_background_iou)
        logits, regression = heads(feats, samples.proposals, canvas, train=True)
        loss_cls, loss_box = fastrcnn_loss(logits, regression, samples.labels,
                                           samples.regression_targets, samples.valid)
        fg = jnp.sum((samples.labels > 0) & samples.valid) / n
        return {"loss_objectness": loss_obj, "loss_rpn_box_reg": loss_rpn_box,
                "loss_classifier": loss_cls, "loss_box_reg": loss_box,
                "num_fg_rois": fg.astype(jnp.float32)}

    def frozen_patterns(self) -> list[str]:
        """Regexes of the backbone parameters ``trainable_backbone_layers`` freezes, for the
        training engine's ``optimizer.frozen``."""
        return self.backbone.frozen_patterns(prefix="backbone")


def _channels(model: FasterRCNN) -> int:
    return int(getattr(model.backbone, "out_channels", 256))


def _faster_rcnn(*, v2: bool, backbone_name: str = "resnet50", num_classes: int | None,
                 trainable_backbone_layers: int | None,
                 min_size: int, max_size: int, image_mean: Any, image_std: Any,
                 rpn_pre_nms_top_n_train: int, rpn_pre_nms_top_n_test: int,
                 rpn_post_nms_top_n_train: int, rpn_post_nms_top_n_test: int,
                 rpn_nms_thresh: float, rpn_fg_iou_thresh: float, rpn_bg_iou_thresh: float,
                 rpn_batch_size_per_image: int, rpn_positive_fraction: float,
                 rpn_score_thresh: float, box_score_thresh: float, box_nms_thresh: float,
                 box_detections_per_img: int, box_fg_iou_thresh: float,
                 box_bg_iou_thresh: float, box_batch_size_per_image: int,
                 box_positive_fraction: float, bbox_reg_weights: Any, frozen_bn: bool,
                 frozen_bn_eps: float, dtype: Dtype, param_dtype: Dtype) -> FasterRCNN:
    num_classes = 91 if num_classes is None else int(num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too and must be >= 2, got "
                         f"{num_classes}")
    layers = 3 if trainable_backbone_layers is None else int(trainable_backbone_layers)
    kw = {"dtype": dtype, "param_dtype": param_dtype}
    frozen = frozen_bn and not v2
    extra = {"frozen_bn_eps": float(frozen_bn_eps)} if frozen else {}
    backbone = resnet_fpn_backbone(backbone_name, trainable_layers=layers, frozen_bn=frozen,
                                   **extra, **kw)
    if v2:
        backbone = backbone.clone(fpn_batch_norm=True)
    rpn = RegionProposalNetwork(
        RPNHead(3, conv_depth=2 if v2 else 1, **kw),
        pre_nms_top_n_train=rpn_pre_nms_top_n_train, pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        post_nms_top_n_train=rpn_post_nms_top_n_train,
        post_nms_top_n_test=rpn_post_nms_top_n_test, nms_thresh=rpn_nms_thresh,
        score_thresh=rpn_score_thresh, fg_iou_thresh=rpn_fg_iou_thresh,
        bg_iou_thresh=rpn_bg_iou_thresh, batch_size_per_image=rpn_batch_size_per_image,
        positive_fraction=rpn_positive_fraction)
    box_head = (FastRCNNConvFCHead((256, 256, 256, 256), (1024,), batch_norm=True, **kw)
                if v2 else TwoMLPHead(1024, **kw))
    roi_heads = RoIHeads(
        box_head, FastRCNNPredictor(num_classes, **kw), score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh, detections_per_img=box_detections_per_img,
        bbox_reg_weights=(tuple(float(w) for w in bbox_reg_weights)
                          if bbox_reg_weights is not None else (10.0, 10.0, 5.0, 5.0)),
        fg_iou_thresh=box_fg_iou_thresh, bg_iou_thresh=box_bg_iou_thresh,
        batch_size_per_image=box_batch_size_per_image, positive_fraction=box_positive_fraction)
    return FasterRCNN(backbone, rpn, roi_heads, num_classes=num_classes, min_size=int(min_size),
                      max_size=int(max_size),
                      image_mean=tuple(float(m) for m in (image_mean or IMAGENET_MEAN)),
                      image_std=tuple(float(s) for s in (image_std or IMAGENET_STD)))


_DEFAULTS: dict[str, Any] = {
    "num_classes": None, "trainable_backbone_layers": None, "min_size": 800, "max_size": 1333,
    "image_mean": None, "image_std": None,
    "rpn_pre_nms_top_n_train": 2000, "rpn_pre_nms_top_n_test": 1000,
    "rpn_post_nms_top_n_train": 2000, "rpn_post_nms_top_n_test": 1000,
    "rpn_nms_thresh": 0.7, "rpn_fg_iou_thresh": 0.7, "rpn_bg_iou_thresh": 0.3,
    "rpn_batch_size_per_image": 256, "rpn_positive_fraction": 0.5, "rpn_score_thresh": 0.0,
    "box_score_thresh": 0.05, "box_nms_thresh": 0.5, "box_detections_per_img": 100,
    "box_fg_iou_thresh": 0.5, "box_bg_iou_thresh": 0.5, "box_batch_size_per_image": 512,
    "box_positive_fraction": 0.25, "bbox_reg_weights": None, "frozen_bn": True,
    "frozen_bn_eps": 1e-5,
    "dtype": jnp.float32, "param_dtype": jnp.float32,
}


def _builder_config(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(_DEFAULTS))
    if unknown:
        raise TypeError(f"{name}() got unexpected keyword arguments {unknown}; known: "
                        f"{', '.join(_DEFAULTS)}")
    return {**_DEFAULTS, **kwargs}


_DOC = """torchvision's ``{name}``: {what}.

    Keyword arguments are torchvision's builder's and ``FasterRCNN``'s, with its defaults:
    ``num_classes=91`` (background included), ``trainable_backbone_layers`` (0..5, default 3:
    ``layer2``..``layer4``; see :meth:`FasterRCNN.frozen_patterns`), ``min_size=800``,
    ``max_size=1333``, ``image_mean``/``image_std`` (ImageNet's), ``rpn_pre_nms_top_n_test=1000``,
    ``rpn_post_nms_top_n_test=1000``, ``rpn_nms_thresh=0.7``, ``rpn_score_thresh=0.0``,
    ``box_score_thresh=0.05``, ``box_nms_thresh=0.5``, ``box_detections_per_img=100``,
    ``bbox_reg_weights`` ((10, 10, 5, 5)), and the training counts kept for the losses
    (``rpn_pre_nms_top_n_train=2000``, ``rpn_post_nms_top_n_train=2000``,
    ``rpn_fg_iou_thresh=0.7``, ``rpn_bg_iou_thresh=0.3``, ``rpn_batch_size_per_image=256``,
    ``rpn_positive_fraction=0.5``, ``box_fg_iou_thresh=0.5``, ``box_bg_iou_thresh=0.5``,
    ``box_batch_size_per_image=512``, ``box_positive_fraction=0.25``). {bn}
    ``dtype``/``param_dtype``: computation and parameter dtypes.

    Returns:
      :class:`FasterRCNN`; {params:,} parameters with ``num_classes=91`` (torchvision's count).
    """


@register_model
def fasterrcnn_resnet50_fpn(**kwargs: Any) -> FasterRCNN:
    return _faster_rcnn(v2=False, **_builder_config("fasterrcnn_resnet50_fpn", kwargs))


@register_model
def fasterrcnn_resnet50_fpn_v2(**kwargs: Any) -> FasterRCNN:
    return _faster_rcnn(v2=True, **_builder_config("fasterrcnn_resnet50_fpn_v2", kwargs))


@register_model
def fasterrcnn_resnet18_fpn(**kwargs: Any) -> FasterRCNN:
    """``FasterRCNN(resnet_fpn_backbone("resnet18"), num_classes)`` (torchvision has no builder
    of this name; the model is its composition), with :func:`fasterrcnn_resnet50_fpn`'s
    keywords and defaults. The small detector for training on a CPU."""
    return _faster_rcnn(v2=False, backbone_name="resnet18",
                        **_builder_config("fasterrcnn_resnet18_fpn", kwargs))


@register_model
def fasterrcnn_resnet34_fpn(**kwargs: Any) -> FasterRCNN:
    """``FasterRCNN(resnet_fpn_backbone("resnet34"), num_classes)``, as
    :func:`fasterrcnn_resnet18_fpn`."""
    return _faster_rcnn(v2=False, backbone_name="resnet34",
                        **_builder_config("fasterrcnn_resnet34_fpn", kwargs))


fasterrcnn_resnet50_fpn.__doc__ = _DOC.format(
    name="fasterrcnn_resnet50_fpn",
    what="Faster R-CNN with a ResNet-50-FPN backbone (RPN with one 3x3 conv, TwoMLPHead)",
    bn="``frozen_bn=True``: the backbone's BatchNorms are torchvision's ``FrozenBatchNorm2d`` "
       "(its choice with pretrained weights; identical to BatchNorm in evaluation); "
       "``frozen_bn_eps`` their epsilon (0.0 for the COCO_V1 weights, as torchvision's "
       "``overwrite_eps``: ``DETECTION_WEIGHTS[name].config``).",
    params=41_755_286)
fasterrcnn_resnet50_fpn_v2.__doc__ = _DOC.format(
    name="fasterrcnn_resnet50_fpn_v2",
    what="the improved Faster R-CNN (BatchNorm ResNet-50 and FPN, RPN with two 3x3 convs, "
         "FastRCNNConvFCHead of four conv + BatchNorm layers and one fc)",
    bn="The backbone and FPN use trainable BatchNorm (``frozen_bn`` is ignored), as "
       "torchvision's v2.", params=43_712_278)


def config_from_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``num_classes`` of a torchvision Faster R-CNN ``state_dict`` (``cls_score`` rows)."""
    w = state_dict.get("roi_heads.box_predictor.cls_score.weight")
    return {} if w is None else {"num_classes": int(w.shape[0])}


def upgrade_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """torchvision's ``RPNHead._load_from_state_dict``: old checkpoints (the COCO_V1 file)
    name the RPN conv ``rpn.head.conv.{weight,bias}``; now ``rpn.head.conv.0.0.*``."""
    out = dict(state_dict)
    for leaf in ("weight", "bias"):
        old = f"rpn.head.conv.{leaf}"
        if old in out:
            out[f"rpn.head.conv.0.0.{leaf}"] = out.pop(old)
    return out


for _fn in (fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2, fasterrcnn_resnet18_fpn,
            fasterrcnn_resnet34_fpn):
    _fn.config_from_state_dict = config_from_state_dict  # type: ignore[attr-defined]
    _fn.upgrade_state_dict = upgrade_state_dict  # type: ignore[attr-defined]
