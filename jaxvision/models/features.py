"""The feature-map protocol: how a zoo model exposes its named intermediate maps.

A model that serves as a backbone (VGG, AlexNet, the ResNets) has

* ``feature_names: tuple[str, ...]``, the names of its maps from input to output, and
* ``feature_maps(x, train=False, last=None) -> dict[str, jax.Array]``, the maps in that
  order, each ``[N, h, w, C]`` in the model's dtype; with ``last`` it stops after that map
  and creates no layer beyond it (so a backbone cut at ``layer3`` has no ``layer4`` or
  ``fc`` variables, as torchvision's ``IntermediateLayerGetter`` drops them).

The names are the ones the literature uses (VGG ``conv5_3``, ``pool4``; ResNet ``layer1``
.. ``layer4``; AlexNet ``conv1`` .. ``conv5``); each family's docstring lists them.
:class:`jaxvision.models.backbone.IntermediateLayerGetter` selects and renames them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax

FeatureStream = Iterable[tuple[str, jax.Array]]


def check_feature_name(name: str | None, names: Sequence[str], model: str) -> None:
    """Raises ``ValueError`` naming the choices when ``name`` is not one of ``names``."""
    if name is not None and name not in names:
        raise ValueError(f"{model} has no feature map {name!r}; its maps are "
                         f"{', '.join(names)}")


def collect(stream: FeatureStream, names: Sequence[str], last: str | None,
            model: str) -> dict[str, jax.Array]:
    """Runs ``stream`` (``(name, map)`` pairs, in order) up to and including ``last``.

    The stream is a generator that creates the model's layers as it goes, so stopping early
    leaves the later layers out of the variables.
    """
    check_feature_name(last, names, model)
    out: dict[str, jax.Array] = {}
    for name, value in stream:
        out[name] = value
        if name == last:
            break
    return out


__all__ = ["FeatureStream", "check_feature_name", "collect"]
