"""Fast R-CNN (Girshick, "Fast R-CNN", ICCV 2015) in Flax, static-shaped.

One forward pass of the conv layers per image gives a stride-16 map (VGG16's ``conv5_3``,
the last max pool removed; or a ResNet's ``layer3``, "C4"); each region proposal (selective
search, given with the batch) is max-pooled to 7x7 on it (:func:`jaxvision.ops.roi_pool`,
``spatial_scale=1/16``, torchvision's ``RoIPool``); the classifier's two dense layers (VGG's
``fc6``/``fc7``) and two sibling outputs give softmax class scores (``cls_score``, background
included) and class-specific box deltas (``bbox_pred``).

Training (:meth:`FastRCNN.losses`) follows the paper's section 2.3: hierarchical sampling,
``R / N = 64`` RoIs from each image of the batch (N = 2 in the paper's config), 25% of them
foreground (IoU >= 0.5 with a ground-truth box, the gt boxes themselves being appended to
the proposals), the rest background with a best IoU in ``[0.1, 0.5)``
(:func:`~jaxvision.detection.sampling.select_training_samples` with ``min_background_iou``),
and the multi-task loss ``L_cls + lambda [u >= 1] L_loc`` with smooth L1 at beta 1 and
lambda 1 (:func:`~jaxvision.detection.losses.fast_rcnn_multitask_loss`). Box targets are
torchvision's ``BoxCoder((10, 10, 5, 5))`` codes, which are the paper's normalisation to
zero mean and stds (0.1, 0.1, 0.2, 0.2) (py-faster-rcnn's ``BBOX_NORMALIZE_STDS``), so the
paper's targets exactly. Inference: softmax, per-class decoding, score > 0.05, per-class NMS
at 0.3 (the paper's), the best 100, as padded arrays
(:func:`~jaxvision.detection.roi_heads.postprocess_detections`).

Variables: the backbone is a zoo classifier class with two extra methods
(:class:`VGGRoIBody`, :class:`ResNetC4RoIBody`), so its variables keep the classifier's paths
under ``backbone/`` (``backbone/features.0``, ..., ``backbone/classifier.0``,
``backbone/classifier.3`` for VGG16): ``model.init_from=<a vgg16 workdir or
torchvision:vgg16> model.init_from_target=backbone`` loads a trained VGG16 classifier's convs
and fc6/fc7 (its ``classifier.6`` is reported as unused); ``cls_score`` and ``bbox_pred`` are
new (N(0, 0.01) and N(0, 0.001), zero biases, as the paper).

Example::

    model = jaxvision.models.get_model("fast_rcnn_vgg16", num_classes=21)
    dets = model.apply(variables, canvas_images, image_sizes, proposals=props,
                       proposal_valid=valid)    # [N, Hc, Wc, 3], [N, 2], [N, P, 4], [N, P]
    dets["boxes"], dets["scores"], dets["labels"], dets["valid"], dets["count"]
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

# The module, not its names: importing jaxvision.detection first reaches this module through
# jaxvision.models while losses.py is still half-imported.
from jaxvision.detection import losses as det_losses
from jaxvision.detection.roi_heads import postprocess_detections
from jaxvision.detection.sampling import sample_rois
from jaxvision.models import layers
from jaxvision.models.registry import register_model
from jaxvision.models.resnet import ResNet, ResNet18
from jaxvision.models.vgg import CONFIGS, VGG, dense_kernel_init
from jaxvision.ops.roi_pool import roi_pool

__all__ = ["FastRCNN", "ResNetC4RoIBody", "VGGRoIBody", "fast_rcnn_resnet18",
           "fast_rcnn_vgg16"]

Array = jax.Array
Dtype = Any


class VGGRoIBody(VGG):
    """A VGG classifier cut for Fast R-CNN: :meth:`conv_body` is ``features`` up to
    ``conv5_3`` (the last max pool removed: stride 16, 512 channels) and :meth:`box_head` the
    classifier's first two dense layers (``classifier.0`` = fc6, ``classifier.3`` = fc7, ReLU
    and dropout each) on the flattened 7x7 RoI features, with the classifier's names and
    flatten order, so a VGG classifier's variables load by path. ``representation_size``:
    their width (4096 to load a classifier's)."""

    representation_size: int = 4096
    stride: ClassVar[int] = 16

    def conv_body(self, x: Array, train: bool = False) -> Array:
        """``[N, H, W, 3] -> [N, H / 16, W / 16, 512]`` (``conv5_3`` after its ReLU)."""
        last = [n for n in self.feature_names if n.startswith("conv")][-1]  # conv5_3
        return self.feature_maps(x, train=train, last=last)[last]

    @nn.compact
    def box_head(self, pooled: Array, train: bool = False) -> Array:
        """``[K, 7, 7, C] -> [K, representation_size]``: fc6, ReLU, dropout, fc7, ReLU,
        dropout (VGG's classifier; dropout needs a ``'dropout'`` rng when ``train``)."""
        x = layers.flatten_nchw(pooled)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=dense_kernel_init)
        for name in ("classifier.0", "classifier.3"):
            x = nn.relu(nn.Dense(self.representation_size, name=name, **kw)(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return x


class ResNetC4RoIBody(ResNet):
    """A ResNet classifier cut for Fast R-CNN: :meth:`conv_body` is the stem and
    ``layer1..layer3`` (C4: stride 16, 256 channels for ResNet-18/34; ``layer4`` and ``fc``
    are not built, so a classifier's load by path with those two reported unused) and
    :meth:`box_head` two new dense layers ``fc6``, ``fc7`` (+ ReLU; torch's ``Linear`` init,
    as torchvision's ``TwoMLPHead``) of width ``representation_size``."""

    representation_size: int = 1024
    stride: ClassVar[int] = 16

    def conv_body(self, x: Array, train: bool = False) -> Array:
        """``[N, H, W, 3] -> [N, H / 16, W / 16, C4]`` (``layer3``)."""
        return self.feature_maps(x, train=train, last="layer3")["layer3"]

    @nn.compact
    def box_head(self, pooled: Array, train: bool = False) -> Array:
        """``[K, 7, 7, C] -> [K, representation_size]``: fc6, ReLU, fc7, ReLU."""
        del train  # no dropout
        x = layers.flatten_nchw(pooled)
        for name in ("fc6", "fc7"):
            k_init, b_init = layers.torch_linear_init(x.shape[-1])
            x = nn.relu(nn.Dense(self.representation_size, dtype=self.dtype,
                                 param_dtype=self.param_dtype, kernel_init=k_init,
                                 bias_init=b_init, name=name)(x))
        return x


class FastRCNN(nn.Module):
    """Fast R-CNN on padded canvases with given region proposals.

    Attributes:
      backbone: a module with ``conv_body(images, train) -> [N, Hc / s, Wc / s, C]`` (one map
        of stride ``backbone.stride``, 16) and ``box_head(pooled [K, 7, 7, C], train) -> [K,
        D]`` (:class:`VGGRoIBody`, :class:`ResNetC4RoIBody`).
      num_classes: classes including the background (21 for VOC).
      pool_size: RoI max pooling output side (7: what VGG's fc6 expects).
      score_thresh, nms_thresh, detections_per_img: inference (0.05, 0.3, 100).
      bbox_reg_weights: the box coder's weights ((10, 10, 5, 5): the paper's target stds).
      batch_size_per_image, positive_fraction: RoIs sampled per image and their largest
        foreground share (64, 0.25: 128 RoIs from 2 images).
      fg_iou_thresh, bg_iou_thresh, min_background_iou: foreground at IoU >= 0.5,
        background in [0.1, 0.5).
      box_weight: lambda of the multi-task loss (1).

    ``__call__(images, image_sizes=None, train=False, *, proposals, proposal_valid)``:

    * ``images``: ``[N, Hc, Wc, 3]`` float normalized, each resized image at the canvas's
      top-left; ``image_sizes``: ``[N, 2]`` int (h, w) (default: the whole canvas).
    * ``proposals``: ``[N, P, 4]`` float (x1, y1, x2, y2) canvas pixels; ``proposal_valid``:
      ``[N, P]`` bool (default all True). Needed except under ``init``.
    * ``train=False``: ``{"boxes": [N, D, 4] float32 canvas pixels, "scores": [N, D],
      "labels": [N, D] int32, "valid": [N, D] bool, "count": [N] int32}``, D =
      ``detections_per_img``, valid entries first by decreasing score.
    * ``train=True``: the raw ``{"class_logits": [N, P, C], "box_regression": [N, P, 4C]}``.
    """

    backbone: nn.Module
    num_classes: int = 21
    pool_size: int = 7
    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    detections_per_img: int = 100
    bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    batch_size_per_image: int = 64
    positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.5
    min_background_iou: float | None = 0.1
    box_weight: float = 1.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    #: The detection task passes the batch's ``proposals`` and ``proposal_valid``.
    needs_proposals: ClassVar[bool] = True
    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 3)

    @property
    def spatial_scale(self) -> float:
        return 1.0 / int(getattr(self.backbone, "stride", 16))

    def box_outputs(self, features: Array, rois: Array, train: bool = False
                    ) -> tuple[Array, Array]:
        """Class logits ``[N, R, C]`` and box deltas ``[N, R, 4C]`` of ``rois [N, R, 4]``
        (canvas pixels) on the stride-16 ``features [N, h, w, C']``."""
        n, r = rois.shape[:2]
        if self.is_initializing():
            # The pooled shape is all the head's variables need; roi_pool's size-bucketed
            # loop would cost a compile (or minutes op by op) for nothing.
            pooled = jnp.zeros((n * r, self.pool_size, self.pool_size, features.shape[-1]),
                               features.dtype)
        else:
            batch = jnp.repeat(jnp.arange(n, dtype=rois.dtype), r)[:, None]
            flat = jnp.concatenate([batch, rois.reshape(n * r, 4)], axis=1)
            pooled = roi_pool(features, flat, self.pool_size, self.spatial_scale)
        x = self.backbone.box_head(pooled, train=train)
        return self.predictor(x, n, r)

    @nn.compact
    def predictor(self, x: Array, n: int, r: int) -> tuple[Array, Array]:
        """``cls_score`` and ``bbox_pred`` of ``x [n * r, D]``: ``[n, r, C]``, ``[n, r, 4C]``."""
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype,
              "bias_init": nn.initializers.zeros}
        logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01),
                          name="cls_score", **kw)(x)
        deltas = nn.Dense(4 * self.num_classes, kernel_init=nn.initializers.normal(0.001),
                          name="bbox_pred", **kw)(x)
        return logits.reshape(n, r, -1), deltas.reshape(n, r, -1)

    def _check(self, images: Array, proposals: Array | None, proposal_valid: Array | None
               ) -> tuple[Array, Array]:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"FastRCNN expects images [N, H, W, 3] (normalized, NHWC), got "
                             f"shape {tuple(images.shape)}")
        n, hc, wc = images.shape[:3]
        s = int(round(1 / self.spatial_scale))
        if hc % s or wc % s:
            raise ValueError(f"FastRCNN: the canvas {(hc, wc)} must be a multiple of the "
                             f"feature stride {s}")
        if proposals is None:
            raise ValueError("FastRCNN needs proposals=[N, P, 4] (x1, y1, x2, y2 canvas "
                             "pixels; selective search, detection.proposals="
                             "'selective_search') and proposal_valid=[N, P]")
        if proposals.ndim != 3 or proposals.shape[0] != n or proposals.shape[-1] != 4:
            raise ValueError(f"FastRCNN: proposals must be [N, P, 4] with N = {n}, got shape "
                             f"{tuple(proposals.shape)}")
        if proposal_valid is None:
            proposal_valid = jnp.ones(proposals.shape[:2], bool)
        if tuple(proposal_valid.shape) != tuple(proposals.shape[:2]):
            raise ValueError(f"FastRCNN: proposal_valid must be [N, P] = "
                             f"{tuple(proposals.shape[:2])}, got {tuple(proposal_valid.shape)}")
        return jnp.asarray(proposals, jnp.float32), jnp.asarray(proposal_valid, bool)

    def __call__(self, images: Array, image_sizes: Array | None = None, train: bool = False,
                 *, proposals: Array | None = None, proposal_valid: Array | None = None
                 ) -> dict[str, Array]:
        n, hc, wc = images.shape[:3]
        if self.is_initializing() and proposals is None:
            # Every variable exists after one RoI per image; post-processing (nms) has none
            # and would run op by op here.
            feats = self.backbone.conv_body(images, train=train)
            logits, deltas = self.box_outputs(feats, jnp.zeros((n, 1, 4), jnp.float32), train)
            return {"class_logits": logits, "box_regression": deltas}
        proposals, proposal_valid = self._check(images, proposals, proposal_valid)
        if image_sizes is None:
            image_sizes = jnp.broadcast_to(jnp.asarray([hc, wc], jnp.int32), (n, 2))
        feats = self.backbone.conv_body(images, train=train)
        logits, deltas = self.box_outputs(feats, proposals, train)
        if train or self.is_initializing():
            return {"class_logits": logits, "box_regression": deltas}
        return postprocess_detections(
            logits.astype(jnp.float32), deltas.astype(jnp.float32), proposals, proposal_valid,
            image_sizes, score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
            detections_per_img=self.detections_per_img, bbox_reg_weights=self.bbox_reg_weights)

    def sample_rois(self, proposals: Array, proposal_valid: Array, gt_boxes: Array,
                    gt_labels: Array, gt_valid: Array, key: Array) -> Any:
        """The paper's hierarchical sampling: per image (vmapped, one key each),
        :func:`~jaxvision.detection.sampling.sample_rois` of
        ``batch_size_per_image`` RoIs; a :class:`~jaxvision.detection.sampling
        .TrainingSamples` of ``[N, S, ...]`` arrays."""
        return sample_rois(proposals, proposal_valid, gt_boxes, gt_labels, gt_valid, key,
                           fg_iou_thresh=self.fg_iou_thresh, bg_iou_thresh=self.bg_iou_thresh,
                           batch_size_per_image=self.batch_size_per_image,
                           positive_fraction=self.positive_fraction,
                           bbox_reg_weights=self.bbox_reg_weights,
                           min_background_iou=self.min_background_iou)

    def losses(self, images: Array, image_sizes: Array, gt_boxes: Array, gt_labels: Array,
               gt_valid: Array, key: Array, *, proposals: Array | None = None,
               proposal_valid: Array | None = None) -> dict[str, Array]:
        """The multi-task loss on the sampled RoIs.

        Args:
          images: ``[N, Hc, Wc, 3]`` float normalized canvases; image_sizes: ``[N, 2]`` int
            (unused: proposals and boxes are already inside the images).
          gt_boxes: ``[N, G, 4]`` float canvas pixels; gt_labels: ``[N, G]`` int 1..C-1;
          gt_valid: ``[N, G]`` bool (degenerate boxes must be False).
          key: a ``jax.random`` key for the sampler.
          proposals: ``[N, P, 4]`` float canvas pixels; proposal_valid: ``[N, P]`` bool.

        Returns:
          ``{"loss_classifier", "loss_box_reg"}``: float32 scalars, the cross-entropy and
          ``box_weight`` times the smooth-L1 (beta 1) box loss, both averaged over the
          sampled RoIs of the batch (their sum is :func:`~jaxvision.detection.losses
          .fast_rcnn_multitask_loss`), and ``"num_fg_rois"`` (foreground RoIs per image).
        """
        del image_sizes
        proposals, proposal_valid = self._check(images, proposals, proposal_valid)
        n = images.shape[0]
        samples = self.sample_rois(proposals, proposal_valid, gt_boxes, gt_labels, gt_valid,
                                   key)
        feats = self.backbone.conv_body(images, train=True)
        logits, deltas = self.box_outputs(feats, samples.proposals, train=True)
        loss_cls, loss_box = det_losses.fastrcnn_loss(
            logits.astype(jnp.float32), deltas.astype(jnp.float32), samples.labels,
            samples.regression_targets, samples.valid, beta=1.0)
        fg = jnp.sum((samples.labels > 0) & samples.valid) / n
        return {"loss_classifier": loss_cls, "loss_box_reg": self.box_weight * loss_box,
                "num_fg_rois": fg.astype(jnp.float32)}


