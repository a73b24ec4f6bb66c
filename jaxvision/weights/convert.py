"""Conversion of torchvision ``state_dict`` s into Flax variables.

The zoo names every Flax module after the dotted path of its torchvision counterpart
(see :mod:`jaxvision.models.layers`), so the conversion is generic:

=====================  =======================  ===================================
Flax variable          torch key                transform
=====================  =======================  ===================================
``params/a.b/kernel``  ``a.b.weight`` (4-D)     OIHW -> HWIO, ``transpose(2, 3, 1, 0)``
``params/a.b/kernel``  ``a.b.weight`` (2-D)     (out, in) -> (in, out)
``params/a.b/scale``   ``a.b.weight``           none (BatchNorm / LayerNorm scale)
``params/a.b/bias``    ``a.b.bias``             none
``batch_stats/.../mean``  ``running_mean``      none
``batch_stats/.../var``   ``running_var``       none
=====================  =======================  ===================================

A dense layer fed by a torch ``flatten`` of an NCHW map sees its inputs in (C, H, W) order;
a model lists those layers in its ``torch_flatten_shapes`` class attribute
(``{"classifier.1": (256, 6, 6)}``) and their rows are permuted to our (H, W, C) order here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

_LEAF_TO_TORCH = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
_IGNORED_SUFFIXES = ("num_batches_tracked",)


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model: lists missing, unexpected and mis-shaped keys.

    Attributes:
      missing: the model's variables the checkpoint lacks (empty for a plain message).
      unexpected: the checkpoint's entries the model has no variable for.
      wrong_shape: entries present on both sides with different shapes.
    """

    def __init__(self, message: str, missing: Sequence[str] = (),
                 unexpected: Sequence[str] = (), wrong_shape: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.wrong_shape = list(wrong_shape)


def check_fit(subject: str, missing: Sequence[str], unexpected: Sequence[str],
              wrong_shape: Sequence[str]) -> None:
    """Raises one :class:`CheckpointMismatchError` listing every key that does not fit.

    The one report of a mismatch, for torch ``state_dict`` s and converted Flax files alike:
    a user fixing a checkpoint wants every bad key at once, not the first.

    Args:
      subject: what does not fit, e.g. ``"checkpoint does not fit the model"``.
      missing, unexpected, wrong_shape: descriptions of the offending keys.
    """
    if not (missing or unexpected or wrong_shape):
        return
    parts = [f"{label} ({len(keys)}): " + "; ".join(keys) for label, keys in (
        ("missing from the checkpoint", missing), ("not in the model", unexpected),
        ("wrong shape", wrong_shape)) if keys]
    raise CheckpointMismatchError(f"{subject}: " + " | ".join(parts), missing, unexpected,
                                  wrong_shape)


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like as a numpy array."""
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def torch_key(collection: str, path: tuple[str, ...]) -> str:
    """The torchvision ``state_dict`` key of the Flax variable ``collection/path``."""
    leaf = _LEAF_TO_TORCH.get((collection, path[-1]), path[-1])
    return ".".join((*path[:-1], leaf))


def _to_flax_layout(
    value: np.ndarray, flax_leaf: str, target_shape: tuple[int, ...],
    flatten_chw: tuple[int, int, int] | None,
) -> np.ndarray:
    if flax_leaf == "kernel" and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if flax_leaf == "kernel" and value.ndim == 2:
        if flatten_chw is not None:
            c, h, w = flatten_chw
            out = value.shape[0]
            if c * h * w != value.shape[1]:
                raise CheckpointMismatchError(
                    f"flatten shape {flatten_chw} does not match the {value.shape[1]} inputs "
                    "of the dense layer")
            value = value.reshape(out, c, h, w).transpose(0, 2, 3, 1).reshape(out, -1)
        return value.T
    return value


def torch_to_flax(
    template: Mapping[str, Any],
    state_dict: Mapping[str, Any],
    torch_flatten_shapes: Mapping[str, tuple[int, int, int]] | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Fills a Flax variable tree of the template's structure from a torch ``state_dict``.

    Args:
      template: Flax variables (or their ``ShapeDtypeStruct`` s from ``jax.eval_shape``),
        ``{"params": ..., "batch_stats": ...}``.
      state_dict: torch key -> tensor or array (torch tensors need no torch import here).
      torch_flatten_shapes: dense layers fed by an NCHW flatten, torch module path ->
        ``(C, H, W)``.
      strict: raise on keys of ``state_dict`` that the model has no variable for. Missing
        keys and wrong shapes always raise (except with ``strict=False``, where variables
        absent from ``state_dict`` are left out of the result; used for gradient trees).

    Returns:
      Variables with the template's structure, as float32 numpy arrays in the template's
      dtype.

    Raises:
      CheckpointMismatchError: listing every missing, unexpected or mis-shaped key.
    """
    flatten = dict(torch_flatten_shapes or {})
    sd = {k: v for k, v in state_dict.items() if not k.endswith(_IGNORED_SUFFIXES)}
    out: dict[tuple[str, ...], np.ndarray] = {}
    missing, wrong_shape, used = [], [], set()
    for path, leaf in traverse_util.flatten_dict(dict(template)).items():
        collection, var_path = path[0], tuple(str(p) for p in path[1:])
        key = torch_key(collection, var_path)
        if key not in sd:
            if strict:
                missing.append(f"{key} (for {'/'.join(path)}, shape {tuple(leaf.shape)})")
            continue
        used.add(key)
        value = to_numpy(sd[key])
        module_path = ".".join(var_path[:-1])
        value = _to_flax_layout(value, var_path[-1], tuple(leaf.shape),
                                flatten.get(module_path))
        if tuple(value.shape) != tuple(leaf.shape):
            wrong_shape.append(f"{key}: checkpoint {tuple(to_numpy(sd[key]).shape)} -> "
                               f"{tuple(value.shape)}, model expects {tuple(leaf.shape)}")
            continue
        out[path] = value.astype(np.dtype(leaf.dtype))
    unexpected = sorted(set(sd) - used) if strict else []
    check_fit("checkpoint does not fit the model", missing, unexpected, wrong_shape)
    return traverse_util.unflatten_dict(out)


def variable_shapes(module: nn.Module, input_shape: tuple[int, int, int] | None = None) -> Any:
    """Abstract variables of ``module`` (all of them, aux heads included) without compute.

    Initializes in training mode so that heads used only in training (GoogLeNet's and
    Inception's auxiliary classifiers) get their variables.
    """
    shape = input_shape or getattr(module, "default_input_shape", (224, 224, 3))
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    key = jax.random.key(0)
    return jax.eval_shape(
        lambda x: module.init({"params": key, "dropout": key}, x, train=True), x)


def convert_state_dict(module: nn.Module, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Converts a torchvision ``state_dict`` for the given zoo module into its variables.

    Returns ``{"params": ..., "batch_stats": ...}`` (``batch_stats`` only for models with
    BatchNorm) as numpy arrays, ready for ``module.apply``.
    """
    template = variable_shapes(module)
    flat = getattr(module, "torch_flatten_shapes", None) or {}
    return torch_to_flax(template, state_dict, flat)


def convert_torchvision(name: str, state_dict: Mapping[str, Any], **config: Any) -> dict:
    """Converts a torchvision ``state_dict`` for the zoo model ``name``.

    Args:
      name: a builder name, e.g. ``"resnet50"``.
      state_dict: torch key -> ``torch.Tensor`` or numpy array, as from
        ``torchvision.models.resnet50().state_dict()`` or :func:`jaxvision.weights.read`.
      **config: builder configuration; ``num_classes`` is inferred from the checkpoint
        when not given.

    Returns:
      ``{"params": ..., "batch_stats": ...}``.
    """
    from jaxvision.models import get_model, get_model_builder

    # Builders whose head layout infer_num_classes cannot read (segmentation) say themselves;
    # builders whose torchvision modules renamed keys over versions (detection) upgrade them.
    builder = get_model_builder(name)
    upgrade = getattr(builder, "upgrade_state_dict", None)
    if upgrade is not None:
        state_dict = upgrade(state_dict)
    infer = getattr(builder, "config_from_state_dict", None)
    if infer is not None:
        config = {**infer(state_dict), **config}
    if "num_classes" not in config:
        n = infer_num_classes(state_dict)
        if n is not None:
            config["num_classes"] = n
    return convert_state_dict(get_model(name, **config), state_dict)


def infer_num_classes(state_dict: Mapping[str, Any]) -> int | None:
    """The output size of the last 2-D weight in a state dict (the classifier), if any."""
    last = None
    for k, v in state_dict.items():
        if k.endswith(".weight") and len(getattr(v, "shape", ())) == 2 and "aux" not in k:
            last = v
    return None if last is None else int(last.shape[0])
