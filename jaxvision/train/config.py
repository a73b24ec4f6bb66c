"""Experiment configs: a schema, validation, loading by name or path, command-line overrides.

An experiment is a Python file whose ``get_config()`` returns an
``ml_collections.ConfigDict`` (as in Flax's ``examples/imagenet/configs``). The shipped
experiments live in :mod:`jaxvision.train.configs` (so an installed package finds them);
``experiments/configs/`` in the repository re-exports them for readers.

Every key a config may hold is declared once in :data:`SCHEMA` with its type, default and
allowed values; :func:`validate` rejects unknown keys and bad values with an error that
names the key and what is allowed. Overrides on the command line are ``key=value`` pairs
(``optimizer.learning_rate=0.05``) or the equivalent ``--config.key=value`` flags; values are
parsed as Python literals (``0.1``, ``[32000, 48000]``, ``None``, ``True``) and otherwise kept
as strings, then coerced to the key's declared type.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import importlib.util
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import ml_collections

DEFAULT_EXPERIMENT = "lenet5_mnist"


class ConfigError(ValueError):
    """A config key is unknown or has a value outside what the schema allows."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One config key: its type, default, and a check on its value.

    ``kind`` is one of ``int``, ``float``, ``bool``, ``str``, ``int_list``, ``float_list``,
    ``str_list``, ``dict``; ``optional`` allows ``None``; ``choices`` restricts the value;
    ``check``/``expect`` is an extra predicate and its description for error messages.
    """

    kind: str
    default: Any
    help: str
    optional: bool = False
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    expect: str = ""


def _pos(x: float) -> bool:
    return x > 0


def _nonneg(x: float) -> bool:
    return x >= 0


def _unit(x: float) -> bool:
    return 0 <= x < 1


SCHEMA: dict[str, Field] = {
    # -- model ---------------------------------------------------------------------------
    "model.name": Field("str", "lenet5", "registered model builder (jaxvision.models)"),
    "model.num_classes": Field("int", 10, "number of output classes", check=_pos, expect="> 0"),
    "model.dtype": Field("str", "float32", "compute dtype; parameters stay float32",
                         choices=("float32", "bfloat16")),
    "model.kwargs": Field("dict", {}, "extra keyword arguments for the model builder"),
    "model.init_from": Field("str", None, "initialise parameters from a training workdir's "
                             "checkpoint, or from torchvision weights ('torchvision:NAME' or "
                             "'torchvision:NAME:FILE.pth'); None = random init", optional=True),
    "model.init_from_target": Field("str", None, "'/'-separated path of the submodule whose "
                                    "variables receive the loaded ones (e.g. 'backbone'); "
                                    "None = the whole model", optional=True),
    # -- task ----------------------------------------------------------------------------
    "task.name": Field("str", "classification", "what the model learns: its batch fields, "
                       "loss, evaluators and predictions (jaxvision.train.tasks)",
                       choices=("classification", "localization")),
    # -- data ----------------------------------------------------------------------------
    "data.source": Field("str", "mnist", "where examples come from",
                         choices=("mnist", "image_folder", "tfds", "voc", "coco",
                                  "segmentation_folder")),
    "data.root": Field("str", None, "mnist: IDX directory (None = embedded subset); "
                       "image_folder: directory with <split>/<class>/*.jpg", optional=True),
    "data.tfds_name": Field("str", None, "TFDS dataset name (source=tfds)", optional=True),
    "data.train_split": Field("str", "train", "split used for training"),
    "data.eval_split": Field("str", "test", "split used for evaluation"),
    "data.image_size": Field("int", None, "side of the (square) network input; None = the "
                             "stored image size", optional=True, check=_pos, expect="> 0"),
    "data.load_size": Field("int", None, "resize every image to load_size x load_size when "
                            "loading (variable-size data such as ImageNet); the network input "
                            "data.image_size is cropped from it", optional=True, check=_pos,
                            expect="> 0"),
    "data.mean": Field("float_list", [0.0], "per-channel mean in [0, 1] units"),
    "data.std": Field("float_list", [1.0], "per-channel std in [0, 1] units",
                      check=lambda v: all(s > 0 for s in v), expect="all > 0"),
    "data.grayscale": Field("bool", False, "image_folder: decode to one channel (else RGB)"),
    "data.on_error": Field("str", "raise", "image_folder: an undecodable file raises naming "
                           "it ('raise'), or is replaced by the next good file and counted "
                           "('skip')", choices=("raise", "skip")),
    "data.max_boxes": Field("int", 100, "dense tasks: boxes per image padded to this fixed "
                            "count (with a validity mask)", check=_pos, expect="> 0"),
    "data.classes": Field("str_list", None, "dense tasks: class names in label order "
                          "(None = collected from the training annotations, sorted)",
                          optional=True),
    "data.ignore_index": Field("int", 255, "segmentation: label value ignored by the loss "
                               "and the metrics", check=_nonneg, expect=">= 0"),
    "data.worker_count": Field("int", 0, "host threads decoding images", check=_nonneg,
                               expect=">= 0"),
    # -- augmentation (on device, inside the jitted train step) ---------------------------
    "augment.crop_padding": Field("int", 0, "zero-pad then random crop back (0 = off)",
                                  check=_nonneg, expect=">= 0"),
    "augment.flip": Field("bool", False, "random horizontal flip"),
    "augment.random_resized_crop": Field("bool", False, "Inception-style random resized crop"),
    "augment.eval_ten_crop": Field("bool", False, "evaluate on AlexNet's 10 crops (corners, "
                                   "centre, mirrored), softmax averaged; else a center crop"),
    "augment.pca_noise": Field("float", 0.0, "AlexNet PCA colour noise std (0 = off)",
                               check=_nonneg, expect=">= 0"),
    # -- optimizer -----------------------------------------------------------------------
    "optimizer.name": Field("str", "sgd", "optimizer", choices=("sgd", "adamw")),
    "optimizer.learning_rate": Field("float", 0.1, "peak learning rate", check=_pos,
                                     expect="> 0"),
    "optimizer.momentum": Field("float", 0.9, "SGD momentum", check=_unit, expect="in [0, 1)"),
    "optimizer.nesterov": Field("bool", False, "Nesterov momentum (SGD)"),
    "optimizer.b1": Field("float", 0.9, "AdamW beta1", check=_unit, expect="in [0, 1)"),
    "optimizer.b2": Field("float", 0.999, "AdamW beta2", check=_unit, expect="in [0, 1)"),
    "optimizer.eps": Field("float", 1e-8, "AdamW epsilon", check=_pos, expect="> 0"),
    "optimizer.weight_decay": Field("float", 0.0, "weight decay (SGD: coupled, torch-style; "
                                    "AdamW: decoupled)", check=_nonneg, expect=">= 0"),
    "optimizer.decay_norm_and_bias": Field("bool", False, "also decay biases and norm params"),
    "optimizer.frozen": Field("str_list", [], "regular expressions over '/'-joined parameter "
                              "paths (e.g. 'backbone/.*'); matching parameters are kept fixed"),
    "optimizer.grad_clip_norm": Field("float", None, "clip the global gradient norm",
                                      optional=True, check=_pos, expect="> 0"),
    # -- learning-rate schedule ----------------------------------------------------------
    "schedule.name": Field("str", "constant", "learning-rate schedule",
                           choices=("constant", "step", "cosine")),
    "schedule.boundaries": Field("int_list", [], "step schedule: steps where the rate is "
                                 "multiplied by decay_factor",
                                 check=lambda v: list(v) == sorted(v) and all(b > 0 for b in v),
                                 expect="increasing positive steps"),
    "schedule.decay_factor": Field("float", 0.1, "step schedule: multiplier at each boundary",
                                   check=_pos, expect="> 0"),
    "schedule.warmup_steps": Field("int", 0, "linear warmup from 0 over this many steps",
                                   check=_nonneg, expect=">= 0"),
    "schedule.end_factor": Field("float", 0.0, "cosine: final rate as a fraction of the peak",
                                 check=_nonneg, expect=">= 0"),
    # -- training ------------------------------------------------------------------------
    "seed": Field("int", 0, "seed for initialisation, shuffling and augmentation"),
    "batch_size": Field("int", 128, "global batch size (all devices, all processes)",
                        check=_pos, expect="> 0"),
    "num_train_steps": Field("int", None, "total optimizer steps (overrides num_epochs)",
                             optional=True, check=_pos, expect="> 0"),
    "num_epochs": Field("float", 10.0, "training length in epochs of the train split",
                        optional=True, check=_pos, expect="> 0"),
    "label_smoothing": Field("float", 0.0, "label smoothing epsilon", check=_unit,
                             expect="in [0, 1)"),
    # -- evaluation, logging, checkpoints ------------------------------------------------
    "eval_batch_size": Field("int", 500, "global evaluation batch size", check=_pos,
                             expect="> 0"),
    "eval_every_steps": Field("int", None, "evaluate every N steps (None = once per epoch)",
                              optional=True, check=_pos, expect="> 0"),
    "log_every_steps": Field("int", 50, "write train metrics every N steps", check=_pos,
                             expect="> 0"),
    "progress_bar": Field("bool", True, "show a tqdm progress bar (process 0)"),
    "tensorboard": Field("bool", True, "also write TensorBoard event files (tensorboardX)"),
    "checkpoint.every_steps": Field("int", None, "save every N steps (None = at each eval)",
                                    optional=True, check=_pos, expect="> 0"),
    "checkpoint.keep": Field("int", 2, "how many of the latest checkpoints to keep",
                             check=_pos, expect="> 0"),
    "checkpoint.keep_best": Field("int", 1, "also keep the N best by checkpoint.best_metric",
                                  check=_nonneg, expect=">= 0"),
    "checkpoint.best_metric": Field("str", "eval_top1", "metric ranking checkpoints",
                                    choices=("eval_top1", "eval_top5", "eval_loss")),
    "checkpoint.async_save": Field("bool", True, "write checkpoints in a background thread"),
}


def default_config() -> ml_collections.ConfigDict:
    """Returns a ConfigDict holding every key of :data:`SCHEMA` at its default."""
    tree: dict[str, Any] = {}
    for key, field in SCHEMA.items():
        node = tree
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = _copy(field.default)
    # Optional keys default to None; ConfigDict needs their type declared to accept a
    # later assignment of a value, so allow them to change type freely.
    return ml_collections.ConfigDict(tree, type_safe=False)


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value)) if isinstance(value, (list, dict)) else value


def flatten(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """``{"optimizer": {"name": "sgd"}}`` -> ``{"optimizer.name": "sgd"}`` (dict values whose
    schema kind is ``dict`` stay whole)."""
    raw = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    out: dict[str, Any] = {}

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and not (key in SCHEMA and SCHEMA[key].kind == "dict"):
                walk(v, key + ".")
            else:
                out[key] = v

    walk(raw, "")
    return out


def _unknown_key_error(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, SCHEMA.keys(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    group = key.split(".")[0]
    same_group = [k for k in SCHEMA if k.startswith(group + ".")]
    allowed = same_group if same_group else sorted({k.split(".")[0] for k in SCHEMA})
    return ConfigError(f"unknown config key {key!r}{hint} (allowed "
                       f"{'keys under ' + group if same_group else 'top-level keys'}: "
                       f"{', '.join(allowed)})")


def coerce(key: str, value: Any) -> Any:
    """Checks ``value`` against the schema of ``key`` and returns it in the declared type.

    Raises :class:`ConfigError` naming the key, the value and what is allowed.
    """
    if key not in SCHEMA:
        raise _unknown_key_error(key)
    f = SCHEMA[key]

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"config key {key!r} = {value!r} is invalid: expected {expected} "
                           f"({f.help})")

    if value is None:
        if f.optional:
            return None
        raise bad(f"a {f.kind}, not None")
    kind = f.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("True or False")
        out: Any = value
    elif kind == "int":
        if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise bad("an integer")
        out = int(value)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            raise bad("a finite number")
        out = float(value)
    elif kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        out = value
    elif kind in ("int_list", "float_list"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad("a list of numbers")
        elem = "int" if kind == "int_list" else "float"
        try:
            out = [_scalar(elem, v) for v in value]
        except (TypeError, ValueError):
            raise bad(f"a list of {elem}s") from None
    elif kind == "str_list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        out = list(value)
    elif kind == "dict":
        if not isinstance(value, dict):
            raise bad("a dict")
        out = dict(value)
    else:  # pragma: no cover - schema bug
        raise AssertionError(kind)
    if f.choices is not None and out not in f.choices:
        raise bad("one of " + ", ".join(repr(c) for c in f.choices))
    if f.check is not None and not f.check(out):
        raise bad(f.expect)
    return out


def _scalar(kind: str, v: Any) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(v)
    if kind == "int":
        if isinstance(v, float) and not v.is_integer():
            raise ValueError(v)
        return int(v)
    return float(v)


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every key and value of ``config`` and the rules that tie keys together.

    Returns a new, complete ConfigDict (missing keys take their defaults, values are in
    their declared types). Raises :class:`ConfigError` on the first problem found.
    """
    flat = flatten(config)
    out = default_config()
    for key, value in flat.items():
        _set(out, key, coerce(key, value))
    if out.num_train_steps is None and out.num_epochs is None:
        raise ConfigError("set num_train_steps or num_epochs (both are None)")
    if len(out.data.mean) != len(out.data.std):
        raise ConfigError(f"data.mean has {len(out.data.mean)} values but data.std has "
                          f"{len(out.data.std)}; give one per channel")
    if out.schedule.name != "step" and out.schedule.boundaries:
        raise ConfigError(f"schedule.boundaries is set but schedule.name is "
                          f"{out.schedule.name!r}; boundaries need schedule.name='step'")
    if out.data.source == "tfds" and not out.data.tfds_name:
        raise ConfigError("data.source='tfds' needs data.tfds_name (e.g. 'imagenet2012')")
    if out.data.source == "image_folder" and not out.data.root:
        raise ConfigError("data.source='image_folder' needs data.root (a directory with "
                          "<split>/<class>/ image folders)")
    if out.data.grayscale and out.data.source != "image_folder":
        raise ConfigError("data.grayscale applies to data.source='image_folder' only")
    if out.data.load_size is not None and out.data.source == "mnist":
        raise ConfigError("data.load_size is for image_folder and tfds sources; MNIST images "
                          "are all 28x28 (set data.load_size=None)")
    if (out.data.load_size is not None and out.data.image_size is not None
            and out.data.load_size < out.data.image_size):
        raise ConfigError(f"data.load_size={out.data.load_size} is smaller than "
                          f"data.image_size={out.data.image_size}; the network input is "
                          "cropped from the loaded image, so load_size must be >= image_size")
    from jaxvision.models import list_models  # the registry fills on import

    if out.model.name not in list_models():
        raise ConfigError(f"config key 'model.name' = {out.model.name!r} is not a registered "
                          f"model; available: {', '.join(list_models())}")
    return out