_DEFAULTS: dict[str, Any] = {
    "num_classes": 21, "representation_size": None, "score_thresh": 0.05, "nms_thresh": 0.3,
    "detections_per_img": 100, "bbox_reg_weights": (10.0, 10.0, 5.0, 5.0),
    "batch_size_per_image": 64, "positive_fraction": 0.25, "fg_iou_thresh": 0.5,
    "bg_iou_thresh": 0.5, "min_background_iou": 0.1, "box_weight": 1.0,
    "dtype": jnp.float32, "param_dtype": jnp.float32,
}


def _fast_rcnn(name: str, backbone_kwargs: dict[str, Any], make_backbone: Any,
               kwargs: dict[str, Any]) -> FastRCNN:
    extra = set(backbone_kwargs)
    unknown = sorted(set(kwargs) - set(_DEFAULTS) - extra)
    if unknown:
        raise TypeError(f"{name}() got unexpected keyword arguments {unknown}; known: "
                        f"{', '.join([*_DEFAULTS, *backbone_kwargs])}")
    cfg = {**_DEFAULTS, **backbone_kwargs, **kwargs}
    num_classes = int(cfg["num_classes"])
    if num_classes < 2:
        raise ValueError(f"{name}: num_classes counts the background too and must be >= 2, "
                         f"got {num_classes}")
    kw = {"dtype": cfg["dtype"], "param_dtype": cfg["param_dtype"]}
    body = make_backbone(**{k: cfg[k] for k in extra}, **kw,
                         **({} if cfg["representation_size"] is None else
                            {"representation_size": int(cfg["representation_size"])}))
    return FastRCNN(
        body, num_classes=num_classes, score_thresh=float(cfg["score_thresh"]),
        nms_thresh=float(cfg["nms_thresh"]), detections_per_img=int(cfg["detections_per_img"]),
        bbox_reg_weights=tuple(float(w) for w in cfg["bbox_reg_weights"]),
        batch_size_per_image=int(cfg["batch_size_per_image"]),
        positive_fraction=float(cfg["positive_fraction"]),
        fg_iou_thresh=float(cfg["fg_iou_thresh"]), bg_iou_thresh=float(cfg["bg_iou_thresh"]),
        min_background_iou=(None if cfg["min_background_iou"] is None
                            else float(cfg["min_background_iou"])),
        box_weight=float(cfg["box_weight"]), **kw)


