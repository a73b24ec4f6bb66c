"""Every package imports first in a fresh interpreter: the model zoo registers the detectors
and segmenters that build on it, so an import cycle shows only from some entry points."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The entry points where a cycle has shown (each run costs an interpreter start, ~4 s).
ENTRY_POINTS = ["jaxvision.detection", "jaxvision.detection.fast_rcnn", "jaxvision.localization"]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_imports_first(module):
    run = subprocess.run([sys.executable, "-c", f"import {module}; import jaxvision.models as m;"
                          " assert 'fasterrcnn_resnet50_fpn' in m.list_models()"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
