"""jaxvision/data/mnist.py: the IDX reader on the real MNIST files and the embedded subset."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from jaxvision.data import ArraySource, IDXFormatError, mnist_source, read_idx, read_mnist_idx
from jaxvision.data.mnist import make_subset

# Published facts about MNIST (see /work/shared/data/README.md and LeCun's page).
TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="module")
def full(shared_data):
    root = shared_data / "mnist"
    return {s: read_mnist_idx(root, s) for s in ("train", "test")}


def test_idx_counts_and_classes(full):
    (tr_x, tr_y), (te_x, te_y) = full["train"], full["test"]
    assert tr_x.shape == (60000, 28, 28) and tr_x.dtype == np.uint8
    assert te_x.shape == (10000, 28, 28) and te_y.shape == (10000,)
    assert np.bincount(te_y, minlength=10).tolist() == TEST_CLASS_COUNTS
    assert np.bincount(tr_y, minlength=10).tolist() == TRAIN_CLASS_COUNTS
    assert 0 < tr_x.mean() / 255 < 0.2  # mostly black background, like MNIST


def test_idx_matches_published_md5(shared_data):
    with gzip.open(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz", "rb") as f:
        assert hashlib.md5(f.read()).hexdigest() == "2646ac647ad5339dbf082846283269ea"


def test_mnist_source_from_root_raw_and_gz(shared_data, tmp_path, full):
    src = mnist_source("test", root=shared_data / "mnist")
    assert len(src) == 10000 and src.image_shape == (28, 28, 1) and src.num_classes == 10
    ex = src[123]
    assert ex["image"].shape == (28, 28, 1) and ex["image"].dtype == np.uint8
    assert ex["label"] == int(full["test"][1][123])
    # Uncompressed files, laid out like torchvision's MNIST/raw, read the same.
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(shared_data / "mnist" / f"{stem}.gz", "rb") as f:
            (raw / stem).write_bytes(f.read())
    src_raw = mnist_source("test", root=tmp_path)
    np.testing.assert_array_equal(src_raw.images, src.images)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_bad_idx_files_raise_clear_errors(tmp_path):
    good = np.arange(2 * 28 * 28, dtype=np.uint8).tobytes()
    hdr = bytes([0, 0, 8, 3]) + np.array([2, 28, 28], ">i4").tobytes()
    assert read_idx(_write(tmp_path / "ok", hdr + good), ndim=3).shape == (2, 28, 28)
    with pytest.raises(IDXFormatError, match=r"badmagic: bad IDX magic"):
        read_idx(_write(tmp_path / "badmagic", b"\x1f\x8b\x08\x03" + good))
    with pytest.raises(IDXFormatError, match=r"trunc: .*holds 10 bytes"):
        read_idx(_write(tmp_path / "trunc", hdr + good[:10]))
    with pytest.raises(IDXFormatError, match="expected 1"):
        read_idx(tmp_path / "ok", ndim=1)
    with pytest.raises(IDXFormatError, match="unsigned byte"):
        read_idx(_write(tmp_path / "float", bytes([0, 0, 0x0D, 3]) + hdr[4:] + good))
    with pytest.raises(IDXFormatError, match=r"notgz\.gz"):
        read_idx(_write(tmp_path / "notgz.gz", hdr + good))
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        mnist_source("test", root=tmp_path)
    # Images and labels of different lengths name both files.
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(hdr + good)
    lab = bytes([0, 0, 8, 1]) + np.array([3], ">i4").tobytes() + bytes([1, 2, 3])
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(lab)
    with pytest.raises(IDXFormatError, match="2 images but .*t10k-labels.* 3 labels"):
        mnist_source("test", root=tmp_path)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        mnist_source("val")


def test_embedded_subset_is_real_balanced_mnist(full):
    for split, n in (("train", 12000), ("test", 2000)):
        src = mnist_source(split)
        assert isinstance(src, ArraySource) and len(src) == n
        assert src.image_shape == (28, 28, 1)
        assert np.bincount(src.labels, minlength=10).tolist() == [n // 10] * 10
        images, labels = full[split]
        # The subset is exactly what make_subset picks from the official files...
        index = make_subset(labels, n // 10)
        np.testing.assert_array_equal(src.images[..., 0], images[index])
        np.testing.assert_array_equal(src.labels, labels[index])
    # ...and every embedded test image is found, byte for byte, in the full test set.
    full_rows = {img.tobytes() for img in full["test"][0]}
    sub = mnist_source("test")
    assert all(sub[i]["image"][..., 0].tobytes() in full_rows for i in range(len(sub)))
