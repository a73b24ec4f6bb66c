"""The layout of a training workdir, in one place.

    <workdir>/config.json       the resolved config of the run (what eval and predict rebuild)
    <workdir>/classes.json      class names in label order, when the data knows them
    <workdir>/input_shape.json  [H, W, C] of the network input (the parameters' shapes may
                                depend on it; eval and predict rebuild the model with it)
    <workdir>/metrics.jsonl     one JSON object per metric write (see writers.py)
    <workdir>/tensorboard/      TensorBoard event files
    <workdir>/images/<step>/    PNGs of a few evaluation predictions (the task's images)
    <workdir>/checkpoints/<step>/{state,loader}   orbax checkpoints (see checkpoint.py)

Every module that reads or writes one of these goes through the functions here.
"""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections

CONFIG = "config.json"
CLASSES = "classes.json"
INPUT_SHAPE = "input_shape.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
IMAGES = "images"
CHECKPOINTS = "checkpoints"


def config_path(workdir: str | Path) -> Path:
    return Path(workdir) / CONFIG


def classes_path(workdir: str | Path) -> Path:
    return Path(workdir) / CLASSES


def metrics_path(workdir: str | Path) -> Path:
    return Path(workdir) / METRICS


def tensorboard_dir(workdir: str | Path) -> Path:
    return Path(workdir) / TENSORBOARD


def images_dir(workdir: str | Path, step: int) -> Path:
    return Path(workdir) / IMAGES / str(int(step))


def checkpoint_dir(workdir: str | Path) -> Path:
    """Absolute, as orbax requires."""
    return Path(workdir).absolute() / CHECKPOINTS


def is_workdir(path: str | Path) -> bool:
    """True if ``path`` is a training workdir (it holds ``config.json``)."""
    return config_path(path).is_file()


def write_config(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    from jaxvision.train.config import to_json

    Path(workdir).mkdir(parents=True, exist_ok=True)
    config_path(workdir).write_text(to_json(config))


def read_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The config a run saved in ``workdir``; FileNotFoundError naming it if there is none."""
    from jaxvision.train.config import from_json

    path = config_path(workdir)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {workdir} is not a jaxvision training "
                                "workdir (give --config, or train first)")
    return from_json(path.read_text())


def write_classes(workdir: str | Path, names: list[str]) -> None:
    classes_path(workdir).write_text(json.dumps(names))


def read_classes(workdir: str | Path, num_classes: int) -> list[str]:
    """Names saved by training in ``classes.json`` if there are ``num_classes`` of them,
    else the indices as strings."""
    path = classes_path(workdir)
    if path.is_file():
        names = json.loads(path.read_text())
        if len(names) == num_classes:
            return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


def write_input_shape(workdir: str | Path, shape: tuple[int, int, int]) -> None:
    (Path(workdir) / INPUT_SHAPE).write_text(json.dumps([int(d) for d in shape]))


def read_input_shape(workdir: str | Path) -> tuple[int, int, int] | None:
    """The network input shape the run trained on, or None (workdirs of older versions)."""
    path = Path(workdir) / INPUT_SHAPE
    if not path.is_file():
        return None
    return tuple(json.loads(path.read_text()))  # type: ignore[return-value]
