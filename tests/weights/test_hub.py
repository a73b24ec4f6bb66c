"""jaxvision.weights.hub: torchvision's weight table, real downloads from a local server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm

from jaxvision.weights import WEIGHTS, DownloadError, cache_dir, download
from jaxvision.weights.hub import (
    SEGMENTATION_WEIGHTS,
    hash_prefix,
    segmentation_weights_info,
)


@pytest.mark.parametrize("model", sorted(WEIGHTS))
def test_table_matches_torchvision(model: str) -> None:
    ref = tvm.get_model_weights(model).IMAGENET1K_V1
    ours = WEIGHTS[model]
    assert ours.url == ref.url
    assert ours.num_params == ref.meta["num_params"]
    assert ours.acc1 == ref.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert ours.acc5 == ref.meta["_metrics"]["ImageNet-1K"]["acc@5"]
    assert ours.gmac == ref.meta["_ops"]
    t = ref.transforms()
    assert [ours.resize_size] == t.resize_size and [ours.crop_size] == t.crop_size
    assert ours.transforms().mean == tuple(t.mean) and ours.transforms().std == tuple(t.std)
    assert list(ours.categories) == ref.meta["categories"]
    assert len(ours.hash_prefix) >= 8


def test_every_torchvision_counterpart_is_listed() -> None:
    families = ("alexnet", "vgg", "googlenet", "inception_v3", "resnet", "resnext",
                "wide_resnet", "densenet")
    expected = {m for m in tvm.list_models(module=tvm)
                if m.startswith(families) and "IMAGENET1K_V1" in
                tvm.get_model_weights(m).__members__}
    assert expected == set(WEIGHTS)


def test_hash_prefix_and_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert hash_prefix("resnet18-f37072fd.pth") == "f37072fd"
    assert hash_prefix("inception_v3_google-0cc3c7bd.pth") == "0cc3c7bd"
    assert hash_prefix("weights.pth") is None
    monkeypatch.setenv("JAXVISION_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "checkpoints"


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving ``tmp_path/www``: (base URL, folder)."""
    www = tmp_path / "www"
    www.mkdir()
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()
    httpd.server_close()


def _published(folder: Path, stem: str, state_dict: dict) -> Path:
    """``torch.save`` s the state dict as ``<stem>-<sha256[:8]>.pth``, like torchvision."""
    tmp = folder / f"{stem}.tmp"
    torch.save(state_dict, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return tmp.rename(folder / f"{stem}-{digest[:10]}.pth")


def test_download_checks_hash_and_caches(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    published = _published(www, "linear", torch.nn.Linear(4, 3).state_dict())
    cache = tmp_path / "cache"
    got = download(f"{base}/{published.name}", cache, progress=False)
    assert got == cache / published.name
    assert got.read_bytes() == published.read_bytes()
    assert _Handler.requests == [f"/{published.name}"]
    assert download(f"{base}/{published.name}", cache, progress=False) == got
    assert len(_Handler.requests) == 1  # served from the cache the second time
    assert [p.name for p in cache.iterdir()] == [published.name]


def test_download_refuses_wrong_hash(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    published = _published(www, "linear", torch.nn.Linear(4, 3).state_dict())
    real = hash_prefix(published.name)
    wrong = f"linear-{'1' if real[0] == '0' else '0'}{real[1:]}.pth"
    shutil.copy(published, www / wrong)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="sha256 .* does not start with"):
        download(f"{base}/{wrong}", cache, progress=False)
    assert list(cache.iterdir()) == []  # no partial or corrupt file left behind


def test_download_offline_says_to_pass_a_local_file(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="pass its local path"):
        download(f"http://127.0.0.1:{port}/resnet18-f37072fd.pth", tmp_path, progress=False)
    with pytest.raises(DownloadError, match="No such file"):
        download("file:///nonexistent/resnet18-f37072fd.pth", tmp_path, progress=False)


def test_download_http_error(server: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(DownloadError, match="404"):
        download(f"{base}/resnet18-f37072fd.pth", tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_download_file_url(tmp_path: Path) -> None:
    published = _published(tmp_path, "lin", torch.nn.Linear(2, 2).state_dict())
    got = download(published.as_uri(), tmp_path / "cache", progress=False)
    assert got.read_bytes() == published.read_bytes()


@pytest.mark.parametrize("model", sorted(SEGMENTATION_WEIGHTS))
def test_segmentation_table_matches_torchvision(model: str) -> None:
    ref = tvm.get_model_weights(model).COCO_WITH_VOC_LABELS_V1
    ours = segmentation_weights_info(model)
    assert ours.url == ref.url
    assert ours.num_params == ref.meta["num_params"]
    assert ours.miou == ref.meta["_metrics"]["COCO-val2017-VOC-labels"]["miou"]
    assert ours.pixel_acc == ref.meta["_metrics"]["COCO-val2017-VOC-labels"]["pixel_acc"]
    assert ours.gflops == ref.meta["_ops"]
    t = ref.transforms()
    assert [ours.resize_size] == t.resize_size
    assert ours.mean == tuple(t.mean) and ours.std == tuple(t.std)
    assert list(ours.categories) == ref.meta["categories"]
    assert ours.config["num_classes"] == len(ref.meta["categories"])
    assert len(ours.hash_prefix) >= 8


def test_every_torchvision_resnet_segmentation_model_is_listed() -> None:
    import torchvision.models.segmentation as tvseg

    expected = {m for m in tvm.list_models(module=tvseg) if "resnet" in m}
    assert expected == set(SEGMENTATION_WEIGHTS)
    with pytest.raises(KeyError, match="fcn_resnet50"):
        segmentation_weights_info("fcn_vgg16")
