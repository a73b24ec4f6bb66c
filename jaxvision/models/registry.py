"""Model registry: builders are registered by name, torchvision-style.

A builder is a function returning a ``flax.linen.Module``; its keyword arguments are the
model's configuration (``num_classes``, ``dtype``, ...). Family files register their
builders with :func:`register_model` and users reach them through :func:`get_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Registers ``fn`` under its ``__name__``; used as a decorator on builders."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """Returns the sorted names of all registered model builders."""
    return sorted(_MODELS)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """Returns the builder registered as ``name``; raises ``KeyError`` naming the choices."""
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(
            f"unknown model {name!r}; available models: {', '.join(list_models())}"
        ) from None


def get_model(name: str, **config: Any) -> nn.Module:
    """Builds the model registered as ``name`` with keyword configuration ``config``.

    Example::

        model = get_model("resnet50", num_classes=1000)
        variables = model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
        logits = model.apply(variables, images, train=False)  # [N, 1000]
    """
    return get_model_builder(name)(**config)
