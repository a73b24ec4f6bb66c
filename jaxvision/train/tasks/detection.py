"""Object detection: the R-CNN family's losses, padded detections, VOC and COCO AP.

Examples are put on a fixed canvas on the host (``dense.*``, :mod:`jaxvision.data.dense_augment`,
wired by :func:`jaxvision.train.input_pipeline.dense_transform`): ``image`` uint8 [B, Hc, Wc,
3], ``image_size`` int32 [B, 2] (the resized image's (h, w) at the canvas's top-left),
``orig_size`` int32 [B, 2], and the padded ground truth ``boxes`` float32 [B, G, 4] (canvas
pixels, x1, y1, x2, y2), ``labels`` int32 [B, G] (1..C-1), ``box_valid`` bool [B, G] and
``difficult`` bool [B, G] (G = ``data.max_boxes``). Evaluation resizes as torchvision's
``GeneralizedRCNNTransform`` (shorter side ``dense.eval_min_size``, longer side at most
``dense.eval_max_size``) and scores boxes in each image's original pixels. A detector given
its region proposals (class attribute ``needs_proposals``, e.g.
:class:`~jaxvision.detection.fast_rcnn.FastRCNN`) also gets ``proposals`` float32 [B, P, 4]
(canvas pixels, moved with the image) and ``proposal_valid`` bool [B, P] (``detection.*``,
:func:`jaxvision.train.input_pipeline.with_proposals`), passed to ``losses`` and
``__call__`` as the keyword arguments ``proposals=`` and ``proposal_valid=``.

The model is a registered detector (:class:`~jaxvision.detection.FasterRCNN`, or one with the
same two entry points): ``model.losses(images, image_sizes, gt_boxes, gt_labels, gt_valid,
key)`` gives its named losses (their sum is the training loss; torchvision's names,
``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``), and
``model(images, image_sizes)`` its padded detections ``{"boxes", "scores", "labels",
"valid", "count"}`` in canvas pixels. ``model.num_classes`` counts the background
(``model.num_classes = len(classes) + 1``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvision.data import VALID
from jaxvision.train.evaluators.base import Evaluator
from jaxvision.train.evaluators.detection import DetectionAP, to_original_pixels
from jaxvision.train.preprocess import normalize
from jaxvision.train.tasks.base import Batch, Task, Variables, moving_augmentations
from jaxvision.train.tasks.classification import build_classifier

#: The metrics the task's evaluator writes that can rank checkpoints.
METRICS = ("eval_map50", "eval_map50_voc07", "eval_coco_map")


def class_names(config: ml_collections.ConfigDict) -> list[str]:
    """The object class names in label order (label k names entry k - 1): ``data.classes``,
    else those of the training split's source (VOC: collected from its annotations)."""
    if config.data.classes:
        return [str(n) for n in config.data.classes]
    from jaxvision.train import input_pipeline

    key = (config.data.source, config.data.root, config.data.train_split)
    if key not in _NAMES_CACHE:
        names = input_pipeline.class_names(input_pipeline.make_source(config,
                                                                      config.data.train_split))
        _NAMES_CACHE[key] = names
    names = _NAMES_CACHE[key]
    if names is None:
        return [str(k) for k in range(1, config.model.num_classes)]
    return names


_NAMES_CACHE: dict[tuple, list[str] | None] = {}


def gt_valid(batch: Batch) -> jax.Array:
    """[B, G] bool: the ground-truth rows the losses use: valid, non-degenerate, of real rows
    (torchvision refuses degenerate boxes; they would match nothing)."""
    b = batch["boxes"]
    ok = batch["box_valid"].astype(bool) & (b[..., 2] > b[..., 0]) & (b[..., 3] > b[..., 1])
    return ok & batch[VALID].astype(bool)[:, None]


#: The batch fields of a detector that is given its region proposals (Fast R-CNN):
#: ``proposals`` float32 [B, P, 4] canvas pixels and ``proposal_valid`` bool [B, P].
PROPOSAL_FIELDS = ("proposals", "proposal_valid")


