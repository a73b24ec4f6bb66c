"""The shipped experiment configs, ``jaxvision/train/configs/``: each validates and builds its
model, and none names a path of one machine."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from jaxvision.train import config as cfg

CONFIGS = Path(cfg.__file__).resolve().parent / "configs"
# An absolute path ("/work/...", "C:\\data") or a home directory ("/home/me", "/Users/me").
# Placeholders in examples ("/path/to/mnist") name no machine and pass.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~/:])(/(?!path/to\b)[A-Za-z_][\w.-]*(/[\w.-]+)*|[A-Za-z]:\\)")


def test_shipped_experiments_validate_and_build() -> None:
    names = cfg.list_experiments()
    assert {"lenet5_mnist", "resnet20_cifar10", "nin_cifar10", "alexnet_imagenet",
            "vgg16_imagenet", "resnet50_imagenet", "segnet_basic_camvid", "segnet_camvid",
            "fcn8s_camvid", "fcn_resnet50_camvid"} <= set(names)
    from jaxvision.train.state import build_model

    for name in names:
        raw = importlib.import_module(f"jaxvision.train.configs.{name}").get_config()
        if raw.data.root is None and raw.data.source != "mnist":
            # Left unset on purpose (machines differ); the command line gives it.
            raw.data.root = "some/data/dir"
        build_model(cfg.validate(raw))


def test_experiments_live_in_the_package_only() -> None:
    repo = CONFIGS.parents[2]
    assert not (repo / "experiments" / "configs").exists(), \
        "shipped configs have one place, jaxvision/train/configs/"


def _leaves(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for k, v in tree.items():
        if isinstance(v, dict):
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out += [(f"{prefix}{k}", x) for x in (v if isinstance(v, (list, tuple)) else [v])]
    return out


def test_no_shipped_config_names_a_machine_path() -> None:
    files = sorted(CONFIGS.glob("*.py"))
    assert len(files) >= 6
    found = []
    for path in files:
        text = path.read_text()
        # Source text, docstrings and comments included: a path of this machine in the
        # prose is as wrong for a reader elsewhere as one in a value.
        found += [f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
                  for m in ABSOLUTE_PATH.finditer(text)]
        ast.parse(text)  # and each is Python
    for name in cfg.list_experiments():
        values = importlib.import_module(f"jaxvision.train.configs.{name}").get_config()
        found += [f"{name}: {key}={value!r}" for key, value in _leaves(values.to_dict())
                  if isinstance(value, str) and (value.startswith(("/", "~"))
                                                 or re.match(r"[A-Za-z]:\\", value))]
    assert not found, "shipped configs name paths of one machine:\n" + "\n".join(found)


def test_machine_path_scan_finds_paths() -> None:
    """The scan above would catch what it looks for (and spare the placeholders)."""
    assert ABSOLUTE_PATH.search('config.data.root = "/work/shared/data/cifar10-jpeg"')
    assert ABSOLUTE_PATH.search("    ``/home/alice/mnist``")
    assert ABSOLUTE_PATH.search(r'root = "C:\\data"')
    assert not ABSOLUTE_PATH.search("data.root=/path/to/mnist, ~/tensorflow_datasets, a/b")
    assert not ABSOLUTE_PATH.search("learning rate 0.1 / 256 images, 1/10 at 32k")
    assert not ABSOLUTE_PATH.search("https://download.pytorch.org/models/x.pth")
