"""jaxvision.train.config: schema validation, overrides, shipped experiments."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from jaxvision.train import config as cfg

REPO = Path(__file__).resolve().parents[2]


def test_defaults_validate_and_default_experiment_is_lenet5_mnist():
    c = cfg.load_config()
    assert c.model.name == "lenet5" and c.data.source == "mnist" and c.data.root is None


@pytest.mark.parametrize("items, key, expected", [
    (["optimizer.learning_rate=0.05"], ("optimizer", "learning_rate"), 0.05),
    (["--config.optimizer.name=adamw"], ("optimizer", "name"), "adamw"),
    (["schedule.name=step", "schedule.boundaries=[10, 20]"], ("schedule", "boundaries"), [10, 20]),
    (["num_train_steps=7"], ("num_train_steps",), 7),
    (["data.root=/some/dir"], ("data", "root"), "/some/dir"),
    (["data.root=None"], ("data", "root"), None),
    (["augment.flip=true"], ("augment", "flip"), True),
    (["data.mean=0.5", "data.std=0.25"], ("data", "mean"), [0.5]),
    (["num_epochs=3"], ("num_epochs",), 3.0),
])
def test_overrides_both_forms_and_coercion(items, key, expected):
    c = cfg.load_config("lenet5_mnist", items)
    node = c
    for k in key:
        node = node[k]
    assert node == expected and type(node) is type(expected)


@pytest.mark.parametrize("items, fragments", [
    (["optimizer.learning_rte=0.1"], ["optimizer.learning_rte", "did you mean",
                                      "optimizer.learning_rate"]),
    (["modle.name=x"], ["unknown config key 'modle.name'", "model.name"]),
    (["optimizer.name=rmsprop"], ["optimizer.name", "'sgd', 'adamw'"]),
    (["batch_size=0"], ["batch_size", "> 0"]),
    (["batch_size=12.5"], ["batch_size", "an integer"]),
    (["optimizer.momentum=1.5"], ["optimizer.momentum", "in [0, 1)"]),
    (["schedule.name=step", "schedule.boundaries=[20, 10]"], ["schedule.boundaries",
                                                             "increasing"]),
    (["schedule.boundaries=[10]"], ["schedule.boundaries", "schedule.name='step'"]),
    (["model.name=no_such_net"], ["model.name", "no_such_net", "lenet5"]),
    (["data.mean=[0.1, 0.2]"], ["data.mean has 2 values", "data.std has 1"]),
    (["num_train_steps=None", "num_epochs=None"], ["num_train_steps or num_epochs"]),
    (["data.source=image_folder"], ["data.root"]),
    (["flip"], ["not of the form key=value"]),
    (["augment.flip=maybe"], ["augment.flip", "True or False"]),
])
def test_bad_config_raises_naming_key_and_allowed(items, fragments):
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load_config("lenet5_mnist", items)
    for f in fragments:
        assert f in str(e.value)


def test_unknown_key_in_a_config_file(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text("from jaxvision.train.config import default_config\n"
                    "def get_config():\n"
                    "    c = default_config()\n"
                    "    c.optimizer.nesterow = True\n"
                    "    return c\n")
    with pytest.raises(cfg.ConfigError, match="optimizer.nesterow.*optimizer.nesterov"):
        cfg.load_config(str(path))


def test_unknown_experiment_lists_shipped_ones():
    with pytest.raises(cfg.ConfigError, match="lenet5_mnist"):
        cfg.load_config("no_such_experiment")


def test_json_round_trip():
    c = cfg.load_config("lenet5_mnist", ["schedule.name=step", "schedule.boundaries=[5]"])
    assert cfg.from_json(cfg.to_json(c)).to_dict() == c.to_dict()


def test_resnet20_recipe_is_he_et_al():
    c = importlib.import_module("jaxvision.train.configs.resnet20_cifar10").get_config()
    assert (c.batch_size, c.num_train_steps, c.optimizer.learning_rate) == (128, 64000, 0.1)
    assert list(c.schedule.boundaries) == [32000, 48000] and c.schedule.decay_factor == 0.1
    assert (c.optimizer.weight_decay, c.optimizer.momentum) == (1e-4, 0.9)
    assert c.augment.crop_padding == 4 and c.augment.flip


def test_validated_config_is_locked_and_validated_once():
    c = cfg.load_config("lenet5_mnist")
    assert c.is_locked
    assert cfg.ensure_valid(c) is c  # trusted, not validated again
    with pytest.raises(AttributeError, match="nesterow"):
        c.optimizer.nesterow = True  # ml_collections' lock refuses new keys
    with pytest.raises(TypeError):
        c.batch_size = "large"  # and values of the wrong type


def test_types_come_from_ml_collections_in_config_files(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text("from jaxvision.train.config import default_config\n"
                    "def get_config():\n"
                    "    c = default_config()\n"
                    "    c.batch_size = 'large'\n"
                    "    return c\n")
    with pytest.raises(cfg.ConfigError, match="exp.py.*batch_size"):
        cfg.load_config(str(path))


def test_each_task_has_its_own_section_and_old_keys_still_load():
    c = cfg.load_config("lenet5_mnist", ["classification.label_smoothing=0.1",
                                         "localization.box_weight=2"])
    assert c.classification.label_smoothing == 0.1 and c.localization.box_weight == 2.0
    old = c.to_dict()
    old["label_smoothing"] = old.pop("classification")["label_smoothing"]  # a pre-move config
    assert cfg.validate(old).classification.label_smoothing == 0.1


def test_list_keys_describes_every_key():
    keys = [k for k, _, _ in cfg.describe()]
    assert keys == list(cfg.KEYS) and "optimizer.frozen" in keys
    assert all(help_ for _, _, help_ in cfg.describe())
