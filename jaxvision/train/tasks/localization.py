"""Classification + localization: a classifier with a box (or keypoint) regression head.

The model is :class:`jaxvision.localization.Localizer` around the zoo classifier of
``config.model`` (its head set by ``config.localization``). The loss is
``class_weight * cross-entropy + box_weight * regression`` (L2 or smooth-L1, summed over
coordinates, mean over examples), so the lecture's staged recipe is configuration:

1. classifier: ``localization.box_weight=0``;
2. regressor: ``localization.class_weight=0``, ``optimizer.frozen=['backbone',
   'classifier\\..*']`` and ``model.init_from=<the classifier's workdir>``;
3. joint fine-tuning: both weights 1, nothing frozen, ``model.init_from=<stage 2>``.

Targets are computed on device from the batch: the first box of ``boxes`` ([B, 4] or the
dense contract's [B, max_boxes, 4], (x1, y1, x2, y2) pixels), over the image size, as
(cx, cy, w, h) or corners, standardised with ``localization.target_mean``/``target_std``;
or ``keypoints`` [B, K, 2] (x, y) pixels over the image size. Augmentations that move pixels
are refused: they would move the object without its box.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxvision.data import VALID
from jaxvision.localization.heads import make_localizer
from jaxvision.localization.losses import class_boxes, l2_loss, smooth_l1_loss
from jaxvision.localization.targets import boxes_to_cxcywh, cxcywh_to_boxes
from jaxvision.train import losses
from jaxvision.train.evaluators import Accuracy, BoxLocalization, KeypointPCK
from jaxvision.train.evaluators.base import Evaluator
from jaxvision.train.evaluators.localization import first_box
from jaxvision.train.preprocess import normalize
from jaxvision.train.tasks.base import Batch, Task, Variables, moving_augmentations
from jaxvision.train.tasks.classification import build_classifier


def num_outputs(config: ml_collections.ConfigDict) -> int:
    """4 for a box, 2K for K keypoints."""
    loc = config.localization
    return 4 if loc.target == "boxes" else 2 * loc.num_keypoints


def _scale(size: tuple[int, int], coords: int) -> jax.Array:
    h, w = size
    return jnp.asarray([w, h] * (coords // 2), jnp.float32)


def encode_targets(config: ml_collections.ConfigDict, batch: Batch,
                   size: tuple[int, int]) -> jax.Array:
    """The regression targets [B, num_outputs] float32 of ``batch`` for an input of ``size``
    (h, w)."""
    loc = config.localization
    if loc.target == "boxes":
        t = first_box(batch["boxes"]).astype(jnp.float32) / _scale(size, 4)
        if loc.box_encoding == "cxcywh":
            t = boxes_to_cxcywh(t)
    else:
        kp = batch["keypoints"].astype(jnp.float32)
        t = kp.reshape(kp.shape[0], -1) / _scale(size, kp.shape[1] * 2)
    if loc.target_mean is not None:
        t = (t - jnp.asarray(loc.target_mean, jnp.float32)) / jnp.asarray(loc.target_std,
                                                                          jnp.float32)
    return t


def decode_outputs(config: ml_collections.ConfigDict, reg: jax.Array,
                   size: tuple[int, int]) -> dict[str, jax.Array]:
    """Head outputs [B, num_outputs] -> ``{"boxes": [B, 4]}`` (x1, y1, x2, y2) or
    ``{"keypoints": [B, K, 2]}`` (x, y), float32 pixels of the input."""
    loc = config.localization
    reg = reg.astype(jnp.float32)
    if loc.target_mean is not None:
        reg = reg * jnp.asarray(loc.target_std, jnp.float32) + jnp.asarray(loc.target_mean,
                                                                           jnp.float32)
    if loc.target == "boxes":
        if loc.box_encoding == "cxcywh":
            reg = cxcywh_to_boxes(reg)
        return {"boxes": reg * _scale(size, 4)}
    k = reg.shape[-1] // 2
    return {"keypoints": (reg * _scale(size, 2 * k)).reshape(-1, k, 2)}


class Localization(Task):
    """``batch``: ``image`` [B, H, W, C] uint8, ``label`` [B] int32, ``boxes`` [B, 4] or
    [B, K, 4] float32 (and ``keypoints`` [B, K, 2] for keypoint targets). Predictions:
    ``log_probs`` [B, C], ``label`` [B] (top-1), ``boxes`` [B, 4] or ``keypoints``
    [B, K, 2] in input pixels (the top-1 class's regression when ``per_class``)."""

    name = "localization"

    def fields(self, config: ml_collections.ConfigDict) -> tuple[str, ...]:
        extra = ("keypoints",) if config.localization.target == "keypoints" else ()
        return ("image", "label", "boxes", *extra)

    def check_config(self, config: ml_collections.ConfigDict) -> None:
        from jaxvision.train.config import ConfigError

        moving = moving_augmentations(config)
        if moving:
            raise ConfigError(f"task.name='localization' cannot use {', '.join(moving)}: "
                              "it moves the object without its box; turn it off")
        loc = config.localization
        if (loc.target_mean is None) != (loc.target_std is None):
            raise ConfigError("set both localization.target_mean and localization.target_std "
                              "(or neither)")
        n = num_outputs(config)
        for key in ("target_mean", "target_std"):
            value = loc[key]
            if value is not None and len(value) != n:
                raise ConfigError(f"localization.{key} has {len(value)} values; the "
                                  f"{loc.target} target has {n} coordinates")
        if loc.target_std is not None and min(loc.target_std) <= 0:
            raise ConfigError(f"localization.target_std must be > 0, got {loc.target_std}")
        if loc.class_weight == 0 and loc.box_weight == 0:
            raise ConfigError("localization.class_weight and box_weight are both 0: "
                              "nothing would be learned")

    def build_model(self, config: ml_collections.ConfigDict) -> nn.Module:
        loc = config.localization
        return make_localizer(build_classifier(config), attach=loc.attach,
                              hidden=tuple(loc.hidden), num_outputs=num_outputs(config),
                              per_class=loc.per_class)

    @staticmethod
    def _check_size(images: jax.Array, size: tuple[int, int]) -> None:
        if tuple(images.shape[1:3]) != tuple(size):
            raise ValueError(f"localization: images are {tuple(images.shape[1:3])} but the "
                             f"network input is {tuple(size)}; the task does not crop or "
                             "resize (boxes would not follow): set data.image_size=None")

    def loss(self, model: nn.Module, config: ml_collections.ConfigDict, size: tuple[int, int],
             variables: Variables, batch: Batch, aug_key: jax.Array, dropout_key: jax.Array,
             ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Variables]]:
        loc = config.localization
        self._check_size(batch["image"], size)
        images = normalize(config, batch["image"])
        labels, mask = batch["label"], batch[VALID]
        (logits, reg), updates = model.apply(variables, images, train=True,
                                             mutable=["batch_stats"],
                                             rngs={"dropout": dropout_key})
        if loc.per_class:
            reg = class_boxes(reg, labels)
        targets = encode_targets(config, batch, size)
        reg = reg.astype(jnp.float32)
        smoothing = config.classification.label_smoothing
        ce = losses.masked_mean(losses.cross_entropy(logits, labels, smoothing), mask)
        rl = (l2_loss(reg, targets, mask) if loc.loss == "l2"
              else smooth_l1_loss(reg, targets, mask=mask))
        # A zero weight drops the term (not 0 * term, which is NaN if the term is inf).
        loss = jnp.zeros((), jnp.float32)
        if loc.class_weight:
            loss = loss + loc.class_weight * ce
        if loc.box_weight:
            loss = loss + loc.box_weight * rl
        top1 = losses.masked_mean(losses.topk_correct(logits, labels, 1), mask)
        return loss, ({"ce": ce, "regression": rl, "top1": top1}, updates)

    def predict(self, model: nn.Module, config: ml_collections.ConfigDict,
                size: tuple[int, int], variables: Variables, batch: Batch,
                ) -> dict[str, jax.Array]:
        images = batch["image"]
        self._check_size(images, size)
        logits, reg = model.apply(variables, normalize(config, images), train=False)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        label = jnp.argmax(log_probs, axis=-1)
        if config.localization.per_class:
            reg = class_boxes(reg, label)
        return {"log_probs": log_probs, "label": label, **decode_outputs(config, reg, size)}

    def evaluators(self, config: ml_collections.ConfigDict) -> list[Evaluator]:
        loc = config.localization
        if loc.target == "boxes":
            return [Accuracy(), BoxLocalization(loc.iou_threshold)]
        return [Accuracy(), KeypointPCK()]

    def describe(self, m: dict[str, float], split: str) -> str:
        if "eval_localization" in m:
            what = (f"{split} localization accuracy {m['eval_localization']:.4f} (top-1 class "
                    f"and IoU >= 0.5), mean IoU {m['eval_mean_iou']:.4f}")
        else:
            what = f"{split} PCK@0.1 {m['eval_pck']:.4f}"
        return (f"{what}, classification accuracy {m['eval_top1']:.4f}, loss "
                f"{m['eval_loss']:.4f} on {int(m['eval_count'])} examples")

    def progress(self, m: dict[str, float]) -> str:
        main = (f"localization {m['eval_localization']:.4f}, mean IoU {m['eval_mean_iou']:.4f}"
                if "eval_localization" in m else f"PCK {m['eval_pck']:.4f}")
        return f"eval {main}, top-1 {m['eval_top1']:.4f}"