def _set(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[leaf] = value


def parse_value(text: str) -> Any:
    """Parses an override's value: a Python literal if it is one, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["batch_size=64", "--config.optimizer.name=adamw"]`` -> ``{"batch_size": 64, ...}``.

    Raises :class:`ConfigError` for an item that is not ``key=value`` or names an unknown key.
    """
    out: dict[str, Any] = {}
    for item in items:
        text = item[len("--config."):] if item.startswith("--config.") else item
        if "=" not in text or text.startswith("-"):
            raise ConfigError(f"override {item!r} is not of the form key=value or "
                              f"--config.key=value (e.g. optimizer.learning_rate=0.05)")
        key, value = text.split("=", 1)
        key = key.strip()
        if key not in SCHEMA:
            raise _unknown_key_error(key)
        out[key] = parse_value(value)
    return out


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: dict[str, Any] | Sequence[str]) -> ml_collections.ConfigDict:
    """Returns a validated copy of ``config`` with ``overrides`` (a dict of dotted keys, or
    ``key=value`` strings) applied."""
    if not isinstance(overrides, dict):
        overrides = parse_overrides(overrides)
    out = validate(config)
    for key, value in overrides.items():
        _set(out, key, coerce(key, value))
    return validate(out)


def list_experiments() -> list[str]:
    """Names of the experiments shipped in :mod:`jaxvision.train.configs`."""
    folder = Path(__file__).parent / "configs"
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def load_config(name_or_path: str | None = None,
                overrides: dict[str, Any] | Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Loads an experiment, applies overrides and validates.

    Args:
      name_or_path: a shipped experiment name (``"resnet20_cifar10"``; see
        :func:`list_experiments`), or a path to a Python file defining ``get_config()``.
        ``None`` selects :data:`DEFAULT_EXPERIMENT`.
      overrides: ``{"optimizer.learning_rate": 0.05}`` or ``["optimizer.learning_rate=0.05"]``.
    """
    name_or_path = name_or_path or DEFAULT_EXPERIMENT
    path = Path(name_or_path)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"_jaxvision_config_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    elif name_or_path in list_experiments():
        module = importlib.import_module(f"jaxvision.train.configs.{name_or_path}")
    else:
        raise ConfigError(f"unknown experiment {name_or_path!r}: not a file, and not one of "
                          f"{', '.join(list_experiments())}")
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config {name_or_path!r} defines no get_config()")
    return apply_overrides(module.get_config(), overrides)


def to_json(config: ml_collections.ConfigDict) -> str:
    """The config as JSON (what :func:`from_json` reads back), saved in each workdir."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
    """Reads a config written by :func:`to_json` and validates it."""
    return validate(ml_collections.ConfigDict(json.loads(text)))
