"""LeNet-5, from "Gradient-Based Learning Applied to Document Recognition" (LeCun, Bottou,
Bengio, Haffner; Proc. IEEE 1998), in the common modern MNIST form.

========  ==================================  ====================
layer     operation                           output (28x28 input)
========  ==================================  ====================
features  conv 1->6 5x5 (no padding), act     24x24x6
          max pool 2x2 /2                     12x12x6
          conv 6->16 5x5, act                 8x8x16
          max pool 2x2 /2                     4x4x16
classifier  FC 256->120, act                  120
          FC 120->84, act                     84
          FC 84->num_classes                  num_classes
========  ==================================  ====================

Parameters: 156 + 2,416 + 30,840 + 10,164 + 850 = 44,426 for 10 classes. Departures from
the 1998 paper, as in most modern reimplementations: 28x28 MNIST digits are used unpadded
(the paper pads them to 32x32, giving a 5x5x16 map and a 400-input C5), C3 connects every
input map (the paper's sparse connection table has 1,516 weights), subsampling is max
pooling without trainable coefficients, the output is a plain dense layer (not RBF units),
and the activation is ReLU by default (``activation="tanh"`` for the paper's squashing
non-linearity, without its 1.7159 scale).

Flax module names follow a PyTorch ``nn.Sequential`` port (``features.0``, ``features.3``,
``classifier.0``, ``classifier.2``, ``classifier.4``), so such a ``state_dict`` converts with
:func:`jaxvision.weights.convert.convert_state_dict`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision import checks
from jaxvision.models import layers
from jaxvision.models.convolutionize import ConvolutionizeSpec
from jaxvision.models.layers import check_flatten_shape  # noqa: F401  (re-exported)
from jaxvision.models.registry import register_model

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"relu": nn.relu, "tanh": jnp.tanh}


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation called ``name`` (``"relu"`` or ``"tanh"``); clear error otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of "
                         f"{', '.join(sorted(ACTIVATIONS))}") from None


class LeNet5(nn.Module):
    """LeNet-5: ``images: [N, 28, 28, 1] float32 -> logits [N, num_classes]``.

    Attributes:
      num_classes: output size of the last dense layer.
      activation: ``"relu"`` (default) or ``"tanh"``.
      dtype: computation dtype.
      param_dtype: parameter dtype.

    ``features`` is the conv stack (``[N, H, W, 1] -> [N, h, w, 16]``, any ``H, W >= 16``);
    the classifier needs the 4x4x16 map of a 28x28 (or 29x29) input.
    """

    num_classes: int = 10
    activation: str = "relu"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    default_input_shape: ClassVar[tuple[int, int, int]] = (28, 28, 1)
    # Where the conv stack ends, for convolutionize (dense -> conv) and weight conversion:
    # the dense layers in order; the first is fed by the NCHW flatten of a (C, H, W) map.
    dense_names: ClassVar[tuple[str, ...]] = ("classifier.0", "classifier.2", "classifier.4")
    adaptive_pool: ClassVar[tuple[int, int] | None] = None
    torch_flatten_shapes: ClassVar[dict[str, tuple[int, int, int]]] = {
        "classifier.0": (16, 4, 4)}

    @property
    def convolutionize_spec(self) -> ConvolutionizeSpec:
        """The dense layers (and activation) that :func:`convolutionize` turns into convs."""
        return ConvolutionizeSpec(dense=self.dense_names,
                                  activation=activation_fn(self.activation))

    @nn.compact
    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The conv stack: ``[N, H, W, 1] float -> [N, (H-12)//4, (W-12)//4, 16]``."""
        del train  # no dropout or BatchNorm in the conv stack
        # Smallest input giving a 1x1 map: 1 -> pool 2 -> conv 5 -> pool 2 -> conv 5 = 16.
        checks.check_images(x, model="lenet5", channels=1, min_size=16)
        act = activation_fn(self.activation)
        x = x.astype(self.dtype)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = act(layers.conv2d(6, 5, name="features.0", **kw)(x))
        x = layers.max_pool(x, 2, 2)
        x = act(layers.conv2d(16, 5, name="features.3", **kw)(x))
        return layers.max_pool(x, 2, 2)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``images: [N, 28, 28, 1] float -> logits [N, num_classes]`` in ``dtype``."""
        x = self.features(x, train=train)
        layers.check_flatten_shape(x, self.torch_flatten_shapes[self.dense_names[0]], "lenet5",
                            self.default_input_shape)
        act = activation_fn(self.activation)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = layers.flatten_nchw(x)
        x = act(nn.Dense(120, name="classifier.0", **kw)(x))
        x = act(nn.Dense(84, name="classifier.2", **kw)(x))
        return nn.Dense(self.num_classes, name="classifier.4", **kw)(x)


@register_model
def lenet5(**kwargs: Any) -> LeNet5:
    """LeNet-5 for 28x28 grayscale digits (MNIST), 44,426 parameters with 10 classes.

    Keyword arguments are :class:`LeNet5` fields (``num_classes``, ``activation``, ``dtype``,
    ``param_dtype``).
    """
    return LeNet5(**kwargs)
