"""Classification + localization: a classifier with a regression head.

The lecture's recipe (Overfeat / VGG / DeepPose / R-CNN): take a classifier, attach a
regression head that predicts the object's box (4 numbers, class-agnostic, or 4 per class),
or ``K`` keypoints (``2K`` numbers, DeepPose-style), either after the conv features
(Overfeat, VGG) or after the classifier's last hidden dense layer (DeepPose, R-CNN).

The backbone is a zoo classifier with a ``convolutionize_spec`` (dense layers after a conv
stack: lenet5, alexnet, vgg*, overfeat*); the :class:`Localizer` reuses its conv stack as the
``backbone`` submodule and re-creates its dense layers under their own names, so trained
classifier variables move over unchanged (:func:`localizer_from_classifier`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models import layers
from jaxvision.models.convolutionize import get_spec


class Localizer(nn.Module):
    """A classifier plus a box/keypoint regression head.

    ``images: [N, H, W, C] float32 -> (logits [N, num_classes], regression)`` with
    ``regression: [N, num_outputs]`` (class-agnostic) or ``[N, num_classes, num_outputs]``
    (``per_class``). Boxes are regressed as (x1, y1, x2, y2) divided by the image size.

    Attributes:
      backbone: the classifier whose ``features`` method is the conv stack.
      dense: names of the classifier's dense layers (from its ``convolutionize_spec``).
      widths: their output sizes; the last is ``num_classes``.
      attach: ``"features"`` (head on the flattened conv map) or ``"classifier"`` (on the
        last hidden dense layer's activations).
      hidden: widths of the regression head's hidden layers.
      num_outputs: 4 for a box, ``2 * K`` for ``K`` keypoints.
      per_class: one regression per class (R-CNN style) instead of class-agnostic.
    """

    backbone: nn.Module
    dense: tuple[str, ...]
    widths: tuple[int, ...]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    adaptive_pool: tuple[int, int] | None = None
    dropout: float = 0.0
    attach: Literal["features", "classifier"] = "features"
    hidden: tuple[int, ...] = (256,)
    num_outputs: int = 4
    per_class: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        if self.attach not in ("features", "classifier"):
            raise ValueError(f"attach must be 'features' or 'classifier', got {self.attach!r}")
        f = self.backbone.features(x, train=train)
        if self.adaptive_pool is not None:
            f = layers.adaptive_avg_pool(f, self.adaptive_pool)
        f = layers.flatten_nchw(f)
        h, penultimate = f, f
        for i, (name, width) in enumerate(zip(self.dense, self.widths, strict=True)):
            h = nn.Dense(width, name=name)(h)
            if i < len(self.dense) - 1:
                h = self.activation(h)
                if self.dropout:
                    h = nn.Dropout(self.dropout, deterministic=not train)(h)
                penultimate = h
        r = f if self.attach == "features" else penultimate
        for j, width in enumerate(self.hidden):
            r = nn.relu(nn.Dense(width, name=f"regressor.{j}")(r))
        k = self.widths[-1] if self.per_class else 1
        r = nn.Dense(k * self.num_outputs, kernel_init=nn.initializers.zeros,
                     name=f"regressor.{len(self.hidden)}")(r)
        if self.per_class:
            r = r.reshape(r.shape[0], k, self.num_outputs)
        return h, r


def make_localizer(model: nn.Module, **head: Any) -> Localizer:
    """A :class:`Localizer` around the zoo classifier ``model`` (e.g. ``get_model("lenet5")``).

    ``head`` sets ``attach``, ``hidden``, ``num_outputs``, ``per_class``.
    """
    spec = get_spec(model)
    widths = _dense_widths(model, spec.dense)
    return Localizer(backbone=model, dense=spec.dense, widths=widths,
                     activation=spec.activation, adaptive_pool=spec.adaptive_pool,
                     dropout=spec.dropout, **head)


def _dense_widths(model: nn.Module, dense: tuple[str, ...]) -> tuple[int, ...]:
    x = jax.ShapeDtypeStruct((1, *model.default_input_shape), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)["params"]
    return tuple(int(shapes[d]["kernel"].shape[-1]) for d in dense)


def localizer_from_classifier(
    model: nn.Module, variables: dict, input_shape: tuple[int, int, int], *,
    key: jax.Array, **head: Any,
) -> tuple[Localizer, dict]:
    """Wraps a trained classifier: its variables move over, the regression head is new.

    Returns ``(localizer, variables)``; at first the localizer's logits equal the
    classifier's and its regression is zero (the head's last layer starts at zero).
    """
    loc = make_localizer(model, **head)
    fresh = loc.init({"params": key, "dropout": key},
                     jnp.zeros((1, *input_shape), jnp.float32))
    spec = get_spec(model)
    params = dict(fresh["params"])
    params["backbone"] = {k: v for k, v in variables["params"].items() if k not in spec.dense}
    for d in spec.dense:
        params[d] = variables["params"][d]
    out = {"params": params}
    for col, tree in variables.items():
        if col != "params":
            out[col] = {"backbone": tree}
    return loc, out


def classifier_from_localizer(model: nn.Module, variables: dict) -> dict:
    """The classifier's own variables out of a :class:`Localizer`'s (the regressor dropped).

    The inverse of :func:`localizer_from_classifier`: after training (stage
    ``"classifier"`` or ``"joint"``) the result applies with ``model`` itself, so it can be
    evaluated, saved or convolutionized (:func:`jaxvision.models.convolutionize`).

    Args:
      model: the zoo classifier the localizer was made from.
      variables: the localizer's variables (``params/backbone``, ``params/<dense>``,
        ``params/regressor.*`` and optionally ``batch_stats/backbone``).
    Returns:
      ``model``'s variables: ``{"params": {conv layers..., dense layers...}, ...}``.
    """
    spec = get_spec(model)
    params = dict(variables["params"]["backbone"])
    for d in spec.dense:
        params[d] = variables["params"][d]
    out = {"params": params}
    for col, tree in variables.items():
        if col != "params":
            out[col] = tree["backbone"]
    return out
