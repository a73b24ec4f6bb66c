"""Experiment configs on ``ml_collections``: typed defaults, locking, checks, overrides.

An experiment is a Python file whose ``get_config()`` returns an
``ml_collections.ConfigDict`` (as in Flax's ``examples/imagenet/configs``); the shipped ones
live in :mod:`jaxvision.train.configs`, the one place for them.

Every key is declared once in :data:`KEYS` with its default and help. Types are
ml_collections': a key's type is its default's, and a key that may be unset is a typed
``placeholder`` (``placeholder(int)``), so assigning a string to ``batch_size`` fails the way
ml_collections fails. Each task has its own section (``classification.*``,
``localization.*``, ...). :func:`validate` runs once per config: it applies the user's values
onto a fresh, *locked* default config (an unknown key is refused with a did-you-mean list),
checks values and the rules that tie keys together, and returns the locked result; code that
receives a locked config trusts it (:func:`ensure_valid`).

Overrides on the command line are ``key=value`` pairs (``optimizer.learning_rate=0.05``) or
``--config.key=value`` flags; values are parsed as Python literals (``0.1``, ``[32000,
48000]``, ``None``, ``True``), otherwise kept as strings.
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
from ml_collections.config_dict import FieldReference, placeholder

DEFAULT_EXPERIMENT = "lenet5_mnist"


class ConfigError(ValueError):
    """A config key is unknown or has a value outside what it allows."""


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key: its default (whose type is the key's type; a ``placeholder(T)`` for a
    key that may stay unset), a help line, and optional constraints.

    ``choices`` restricts the value; ``check``/``expect`` is a predicate and its wording for
    error messages; ``item`` is the element type of a list-valued key.
    """

    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    expect: str = ""
    item: type | None = None

    @property
    def optional(self) -> bool:
        return isinstance(self.default, FieldReference)

    @property
    def type(self) -> type:
        return self.default.get_type() if self.optional else type(self.default)


def _pos(x: float) -> bool:
    return x > 0


def _nonneg(x: float) -> bool:
    return x >= 0


def _unit(x: float) -> bool:
    return 0 <= x < 1


POS, NONNEG, UNIT = (_pos, "> 0"), (_nonneg, ">= 0"), (_unit, "in [0, 1)")


def _k(default: Any, help: str, rule: tuple[Callable, str] | None = None,
       **kw: Any) -> Key:
    if rule is not None:
        kw.update(check=rule[0], expect=rule[1])
    return Key(default, help, **kw)


