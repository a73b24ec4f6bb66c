"""jaxvision/data/sources.py: ArraySource and ImageFolderSource on the real CIFAR-10 JPEG tree."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from jaxvision.data import VALID, ArraySource, DataLoader, ImageDecodeError, ImageFolderSource

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]  # fmt: skip


def test_array_source_checks_input():
    src = ArraySource(np.zeros((4, 3, 3), np.uint8), np.array([0, 1, 2, 1]))
    assert src.image_shape == (3, 3, 1) and src.num_classes == 3 and len(src) == 4
    assert src[-1]["label"] == 1
    with pytest.raises(IndexError, match="index 4 out of range for 4"):
        src[4]
    with pytest.raises(ValueError, match="uint8"):
        ArraySource(np.zeros((4, 3, 3, 1), np.float32), np.zeros(4, int))
    with pytest.raises(ValueError, match=r"one per image.*\(3,\)"):
        ArraySource(np.zeros((4, 3, 3, 1), np.uint8), np.zeros(3, int))
    with pytest.raises(ValueError, match="num_classes=2"):
        ArraySource(np.zeros((4, 3, 3, 1), np.uint8), np.array([0, 1, 2, 1]), num_classes=2)


@pytest.fixture(scope="module")
def cifar_slice(shared_data, tmp_path_factory):
    """A real slice of the CIFAR-10 JPEG test tree: 3 classes x 20 files, copied."""
    root = tmp_path_factory.mktemp("cifar") / "test"
    for cls in ("airplane", "cat", "truck"):
        files = sorted((shared_data / "cifar10-jpeg" / "test" / cls).iterdir())[:20]
        (root / cls).mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / cls / f.name)
    return root


def test_image_folder_on_full_cifar_tree_matches_torchvision(shared_data):
    torchvision = pytest.importorskip("torchvision")
    root = shared_data / "cifar10-jpeg" / "test"
    src = ImageFolderSource(root)
    tv = torchvision.datasets.ImageFolder(str(root))
    assert src.classes == CIFAR_CLASSES == tv.classes and src.class_to_idx == tv.class_to_idx
    assert len(src) == 10000 and src.num_classes == 10
    assert np.bincount(src.targets).tolist() == [1000] * 10
    assert [(p, t) for p, t in src.samples] == [(p, t) for p, t in tv.samples]
    for i in (0, 4321, 9999):
        ex = src[i]
        img, label = tv[i]
        assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
        np.testing.assert_array_equal(ex["image"], np.asarray(img))
        assert ex["label"] == label


def test_image_folder_resize_and_loader(cifar_slice):
    src = ImageFolderSource(cifar_slice, image_size=(24, 20))
    assert src.image_shape == (24, 20, 3) and len(src) == 60
    assert src.classes == ["airplane", "cat", "truck"]
    assert src[0]["image"].shape == (24, 20, 3)
    batches = list(DataLoader(src, 16, num_epochs=1, pad_final=True, shard_index=0,
                              shard_count=1))  # fmt: skip
    assert [b["image"].shape for b in batches] == [(16, 24, 20, 3)] * 4
    labels = np.concatenate([b["label"][b[VALID]] for b in batches])
    assert np.bincount(labels).tolist() == [20, 20, 20]


def test_corrupt_file_raise_or_skip(cifar_slice, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(cifar_slice, root)
    cat_files = sorted((root / "cat").iterdir())
    bad = cat_files[3]
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    garbage = root / "cat" / "zz_not_an_image.png"
    garbage.write_bytes(b"this is not a PNG")
    src = ImageFolderSource(root)
    i_bad = [p for p, _ in src.samples].index(str(bad))
    assert src[i_bad - 1]["label"] == 1
    with pytest.raises(ImageDecodeError, match=bad.name):
        src[i_bad]
    i_garbage = [p for p, _ in src.samples].index(str(garbage))
    with pytest.raises(ImageDecodeError, match="zz_not_an_image.png"):
        src[i_garbage]

    skip = ImageFolderSource(root, on_error="skip")
    # A bad index falls back to the next decodable file, deterministically.
    np.testing.assert_array_equal(skip[i_bad]["image"], skip[i_bad + 1]["image"])
    assert skip.skipped == 1 and skip.skipped_paths == {str(bad)}
    # The last cat file is garbage: it falls back to the first truck.
    assert skip[i_garbage]["label"] == 2 and skip.skipped == 2
    # Through a loader with workers, the skips met in worker processes are counted too.
    skip2 = ImageFolderSource(root, on_error="skip")
    n = sum(len(b["label"]) for b in DataLoader(skip2, 7, num_epochs=1, worker_count=2,
                                                 shard_index=0, shard_count=1))  # fmt: skip
    assert n == 56 and skip2.skipped == 2


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        ImageFolderSource(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no class folders"):
        ImageFolderSource(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"a has no file ending in"):
        ImageFolderSource(tmp_path)
    with pytest.raises(ValueError, match="on_error"):
        ImageFolderSource(tmp_path, on_error="ignore")


def test_tfds_source_through_data_source_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("array_record")
    from jaxvision.data import TFDSSource, tfds_source

    with tfds.testing.mock_data(num_examples=24):
        src = tfds_source("mnist", "train")
        assert isinstance(src, TFDSSource) and len(src) == 24
        assert src.image_shape == (28, 28, 1) and src.num_classes == 10
        assert src.classes == [str(i) for i in range(10)]
        ex = src[5]
        assert ex["image"].shape == (28, 28, 1) and ex["image"].dtype == np.uint8
        assert 0 <= ex["label"] < 10
        np.testing.assert_array_equal(src[5]["image"], ex["image"])  # random access
        with pytest.raises(IndexError, match="out of range"):
            src[24]
        batches = list(DataLoader(src, 10, num_epochs=1, pad_final=True, shuffle=False,
                                  shard_index=0, shard_count=1))
        assert [int(b[VALID].sum()) for b in batches] == [10, 10, 4]
        np.testing.assert_array_equal(batches[0]["image"][5], ex["image"])
        # Variable-size data is resized on load so batches are static-shaped.
        small = tfds_source("cifar10", "test", image_size=(16, 12))
        assert small.image_shape == (16, 12, 3) and small[0]["image"].shape == (16, 12, 3)
        with pytest.raises(KeyError, match="no feature 'img'"):
            tfds_source("mnist", "train", image_key="img")


def test_tfds_source_without_tensorflow_datasets_says_how_to_install(monkeypatch):
    import builtins

    from jaxvision.data import tfds_source

    real_import = builtins.__import__

    def no_tfds(name, *args, **kwargs):
        if name.startswith("tensorflow_datasets"):
            raise ImportError("No module named 'tensorflow_datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tfds)
    with pytest.raises(ImportError, match="pip install"):
        tfds_source("mnist", "train")