def needs_proposals(config: ml_collections.ConfigDict) -> bool:
    """Whether ``model.name``'s detector takes region proposals with the batch (its class
    attribute ``needs_proposals``, :class:`~jaxvision.detection.fast_rcnn.FastRCNN`)."""
    try:
        model = build_classifier(config)  # an unbound module: a dataclass, cheap to build
    except (KeyError, TypeError, ValueError):
        return False  # build_model names the problem
    return bool(getattr(model, "needs_proposals", False))


def proposal_kwargs(model: nn.Module, batch: Batch) -> dict[str, jax.Array]:
    """``{"proposals", "proposal_valid"}`` from ``batch`` for a model with
    ``needs_proposals``, else ``{}``."""
    if not getattr(model, "needs_proposals", False):
        return {}
    missing = [f for f in PROPOSAL_FIELDS if f not in batch]
    if missing:
        raise ValueError(f"{type(model).__name__} needs region proposals with every batch "
                         f"(fields {list(PROPOSAL_FIELDS)}); the batch has no {missing}: "
                         "set detection.proposals='selective_search'")
    return {"proposals": batch["proposals"].astype(jnp.float32),
            "proposal_valid": batch["proposal_valid"].astype(bool)}


class Detection(Task):
    """``batch``: see the module doc. Predictions: ``boxes`` [B, D, 4] float32 (original
    pixels), ``scores`` [B, D], ``labels`` [B, D] int32, ``valid`` [B, D] bool."""

    name = "detection"
    num_images = 4

    def fields(self, config: ml_collections.ConfigDict) -> tuple[str, ...]:
        base = ("image", "image_size", "orig_size", "boxes", "labels", "box_valid",
                "difficult")
        return (*base, *PROPOSAL_FIELDS) if needs_proposals(config) else base

    def check_config(self, config: ml_collections.ConfigDict) -> None:
        from jaxvision.train.config import ConfigError

        moving = moving_augmentations(config)
        if moving:
            raise ConfigError(f"task.name='detection' cannot use {', '.join(moving)} (on "
                              "device, the image would move without its boxes); turn it off "
                              "and use the dense.* keys (flip, scale_range, crop)")
        if config.dense.canvas is None:
            raise ConfigError("task.name='detection' needs dense.canvas=[H, W], the fixed "
                              "size every example is put on (multiples of 32, e.g. [320, "
                              "448] for 640x480 images at 320 px)")
        bad = [v for v in config.dense.canvas if v % 32]
        if bad:
            raise ConfigError(f"dense.canvas={list(config.dense.canvas)}: a detector's "
                              "canvas sides must be multiples of 32 (torchvision's "
                              "size_divisible; the FPN halves the map five times)")
        if config.data.image_size is not None:
            raise ConfigError("task.name='detection' takes its input size from dense.canvas; "
                              "set data.image_size=None")
        if config.data.source not in ("voc", "coco", "tfds"):
            raise ConfigError(f"task.name='detection' reads boxes: data.source must be 'voc', "
                              f"'coco' or a tfds detection set, got {config.data.source!r}")
        if config.model.num_classes < 2:
            raise ConfigError(f"model.num_classes={config.model.num_classes} counts the "
                              "background too: the object classes + 1, at least 2")
        if needs_proposals(config) and not config.detection.proposals:
            raise ConfigError(f"model.name={config.model.name!r} classifies region "
                              "proposals given with the data: set "
                              "detection.proposals='selective_search'")
        ck = config.checkpoint
        if ck.keep_best > 0 and ck.best_metric not in METRICS:
            raise ConfigError(f"checkpoint.best_metric={ck.best_metric!r} is not written by "
                              f"task.name='detection'; use one of {', '.join(METRICS)} "
                              "(or checkpoint.keep_best=0)")

    def build_model(self, config: ml_collections.ConfigDict) -> nn.Module:
        model = build_classifier(config)
        for method in ("losses", "__call__"):
            if not hasattr(model, method):
                raise ValueError(f"model.name={config.model.name!r} is not a detector (no "
                                 f"{method}); use e.g. fasterrcnn_resnet18_fpn")
        return model

    def loss(self, model: nn.Module, config: ml_collections.ConfigDict, size: tuple[int, int],
             variables: Variables, batch: Batch, aug_key: jax.Array, dropout_key: jax.Array,
             ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Variables]]:
        images = normalize(config, batch["image"])
        losses, updates = model.apply(
            variables, images, batch["image_size"], batch["boxes"].astype(jnp.float32),
            batch["labels"].astype(jnp.int32), gt_valid(batch), aug_key, method="losses",
            mutable=["batch_stats"], rngs={"dropout": dropout_key},
            **proposal_kwargs(model, batch))
        total = sum(v for k, v in losses.items() if k.startswith("loss_"))
        return total, (dict(losses), updates)

    def predict(self, model: nn.Module, config: ml_collections.ConfigDict,
                size: tuple[int, int], variables: Variables, batch: Batch,
                ) -> dict[str, jax.Array]:
        images = batch["image"]
        n = images.shape[0]
        sizes = batch.get("image_size")
        if sizes is None:  # ``jaxvision predict`` gives images alone: the whole canvas
            sizes = jnp.broadcast_to(jnp.asarray(images.shape[1:3], jnp.int32), (n, 2))
        dets = model.apply(variables, normalize(config, images), sizes, train=False,
                           **proposal_kwargs(model, batch))
        boxes = dets["boxes"]
        if "orig_size" in batch:
            boxes = to_original_pixels(boxes, sizes, batch["orig_size"])
        return {"boxes": boxes.astype(jnp.float32), "scores": dets["scores"],
                "labels": dets["labels"].astype(jnp.int32), "valid": dets["valid"]}

    def evaluators(self, config: ml_collections.ConfigDict) -> list[Evaluator]:
        return [DetectionAP(class_names(config), coco=config.data.source == "coco")]

    def images(self, config: ml_collections.ConfigDict, batch: dict[str, np.ndarray],
               predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """``{"detection": [K, T + H, 2 W + 4, 3] uint8}``: the resized image with its true
        boxes | with the predicted boxes (scores >= 0.3), for the valid rows given."""
        from jaxvision.data.dense_augment import resize_boxes
        from jaxvision.visualize import draw_boxes, panel

        rows = np.flatnonzero(np.asarray(batch[VALID], bool))
        if not len(rows):
            return None
        names = ["background", *class_names(config)]  # draw_boxes names label k names[k]
        pictures = []
        for i in rows:
            h, w = (int(v) for v in batch["image_size"][i])
            image = np.asarray(batch["image"][i])[:h, :w]
            keep = np.asarray(predictions["valid"][i], bool) & (
                np.asarray(predictions["scores"][i]) >= 0.3)
            truth = draw_boxes(image, batch["boxes"][i], batch["labels"][i],
                               class_names=names, valid=np.asarray(batch["box_valid"][i], bool))
            # Predictions are in original pixels; the picture is the resized image.
            boxes = resize_boxes(predictions["boxes"][i], batch["orig_size"][i], (h, w))
            pred = draw_boxes(image, boxes,
                              predictions["labels"][i], predictions["scores"][i],
                              class_names=names, valid=keep)
            pictures.append(panel([truth, pred], ["truth", "predicted (score >= 0.3)"]))
        hmax = max(p.shape[0] for p in pictures)
        wmax = max(p.shape[1] for p in pictures)
        return {"detection": np.stack([np.pad(p, ((0, hmax - p.shape[0]),
                                                  (0, wmax - p.shape[1]), (0, 0)),
                                              constant_values=255) for p in pictures])}

    def describe(self, m: dict[str, float], split: str) -> str:
        names = [k.split("/", 1)[1] for k in m if k.startswith("eval_ap50/")]
        per = ", ".join(f"{n} {m['eval_ap50/' + n]:.3f}" for n in names)
        coco = f", COCO AP {m['eval_coco_map']:.4f}" if "eval_coco_map" in m else ""
        return (f"{split} mAP@0.5 {m['eval_map50']:.4f} (VOC07 11-point "
                f"{m['eval_map50_voc07']:.4f}; {per}){coco} over {int(m['eval_images'])} "
                "images")

    def progress(self, m: dict[str, float]) -> str:
        return f"eval mAP@0.5 {m['eval_map50']:.4f}, VOC07 {m['eval_map50_voc07']:.4f}"