#: Every key of a config: its default, help and constraints. Sections group them; each task
#: has its own (``classification``, ``localization``).
KEYS: dict[str, Key] = {
    # -- model ---------------------------------------------------------------------------
    "model.name": _k("lenet5", "registered model builder (jaxvision.models)"),
    "model.num_classes": _k(10, "number of output classes", POS),
    "model.dtype": _k("float32", "compute dtype; parameters stay float32",
                      choices=("float32", "bfloat16")),
    "model.kwargs": _k({}, "extra keyword arguments for the model builder"),
    "model.init_from": _k(placeholder(str), "initialise parameters from a training workdir's "
                          "checkpoint, or from torchvision weights ('torchvision:NAME' or "
                          "'torchvision:NAME:FILE.pth'); None = random init"),
    "model.init_from_target": _k(placeholder(str), "'/'-separated path of the submodule whose "
                                 "variables receive the loaded ones (e.g. 'backbone'); None = "
                                 "the whole model"),
    "model.init_from_skip": _k([], "regular expressions over '/'-joined paths of "
                               "model.init_from's variables that are not loaded (e.g. a head "
                               "of another shape)", item=str),
    # -- task ----------------------------------------------------------------------------
    "task.name": _k("classification", "what the model learns: its batch fields, loss, "
                    "evaluators and predictions (jaxvision.train.tasks)",
                    choices=("classification", "localization", "segmentation", "detection")),
    # -- classification (task.name='classification'; also localization's class loss) ---
    "classification.label_smoothing": _k(0.0, "label smoothing epsilon", UNIT),
    # -- localization (task.name='localization'; jaxvision.train.tasks.localization) -----
    "localization.attach": _k("features", "where the regression head reads: the flattened "
                              "conv map ('features', OverFeat/VGG) or the last hidden dense "
                              "layer ('classifier', DeepPose/R-CNN)",
                              choices=("features", "classifier")),
    "localization.hidden": _k([256], "widths of the regression head's hidden layers",
                              item=int),
    "localization.per_class": _k(False, "one regression per class (R-CNN) instead of "
                                 "class-agnostic"),
    "localization.target": _k("boxes", "what is regressed: the first box of batch['boxes'], "
                              "or batch['keypoints'] [K, 2] (x, y) pixels",
                              choices=("boxes", "keypoints")),
    "localization.num_keypoints": _k(3, "K for target='keypoints'", POS),
    "localization.box_encoding": _k("cxcywh", "box target over the image size: (cx, cy, w, "
                                    "h) or (x1, y1, x2, y2)", choices=("cxcywh", "xyxy")),
    "localization.target_mean": _k(placeholder(list), "standardise the regression targets: "
                                   "(t - mean) / std per coordinate (training-set statistics, "
                                   "jaxvision.localization.TargetScaler); None = raw targets",
                                   item=float),
    "localization.target_std": _k(placeholder(list), "see localization.target_mean",
                                  item=float),
    "localization.loss": _k("l2", "regression loss, summed over coordinates",
                            choices=("l2", "smooth_l1")),
    "localization.class_weight": _k(1.0, "weight of the cross-entropy (0: train the regressor "
                                    "alone)", NONNEG),
    "localization.box_weight": _k(1.0, "weight of the regression loss (0: train the "
                                  "classifier alone)", NONNEG),
    "localization.iou_threshold": _k(0.5, "ILSVRC: a box is right at IoU >= this", POS),
    # -- segmentation (task.name='segmentation'; jaxvision.train.tasks.segmentation) -----
    "segmentation.aux_weight": _k(0.5, "weight of the auxiliary head's loss when the model "
                                  "returns {'out', 'aux'} (torchvision's reference: 0.5)",
                                  NONNEG),
    "segmentation.class_weights": _k(placeholder(str), "per-class loss weights: None (all 1) "
                                     "or 'median_frequency' (SegNet: median(freq) / freq_c, "
                                     "from the training labels)",
                                     choices=("median_frequency",)),
    # -- detection (task.name='detection'; jaxvision.train.tasks.detection) ---------------
    "detection.proposals": _k(placeholder(str), "region proposals given with every example "
                              "(models with needs_proposals, e.g. fast_rcnn_*): "
                              "'selective_search' (OpenCV's, computed once per image and "
                              "cached); None = none", choices=("selective_search",)),
    "detection.num_proposals": _k(2000, "proposals per image, padded to this fixed count "
                                  "(selective search's best-ranked first)", POS),
    "detection.proposal_cache": _k(placeholder(str), "folder of the cached proposals (one "
                                   ".npz per image and setting; the data folder is never "
                                   "written); None = $JAXVISION_HOME/proposals, else "
                                   "~/.cache/jaxvision/proposals"),
    "detection.selective_search_mode": _k("fast", "selective search strategy ('fast': the "
                                          "R-CNN papers')", choices=("fast", "quality")),
    "detection.selective_search_size": _k(placeholder(int), "shrink images to this shorter "
                                          "side before the search (boxes are mapped back); "
                                          "None = full size", POS),
    # -- dense host-side transforms (jaxvision.data.dense_augment; segmentation) ---------
    "dense.canvas": _k(placeholder(list), "[H, W] of the fixed canvas every example is put on "
                       "(the network input); required by task.name='segmentation'",
                       (lambda v: len(v) == 2 and min(v) > 0, "two positive ints [H, W]"),
                       item=int),
    "dense.scale_range": _k([0.5, 2.0], "training scale jitter (lo, hi), times the base scale",
                            (lambda v: len(v) == 2 and 0 < v[0] <= v[1], "[lo, hi], 0 < lo "
                             "<= hi"), item=float),
    "dense.flip": _k(True, "training: random horizontal flips of image and mask"),
    "dense.crop": _k(True, "training: random crop placement (False needs scale_range[1] <= "
                     "1 and no base_size)"),
    "dense.base_size": _k(placeholder(int), "training: shorter side at scale 1 (torchvision's "
                          "recipe: 520); None = the scale fitting the image into the canvas",
                          POS),
    "dense.eval_min_size": _k(placeholder(int), "evaluation resize: shorter side (None = the "
                              "canvas's shorter side)", POS),
    "dense.eval_max_size": _k(placeholder(int), "evaluation resize: cap of the longer side "
                              "(None = the canvas's longer side)", POS),
    # -- data ----------------------------------------------------------------------------
    "data.source": _k("mnist", "where examples come from",
                      choices=("mnist", "image_folder", "tfds", "voc", "coco",
                               "segmentation_folder")),
    "data.root": _k(placeholder(str), "mnist: IDX directory (None = embedded subset); "
                    "image_folder: directory with <split>/<class>/*.jpg; voc/coco/"
                    "segmentation_folder: the data set's folder"),
    "data.tfds_name": _k(placeholder(str), "TFDS dataset name (source=tfds)"),
    "data.train_split": _k("train", "split used for training"),
    "data.eval_split": _k("test", "split used for evaluation"),
    "data.image_size": _k(placeholder(int), "side of the (square) network input; None = the "
                          "stored image size", POS),
    "data.load_size": _k(placeholder(int), "resize every image to load_size x load_size when "
                         "loading (variable-size data such as ImageNet); the network input "
                         "data.image_size is cropped from it", POS),
    "data.mean": _k([0.0], "per-channel mean in [0, 1] units", item=float),
    "data.std": _k([1.0], "per-channel std in [0, 1] units",
                   (lambda v: all(s > 0 for s in v), "all > 0"), item=float),
    "data.grayscale": _k(False, "image_folder: decode to one channel (else RGB)"),
    "data.on_error": _k("raise", "an undecodable or malformed file raises naming it "
                        "('raise'), or is skipped, counted and reported ('skip')",
                        choices=("raise", "skip")),
    "data.max_boxes": _k(100, "dense tasks: boxes per image padded to this fixed count (with a "
                         "validity mask)", POS),
    "data.classes": _k(placeholder(list), "dense tasks: class names in label order (None = "
                       "collected from the training annotations, sorted)", item=str),
    "data.ignore_index": _k(255, "segmentation: label value ignored by the loss and the "
                            "metrics", NONNEG),
    "data.masks": _k(False, "coco: also load instance masks (uint8 [max_boxes, H, W])"),
    "data.worker_count": _k(0, "host threads decoding images", NONNEG),
    # -- augmentation (on device, inside the jitted train step) ---------------------------
    "augment.crop_padding": _k(0, "zero-pad then random crop back (0 = off)", NONNEG),
    "augment.flip": _k(False, "random horizontal flip"),
    "augment.random_resized_crop": _k(False, "Inception-style random resized crop"),
    "augment.eval_ten_crop": _k(False, "evaluate on AlexNet's 10 crops (corners, centre, "
                                "mirrored), softmax averaged; else a center crop"),
    "augment.pca_noise": _k(0.0, "AlexNet PCA colour noise std (0 = off)", NONNEG),
    # -- optimizer -----------------------------------------------------------------------
    "optimizer.name": _k("sgd", "optimizer", choices=("sgd", "adamw")),
    "optimizer.learning_rate": _k(0.1, "peak learning rate", POS),
    "optimizer.momentum": _k(0.9, "SGD momentum", UNIT),
    "optimizer.nesterov": _k(False, "Nesterov momentum (SGD)"),
    "optimizer.b1": _k(0.9, "AdamW beta1", UNIT),
    "optimizer.b2": _k(0.999, "AdamW beta2", UNIT),
    "optimizer.eps": _k(1e-8, "AdamW epsilon", POS),
    "optimizer.weight_decay": _k(0.0, "weight decay (SGD: coupled, torch-style; AdamW: "
                                 "decoupled)", NONNEG),
    "optimizer.decay_norm_and_bias": _k(False, "also decay biases and norm params"),
    "optimizer.frozen": _k([], "regular expressions over '/'-joined parameter paths (e.g. "
                           "'backbone/.*'); matching parameters are kept fixed", item=str),
    "optimizer.grad_clip_norm": _k(placeholder(float), "clip the global gradient norm", POS),
    # -- learning-rate schedule ----------------------------------------------------------
    "schedule.name": _k("constant", "learning-rate schedule",
                        choices=("constant", "step", "cosine")),
    "schedule.boundaries": _k([], "step schedule: steps where the rate is multiplied by "
                              "decay_factor",
                              (lambda v: list(v) == sorted(v) and all(b > 0 for b in v),
                               "increasing positive steps"), item=int),
    "schedule.decay_factor": _k(0.1, "step schedule: multiplier at each boundary", POS),
    "schedule.warmup_steps": _k(0, "linear warmup from 0 over this many steps", NONNEG),
    "schedule.end_factor": _k(0.0, "cosine: final rate as a fraction of the peak", NONNEG),
    # -- training ------------------------------------------------------------------------
    "seed": _k(0, "seed for initialisation, shuffling and augmentation"),
    "batch_size": _k(128, "global batch size (all devices, all processes)", POS),
    "num_train_steps": _k(placeholder(int), "total optimizer steps (overrides num_epochs)", POS),
    "num_epochs": _k(FieldReference(10.0, float), "training length in epochs of the train "
                     "split (None: num_train_steps decides)", POS),
    # -- evaluation, logging, checkpoints ------------------------------------------------
    "eval_batch_size": _k(500, "global evaluation batch size", POS),
    "eval_every_steps": _k(placeholder(int), "evaluate every N steps (None = once per epoch)",
                           POS),
    "log_every_steps": _k(50, "write train metrics every N steps", POS),
    "progress_bar": _k(True, "show a tqdm progress bar (process 0)"),
    "tensorboard": _k(True, "also write TensorBoard event files (tensorboardX)"),
    "checkpoint.every_steps": _k(placeholder(int), "save every N steps (None = at each eval)",
                                 POS),
    "checkpoint.keep": _k(2, "how many of the latest checkpoints to keep", POS),
    "checkpoint.keep_best": _k(1, "also keep the N best by checkpoint.best_metric", NONNEG),
    "checkpoint.best_metric": _k("eval_top1", "metric ranking checkpoints (one the task's "
                                 "evaluators write; eval_loss ranks lowest first)",
                                 choices=("eval_top1", "eval_top5", "eval_loss",
                                          "eval_localization", "eval_mean_iou", "eval_pck",
                                          "eval_miou", "eval_pixel_acc", "eval_class_acc",
                                          "eval_map50", "eval_map50_voc07", "eval_coco_map")),
    "checkpoint.async_save": _k(True, "write checkpoints in a background thread"),
}


