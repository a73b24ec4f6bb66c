"""jaxvision.weights.io: torch checkpoints read without torch and without executing them."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from jaxvision.weights import CheckpointError, UnsafeCheckpointError, read, write

FORMATS = {"zip": True, "legacy": False}


def _state_dict() -> OrderedDict:
    """A real module state dict plus the awkward cases: non-contiguous, shared storage,
    offsets, every dtype a checkpoint may hold."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                            torch.nn.Linear(4, 5))
    sd = m.state_dict()
    base = torch.arange(24, dtype=torch.float32)
    sd["transposed"] = base.reshape(4, 6).t()  # strides (1, 6)
    sd["slice"] = base[5:17].reshape(3, 4)  # storage offset 5, same storage as above
    sd["strided"] = base.reshape(4, 6)[:, ::2]
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 3)
    for dtype in (torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
                  torch.int16, torch.int8, torch.uint8, torch.bool):
        sd[f"dtype_{dtype}".replace("torch.", "")] = (torch.arange(6) % 3).to(dtype)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2))
    return sd


def _assert_same(arrays: dict, sd: dict) -> None:
    assert list(arrays) == list(sd)
    for k, t in sd.items():
        a = arrays[k]
        assert a.shape == tuple(t.shape), k
        assert str(t.dtype) == f"torch.{np.dtype(a.dtype).name}".replace("bool_", "bool"), k
        np.testing.assert_array_equal(a.astype(np.float64), t.detach().double().numpy(),
                                      err_msg=k)


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_torch_save_exactly(tmp_path: Path, fmt: str) -> None:
    sd = _state_dict()
    path = tmp_path / "ck.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=FORMATS[fmt])
    _assert_same(read(path), sd)


def test_unwraps_training_checkpoints(tmp_path: Path) -> None:
    sd = torch.nn.Linear(3, 2).state_dict()
    torch.save({"model": sd, "epoch": 7}, tmp_path / "ck.pth")
    _assert_same(read(tmp_path / "ck.pth"), sd)


def test_whole_model_pickle_is_refused(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(3, 2), tmp_path / "model.pth")
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        read(tmp_path / "model.pth")


class _Exploit:
    """Unpickling this calls ``func(arg)``: what a malicious checkpoint does."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def _exploits(marker: Path) -> dict:
    return {
        "os.system": _Exploit(os.system, f"touch {marker}"),
        "builtins.exec": _Exploit(exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("container", ["plain_pickle", "zip", "legacy"])
@pytest.mark.parametrize("kind", ["os.system", "builtins.exec"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, container: str,
                                                 kind: str) -> None:
    marker = tmp_path / "pwned"
    payload = OrderedDict(evil=_exploits(marker)[kind], weight=torch.ones(2))
    path = tmp_path / "evil.pth"
    if container == "plain_pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=container == "zip")
    # pickle protocol 2 spells builtins as Python 2's __builtin__.
    forbidden = r"'posix\.system'" if kind == "os.system" else r"'(builtins|__builtin__)\.exec'"
    with pytest.raises(UnsafeCheckpointError, match=forbidden):
        read(path)
    assert not marker.exists()
    # Proof that the file really is an exploit: plain pickle loading runs it.
    if container == "plain_pickle":
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_random_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        read(path)
    path.write_text("hello, I am a text file\n")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        read(path)
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "absent.pth")


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_checkpoint_is_refused(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "ck.pth"
    torch.save(_state_dict(), path, _use_new_zipfile_serialization=FORMATS[fmt])
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 40):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="corrupt|truncated|not a readable"):
            read(path)


def test_zip_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "a.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        read(path)


def test_tensor_reaching_past_its_storage_is_refused(tmp_path: Path) -> None:
    """A crafted size/stride must not make numpy read memory outside the file's data."""
    src, dst = tmp_path / "ok.pth", tmp_path / "bad.pth"
    torch.save({"w": torch.arange(10.0)}, src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            zout.writestr(name, data[:8] if name.endswith("data/0") else data)
    with pytest.raises(CheckpointError, match="reaches element 9 of a storage of 2"):
        read(dst)


def test_safetensors_and_msgpack_round_trip(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    arrays = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
              "b": np.ones(4, np.int64)}
    save_file(arrays, str(tmp_path / "x.safetensors"))
    out = read(tmp_path / "x.safetensors")
    assert set(out) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(out[k], arrays[k])

    variables = {"params": {"conv1": {"kernel": np.random.rand(3, 3, 3, 8).astype(np.float32)}},
                 "batch_stats": {"bn1": {"mean": np.zeros(8, np.float32)}}}
    for suffix in (".safetensors", ".msgpack"):
        path = write(variables, tmp_path / f"v{suffix}")
        flat = read(path)
        assert set(flat) == {"params/conv1/kernel", "batch_stats/bn1/mean"}
        np.testing.assert_array_equal(flat["params/conv1/kernel"],
                                      variables["params"]["conv1"]["kernel"])
        assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(ValueError, match=".safetensors or .msgpack"):
        write(variables, tmp_path / "v.pth")