@register_model
def fast_rcnn_vgg16(**kwargs: Any) -> FastRCNN:
    """Fast R-CNN with VGG16 (the paper's model "L"): ``conv5_3`` at stride 16, RoI max
    pooling to 7x7, fc6/fc7 of ``representation_size=4096`` with dropout 0.5 (``dropout``),
    as a VGG16 classifier's (``model.init_from_target=backbone`` loads one).

    Keywords (defaults): ``num_classes=21`` (background included), ``representation_size``
    (4096), ``dropout`` (0.5), ``score_thresh=0.05``, ``nms_thresh=0.3``,
    ``detections_per_img=100``, ``bbox_reg_weights=(10, 10, 5, 5)``, the training counts
    ``batch_size_per_image=64``, ``positive_fraction=0.25``, ``fg_iou_thresh=0.5``,
    ``bg_iou_thresh=0.5``, ``min_background_iou=0.1``, ``box_weight=1.0``, and
    ``dtype``/``param_dtype``.
    """
    return _fast_rcnn("fast_rcnn_vgg16", {"dropout": 0.5},
                      functools.partial(VGGRoIBody, config=CONFIGS["D"]), kwargs)


@register_model
def fast_rcnn_resnet18(**kwargs: Any) -> FastRCNN:
    """Fast R-CNN on ResNet-18's C4 (``layer3``, stride 16, 256 channels), RoI max pooling to
    7x7, new fc6/fc7 of ``representation_size=1024``: the small model for CPU runs.

    Keywords as :func:`fast_rcnn_vgg16` (no ``dropout``), plus ``frozen_bn`` (False: the
    backbone's BatchNorms use batch statistics in training; True: torchvision's
    ``FrozenBatchNorm2d``).
    """
    return _fast_rcnn("fast_rcnn_resnet18", {"frozen_bn": False},
                      functools.partial(ResNetC4RoIBody, stage_sizes=ResNet18.keywords[
                          "stage_sizes"], block_cls=ResNet18.keywords["block_cls"]), kwargs)