def _default_value(key: Key) -> Any:
    if key.optional:
        # A fresh reference per config: FieldReferences are shared when reused.
        return FieldReference(key.default.get(), key.type)
    return json.loads(json.dumps(key.default)) if isinstance(key.default, (list, dict)) \
        else key.default


def default_config() -> ml_collections.ConfigDict:
    """Every key of :data:`KEYS` at its default, unlocked (for experiment files to edit;
    ml_collections still refuses a value of the wrong type)."""
    tree: dict[str, Any] = {}
    for name, key in KEYS.items():
        node = tree
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = _default_value(key)
    return ml_collections.ConfigDict(tree)


#: Keys that moved, so that configs saved in older workdirs still load.
RENAMED = {"label_smoothing": "classification.label_smoothing"}


def flatten(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """``{"optimizer": {"name": "sgd"}}`` -> ``{"optimizer.name": "sgd"}`` (dict-valued keys
    such as ``model.kwargs`` stay whole; keys in :data:`RENAMED` under their new name)."""
    raw = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    out: dict[str, Any] = {}

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict) and not (name in KEYS and KEYS[name].type is dict):
                walk(v, name + ".")
            else:
                out[RENAMED.get(name, name)] = v

    walk(raw, "")
    return out


def _unknown_key_error(name: str) -> ConfigError:
    close = difflib.get_close_matches(name, KEYS.keys(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    group = name.split(".")[0]
    same_group = [k for k in KEYS if k.startswith(group + ".")]
    allowed = same_group if same_group else sorted({k.split(".")[0] for k in KEYS})
    return ConfigError(f"unknown config key {name!r}{hint} (allowed "
                       f"{'keys under ' + group if same_group else 'top-level keys'}: "
                       f"{', '.join(allowed)})")


_TYPE_WORDS = {int: "an integer", float: "a finite number", bool: "True or False",
               str: "a string", list: "a list", dict: "a dict"}


def _set(config: ml_collections.ConfigDict, name: str, value: Any) -> None:
    """Sets dotted ``name`` on the locked ``config``, checking ``value`` against
    :data:`KEYS`; ml_collections enforces the type. Raises :class:`ConfigError`."""
    if name not in KEYS:
        raise _unknown_key_error(name)
    key = KEYS[name]

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"config key {name!r} = {value!r} is invalid: expected {expected} "
                           f"({key.help})")

    t = key.type
    if value is None:
        if not key.optional:
            raise bad(f"{_TYPE_WORDS[t]}, not None")
    else:
        if t in (int, float) and isinstance(value, bool):
            raise bad(_TYPE_WORDS[t])  # ml_collections would take True as 1
        if t is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if t is float and isinstance(value, (int, float)) and not math.isfinite(value):
            raise bad(_TYPE_WORDS[t])
        if t is list:
            if key.item is not None and not isinstance(value, (list, tuple)):
                value = [value]  # data.mean=0.5 means [0.5]
            value = _items(key, value, bad)
        if t is dict and isinstance(value, dict):
            value = ml_collections.ConfigDict(value)
    *parents, leaf = name.split(".")
    node = config
    for p in parents:
        node = node[p]
    try:
        node[leaf] = value
    except TypeError:
        raise bad(_TYPE_WORDS.get(t, t.__name__)) from None
    if value is None:
        return
    if key.choices is not None and value not in key.choices:
        raise bad("one of " + ", ".join(repr(c) for c in key.choices))
    if key.check is not None and not key.check(value):
        raise bad(key.expect)


def _items(key: Key, value: Any, bad: Callable[[str], ConfigError]) -> list:
    if not isinstance(value, (list, tuple)):
        raise bad("a list")
    if key.item is None:
        return list(value)
    word = {int: "integers", float: "numbers", str: "strings"}[key.item]
    out = []
    for v in value:
        if key.item is str:
            ok = isinstance(v, str)
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (
                key.item is float or float(v).is_integer())
        if not ok:
            raise bad(f"a list of {word}")
        out.append(key.item(v))
    return out


def _check_rules(c: ml_collections.ConfigDict) -> None:
    """The rules that tie keys together."""
    if c.num_train_steps is None and c.num_epochs is None:
        raise ConfigError("set num_train_steps or num_epochs (both are None)")
    if len(c.data.mean) != len(c.data.std):
        raise ConfigError(f"data.mean has {len(c.data.mean)} values but data.std has "
                          f"{len(c.data.std)}; give one per channel")
    if c.schedule.name != "step" and c.schedule.boundaries:
        raise ConfigError(f"schedule.boundaries is set but schedule.name is "
                          f"{c.schedule.name!r}; boundaries need schedule.name='step'")
    if c.data.source == "tfds" and not c.data.tfds_name:
        raise ConfigError("data.source='tfds' needs data.tfds_name (e.g. 'imagenet2012')")
    if c.data.source in ("image_folder", "voc", "coco", "segmentation_folder") \
            and not c.data.root:
        raise ConfigError(f"data.source={c.data.source!r} needs data.root (the data set's "
                          "folder)")
    if c.data.grayscale and c.data.source != "image_folder":
        raise ConfigError("data.grayscale applies to data.source='image_folder' only")
    if c.data.load_size is not None and c.data.source == "mnist":
        raise ConfigError("data.load_size is for image_folder and tfds sources; MNIST images "
                          "are all 28x28 (set data.load_size=None)")
    if (c.data.load_size is not None and c.data.image_size is not None
            and c.data.load_size < c.data.image_size):
        raise ConfigError(f"data.load_size={c.data.load_size} is smaller than "
                          f"data.image_size={c.data.image_size}; the network input is "
                          "cropped from the loaded image, so load_size must be >= image_size")
    from jaxvision.models import list_models  # the registry fills on import

    if c.model.name not in list_models():
        raise ConfigError(f"config key 'model.name' = {c.model.name!r} is not a registered "
                          f"model; available: {', '.join(list_models())}")


def validate(config: ml_collections.ConfigDict | dict,
             overrides: dict[str, Any] | Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Checks ``config`` (and ``overrides`` applied on top) once and returns it complete and
    locked: missing keys take their defaults, every value has its key's type.

    Raises :class:`ConfigError` on the first problem, naming the key and what it allows.
    """
    if not isinstance(overrides, dict):
        overrides = parse_overrides(overrides)
    out = default_config()
    out.lock()
    for name, value in {**flatten(config), **overrides}.items():
        _set(out, name, value)
    _check_rules(out)
    return out


def ensure_valid(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config`` itself if :func:`validate` made it (locked), else ``validate(config)``."""
    return config if config.is_locked else validate(config)


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
        name, value = text.split("=", 1)
        name = name.strip()
        if name not in KEYS:
            raise _unknown_key_error(name)
        out[name] = parse_value(value)
    return out


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: dict[str, Any] | Sequence[str]) -> ml_collections.ConfigDict:
    """A validated, locked copy of ``config`` with ``overrides`` (a dict of dotted keys, or
    ``key=value`` strings) applied."""
    return validate(config, overrides)


def list_experiments() -> list[str]:
    """Names of the experiments shipped in :mod:`jaxvision.train.configs`."""
    folder = Path(__file__).parent / "configs"
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def load_config(name_or_path: str | None = None,
                overrides: dict[str, Any] | Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Loads an experiment, applies overrides and validates (once).

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
    try:
        raw = module.get_config()
    except TypeError as e:  # ml_collections refused a value of the wrong type
        raise ConfigError(f"config {name_or_path!r}: {e}") from None
    return validate(raw, overrides)


def describe() -> list[tuple[str, Any, str]]:
    """``(key, default, help)`` of every key, for ``jaxvision train --list-keys``."""
    return [(name, key.default.get() if key.optional else key.default, key.help)
            for name, key in KEYS.items()]


def to_json(config: ml_collections.ConfigDict) -> str:
    """The config as JSON (what :func:`from_json` reads back), saved in each workdir."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
    """Reads a config written by :func:`to_json` and validates it."""
    return validate(json.loads(text))
