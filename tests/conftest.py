"""Shared pytest configuration: paths to the real data and skips when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("JAXVISION_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real MNIST, CIFAR-10, photos); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set JAXVISION_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def bccd_subset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 training and 3 test images of the real BCCD, in its VOC layout (links)."""
    from tests.train.tiny_detector import voc_subset

    bccd = shared_data / "bccd"
    if not bccd.is_dir():
        pytest.skip(f"BCCD not found at {bccd}")
    return voc_subset(bccd, tmp_path_factory.mktemp("bccd_subset"), {"train": 6, "test": 3})

