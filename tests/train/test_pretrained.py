"""model.init_from: variables of a workdir or of torchvision weights, placed by path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from jaxvision.models import get_model
from jaxvision.train.pretrained import graft, load_variables


def _classifier():
    return {"params": {"features.0": {"kernel": np.full((5, 5, 1, 6), 1.0, np.float32),
                                      "bias": np.full((6,), 2.0, np.float32)},
                       "classifier.0": {"kernel": np.zeros((256, 120), np.float32)}}}


def _localizer():
    return {"params": {"backbone": {"features.0": {"kernel": np.zeros((5, 5, 1, 6), np.float32),
                                                   "bias": np.zeros((6,), np.float32)}},
                       "classifier.0": {"kernel": np.zeros((2704, 120), np.float32)},
                       "regressor.0": {"kernel": np.zeros((2704, 4), np.float32)}}}


def test_graft_onto_a_submodule_reports_what_it_did():
    out, report = graft(_localizer(), _classifier(), "backbone")
    np.testing.assert_array_equal(out["params"]["backbone"]["features.0"]["kernel"], 1.0)
    np.testing.assert_array_equal(out["params"]["backbone"]["features.0"]["bias"], 2.0)
    np.testing.assert_array_equal(out["params"]["regressor.0"]["kernel"], 0.0)
    assert sorted(report["loaded"]) == ["params/backbone/features.0/bias",
                                        "params/backbone/features.0/kernel"]
    assert report["unused"] == ["params/classifier.0/kernel"]  # no backbone/classifier.0
    assert "params/regressor.0/kernel" in report["kept"]


def test_graft_refuses_shape_mismatch_unknown_target_and_loading_nothing():
    with pytest.raises(ValueError, match=r"classifier.0/kernel has shape \(256, 120\) but the "
                                         r"model's params/classifier.0/kernel has \(2704, 120\)"
                                         r".*init_from_skip"):
        graft(_localizer(), {"params": {"classifier.0": _classifier()["params"]["classifier.0"]}})
    out, report = graft(_localizer(), {"params": {
        "classifier.0": _classifier()["params"]["classifier.0"],
        "regressor.0": {"kernel": np.ones((2704, 4), np.float32)}}},
        skip=[r"classifier\..*"])
    assert report["skipped"] == ["params/classifier.0/kernel"]
    np.testing.assert_array_equal(out["params"]["regressor.0"]["kernel"], 1.0)
    with pytest.raises(ValueError, match=r"'trunk' is not a submodule.*\['backbone', "
                                         r"'classifier.0', 'regressor.0'\]"):
        graft(_localizer(), _classifier(), "trunk")
    with pytest.raises(ValueError, match="no array of the source fits"):
        graft(_localizer(), {"params": {"other": {"kernel": np.zeros(3)}}})


def test_load_variables_names_a_bad_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a training workdir"):
        load_variables(str(tmp_path))
    with pytest.raises(ValueError, match="expected 'torchvision:NAME'"):
        load_variables("torchvision:")


def test_torchvision_weights_onto_a_model_with_another_head(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet18()
    with torch.no_grad():
        tv.bn1.running_mean.uniform_(-1, 1)
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    loaded = load_variables(f"torchvision:resnet18:{path}")
    model = get_model("resnet18", num_classes=10)
    fresh = jax.device_get(model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                      train=False))
    with pytest.raises(ValueError, match=r"params/fc/(bias|kernel) has shape "
                                         r"\((512, )?1000,?\)"):
        graft(fresh, loaded)
    out, report = graft(fresh, loaded, skip=["fc/.*"])
    np.testing.assert_array_equal(out["params"]["conv1"]["kernel"],
                                  tv.conv1.weight.detach().permute(2, 3, 1, 0).numpy())
    np.testing.assert_array_equal(out["batch_stats"]["bn1"]["mean"],
                                  tv.bn1.running_mean.numpy())
    assert sorted(report["skipped"]) == ["params/fc/bias", "params/fc/kernel"]
    assert sorted(report["kept"]) == ["params/fc/bias", "params/fc/kernel"]
    np.testing.assert_array_equal(out["params"]["fc"]["kernel"], fresh["params"]["fc"]["kernel"])
