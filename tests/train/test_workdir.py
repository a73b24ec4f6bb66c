"""The workdir layout: one module writes and reads every file of a run."""

from __future__ import annotations

import pytest

from jaxvision.train import load_config
from jaxvision.train import workdir as wd


def test_workdir_files_round_trip(tmp_path):
    config = load_config("lenet5_mnist", ["task.name=localization", "batch_size=64"])
    assert not wd.is_workdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a jaxvision training workdir"):
        wd.read_config(tmp_path)
    wd.write_config(tmp_path, config)
    assert wd.is_workdir(tmp_path)
    back = wd.read_config(tmp_path)
    assert back.task.name == "localization" and back.batch_size == 64
    assert wd.read_input_shape(tmp_path) is None
    wd.write_input_shape(tmp_path, (64, 48, 1))
    assert wd.read_input_shape(tmp_path) == (64, 48, 1)
    assert wd.read_classes(tmp_path, 3) == ["0", "1", "2"]
    wd.write_classes(tmp_path, ["cat", "dog", "emu"])
    assert wd.read_classes(tmp_path, 3) == ["cat", "dog", "emu"]
    assert wd.read_classes(tmp_path, 2) == ["0", "1"]  # another head: indices
    assert wd.checkpoint_dir(tmp_path) == tmp_path.absolute() / "checkpoints"
    assert {p.name for p in tmp_path.iterdir()} == {wd.CONFIG, wd.INPUT_SHAPE, wd.CLASSES}
