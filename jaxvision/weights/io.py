"""Safe reading of checkpoint files: torch ``.pth`` (without torch, without executing them),
``.safetensors`` and Flax ``.msgpack``.

A torch checkpoint is a pickle, and unpickling runs whatever callables the file names. We
never let it: :class:`_StateDictUnpickler` resolves only the handful of globals a
``state_dict`` needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and
friends, ``torch.*Storage`` types, ``torch`` dtypes) to numpy stand-ins, and refuses any
other global with :class:`UnsafeCheckpointError` naming it. Tensors are rebuilt from the raw
storage bytes with numpy (dtype, shape, strides, storage offset), bounds-checked.

Both torch container formats are read:

* zip (``torch.save`` since torch 1.6): ``<archive>/data.pkl`` holds the pickle, whose
  persistent ids ``("storage", StorageType, key, location, numel)`` point at the raw records
  ``<archive>/data/<key>``; ``<archive>/byteorder`` says the byte order (little if absent).
* legacy (``_use_new_zipfile_serialization=False``; older torchvision files such as
  ``alexnet-owt-7be5be79.pth``): consecutive pickles -- magic number, protocol version
  (1001), system info, the object (persistent ids ``("storage", StorageType, root_key,
  location, numel, view_metadata)``), the list of storage keys -- then, per key, an
  int64 element count followed by the storage's raw bytes.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import ml_dtypes
import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage class name -> numpy dtype of its elements.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "UntypedStorage": np.dtype(np.uint8),
}
# torch dtype object name (``torch.float32`` pickles as the global ``torch float32``).
_TORCH_DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype(np.float64), "double": np.dtype(np.float64),
    "float32": np.dtype(np.float32), "float": np.dtype(np.float32),
    "float16": np.dtype(np.float16), "half": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int64": np.dtype(np.int64), "long": np.dtype(np.int64),
    "int32": np.dtype(np.int32), "int": np.dtype(np.int32),
    "int16": np.dtype(np.int16), "short": np.dtype(np.int16),
    "int8": np.dtype(np.int8), "uint8": np.dtype(np.uint8), "bool": np.dtype(np.bool_),
}


class CheckpointError(ValueError):
    """A file is not a readable checkpoint (wrong format, truncated, corrupt)."""


class UnsafeCheckpointError(CheckpointError):
    """A torch checkpoint's pickle names a global that a ``state_dict`` never needs."""


# ----------------------------------------------------------------------------------------
# numpy stand-ins for the torch objects a state-dict pickle builds


class _StorageType:
    """Stands for a ``torch.<Name>Storage`` class inside the pickle."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _TorchDtype:
    """Stands for a ``torch.<dtype>`` object (``_rebuild_tensor_v3`` takes one)."""

    def __init__(self, name: str):
        self.dtype = _TORCH_DTYPES[name]


class _Storage:
    """A flat storage: raw bytes (filled in later for the legacy format) and a dtype."""

    def __init__(self, dtype: np.dtype, numel: int, name: str):
        self.dtype = dtype
        self.numel = int(numel)
        self.name = name
        self.data: np.ndarray | None = None  # 1-D array of ``dtype`` once loaded
        self.root: _Storage | None = None  # legacy views: (root, element offset)
        self.root_offset = 0

    def array(self) -> np.ndarray:
        if self.root is not None:
            base = self.root.array()
            return base[self.root_offset:self.root_offset + self.numel]
        if self.data is None:
            raise CheckpointError(f"storage {self.name} has no data in the file (truncated?)")
        return self.data


class _LazyTensor:
    """A tensor to be cut out of its storage once all storages are loaded."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any,
                 dtype: np.dtype | None = None):
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"tensor rebuilt from a {type(storage).__name__}, "
                                  "not a storage")
        try:
            self.size = tuple(int(s) for s in size)
            self.stride = tuple(int(s) for s in stride)
            self.offset = int(offset)
        except (TypeError, ValueError):
            raise CheckpointError(f"malformed tensor metadata: size={size!r}, "
                                  f"stride={stride!r}, offset={offset!r}") from None
        self.storage = storage
        self.dtype = storage.dtype if dtype is None else dtype

    def materialize(self) -> np.ndarray:
        size, stride, offset = self.size, self.stride, self.offset
        if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride):
            raise CheckpointError(f"malformed tensor: size {size}, stride {stride}")
        flat = self.storage.array()
        if self.dtype != self.storage.dtype:  # v3 tensors view untyped (uint8) storages
            flat = flat.view(np.uint8).view(self.dtype)
        if 0 in size:
            return np.zeros(size, self.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        # as_strided reads raw memory: a crafted size/stride must never reach past the
        # storage.
        if offset < 0 or last >= flat.size:
            raise CheckpointError(
                f"tensor (size {size}, stride {stride}, offset {offset}) reaches element "
                f"{last} of a storage of {flat.size} elements; corrupt checkpoint")
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False)
        return np.array(view)  # a contiguous copy, independent of the file buffer


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, _TorchDtype):
        raise CheckpointError(f"_rebuild_tensor_v3 got dtype {dtype!r}")
    return _LazyTensor(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return data  # the state holds python attributes of the Parameter: not weights


_SAFE_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
}


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a torch ``state_dict`` into ``_LazyTensor`` s, refusing other globals."""

    def __init__(self, file: IO[bytes], persistent_load: Callable[[Any], Any]):
        super().__init__(file, encoding="utf-8")
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(name)
        raise UnsafeCheckpointError(
            f"refusing to load the global '{module}.{name}': a checkpoint holding only a "
            "state_dict never needs it, so the file is malicious or holds more than weights "
            "(a pickled model object, optimizer or python code). Save "
            "model.state_dict() instead of the model")

    def persistent_load(self, pid: Any) -> Any:
        return self._persistent_load(pid)


def _pid_fields(pid: Any, expected: int) -> tuple:
    if not isinstance(pid, tuple) or len(pid) != expected or pid[0] not in ("storage",
                                                                             b"storage"):
        raise CheckpointError(f"unknown persistent id {pid!r} in the checkpoint pickle")
    if not isinstance(pid[1], _StorageType):
        raise CheckpointError(f"persistent id names {pid[1]!r}, not a torch storage type")
    return pid[1:]


def _key(k: Any) -> str:
    return k.decode("ascii") if isinstance(k, bytes) else str(k)


# ----------------------------------------------------------------------------------------
# torch container formats


def _read_torch_zip(path: Path) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{path} is not a readable torch zip checkpoint ({e})") from None
    with zf:
        pickles = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(
                f"{path} is a zip archive but not a torch checkpoint (expected one "
                f"<archive>/data.pkl, found {pickles or 'none'})")
        prefix = pickles[0][: -len("data.pkl")]
        names = set(zf.namelist())
        order = "little"
        if prefix + "byteorder" in names:
            order = zf.read(prefix + "byteorder").decode("ascii", "replace")
            if order not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byte order {order!r}")
        storages: dict[str, _Storage] = {}

        def persistent_load(pid: Any) -> _Storage:
            storage_type, key, _location, numel = _pid_fields(pid, 5)
            key = _key(key)
            if key not in storages:
                storages[key] = _Storage(storage_type.dtype, numel, f"data/{key}")
            return storages[key]

        try:
            obj = _StateDictUnpickler(io.BytesIO(zf.read(pickles[0])), persistent_load).load()
            for key, storage in storages.items():
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise CheckpointError(f"{path}: storage record {record} is missing")
                raw = zf.read(record)
                dtype = storage.dtype.newbyteorder("<" if order == "little" else ">")
                if len(raw) % dtype.itemsize:
                    raise CheckpointError(f"{path}: record {record} has {len(raw)} bytes, "
                                          f"not a multiple of {dtype.itemsize}")
                storage.data = np.frombuffer(raw, dtype).astype(storage.dtype, copy=False)
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
            raise CheckpointError(f"{path}: corrupt or truncated torch checkpoint "
                                  f"({type(e).__name__}: {e})") from None
        except pickle.UnpicklingError as e:
            raise CheckpointError(f"{path}: corrupt checkpoint pickle ({e})") from None
    return obj


def _read_torch_legacy(path: Path) -> Any:
    with open(path, "rb") as f:
        try:
            # A plain pickle (not torch's format) lands here too: unpickle it with the same
            # restrictions, so that a malicious one is refused by name.
            magic = _StateDictUnpickler(f, _no_persistent_ids).load()
            if magic != _LEGACY_MAGIC:
                raise CheckpointError(f"{path} is a pickle but not a torch checkpoint "
                                      "(no torch magic number)")
            protocol = _SafeHeaderUnpickler(f).load()
            if protocol != _LEGACY_PROTOCOL:
                raise CheckpointError(f"{path}: unsupported torch protocol version {protocol}")
            sys_info = _SafeHeaderUnpickler(f).load()
            little = bool(sys_info.get("little_endian", True)) if isinstance(
                sys_info, dict) else True
            storages: dict[str, _Storage] = {}

            def persistent_load(pid: Any) -> _Storage:
                storage_type, root_key, _location, numel, view = _pid_fields(pid, 6)
                root_key = _key(root_key)
                dtype = storage_type.dtype
                if root_key not in storages:
                    storages[root_key] = _Storage(dtype, numel, f"storage {root_key}")
                root = storages[root_key]
                if view is None:
                    return root
                view_key, offset, view_size = view
                v = _Storage(dtype, view_size, f"view {_key(view_key)}")
                v.root, v.root_offset = root, int(offset)
                return v

            obj = _StateDictUnpickler(f, persistent_load).load()
            keys = _SafeHeaderUnpickler(f).load()
            if not isinstance(keys, list):
                raise CheckpointError(f"{path}: malformed storage key list")
            for key in keys:
                storage = storages.get(_key(key))
                if storage is None:
                    raise CheckpointError(f"{path}: data for unknown storage {key!r}")
                head = f.read(8)
                if len(head) != 8:
                    raise CheckpointError(f"{path}: truncated (storage {key!r} missing)")
                (numel,) = struct.unpack("<q" if little else ">q", head)
                dtype = storage.dtype.newbyteorder("<" if little else ">")
                nbytes = numel * dtype.itemsize
                raw = f.read(nbytes)
                if numel < 0 or len(raw) != nbytes:
                    raise CheckpointError(f"{path}: truncated (storage {key!r} has "
                                          f"{len(raw)} of {nbytes} bytes)")
                storage.data = np.frombuffer(raw, dtype).astype(storage.dtype, copy=False)
        except (EOFError, pickle.UnpicklingError, struct.error) as e:
            raise CheckpointError(f"{path}: corrupt or truncated torch checkpoint "
                                  f"({type(e).__name__}: {e})") from None
    return obj


def _no_persistent_ids(pid: Any) -> Any:
    raise CheckpointError(f"unexpected persistent id {pid!r} outside the checkpoint pickle")


class _SafeHeaderUnpickler(pickle.Unpickler):
    """For the legacy header pickles (ints, a dict, a list): no globals at all."""

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafeCheckpointError(
            f"refusing to load the global '{module}.{name}' in a torch checkpoint header")


def _to_state_dict(obj: Any, path: Path) -> dict[str, np.ndarray]:
    # Training checkpoints often nest the weights: {"model": state_dict, "epoch": ...}.
    if isinstance(obj, Mapping) and not any(isinstance(v, _LazyTensor) for v in obj.values()):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict "
                              "(a mapping of names to tensors)")
    others = [str(k) for k, v in obj.items() if not isinstance(v, _LazyTensor)]
    if others:
        raise CheckpointError(f"{path}: not a state_dict, these entries are not tensors: "
                              + ", ".join(others[:10]))
    return {str(k): v.materialize() for k, v in obj.items()}


# ----------------------------------------------------------------------------------------
# public API


def read_torch(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a ``torch.save`` d ``state_dict`` (zip or legacy format) without torch.

    Returns:
      torch key -> array in torch's layout (conv weights ``[O, I, kH, kW]``), the file's
      dtype (float32 for torchvision weights; bfloat16 as ``ml_dtypes.bfloat16``).

    Raises:
      UnsafeCheckpointError: the pickle names any global beyond what a state_dict needs.
      CheckpointError: not a torch checkpoint, corrupt or truncated.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        return _to_state_dict(_read_torch_zip(path), path)
    if head[:1] == b"\x80":  # a pickle (protocol >= 2): the legacy format
        return _to_state_dict(_read_torch_legacy(path), path)
    raise CheckpointError(f"{path} is not a torch checkpoint (neither a zip archive nor a "
                          "pickle)")


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < n <= path.stat().st_size - 8


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` file: key -> numpy array."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return dict(load_file(str(path)))
    except (SafetensorError, json.JSONDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({e})") from None


def read_msgpack(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a ``flax.serialization.msgpack_serialize`` d tree, flattened with ``/``."""
    from flax import serialization, traverse_util

    try:
        tree = serialization.msgpack_restore(Path(path).read_bytes())
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise CheckpointError(f"{path}: not a Flax msgpack file ({type(e).__name__}: "
                              f"{e})") from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"{path}: msgpack holds a {type(tree).__name__}, not a tree "
                              "of arrays")
    return {"/".join(k): np.asarray(v)
            for k, v in traverse_util.flatten_dict(tree).items()}


def read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a checkpoint file into a flat ``{key: array}`` dict, never executing it.

    The format is told from the content: torch ``.pth`` (zip or legacy pickle; keys are
    torch ``state_dict`` keys, arrays in torch layouts), ``.safetensors`` (keys as stored)
    and Flax ``.msgpack`` (keys are ``/``-joined variable paths, ``params/conv1/kernel``).

    Raises:
      FileNotFoundError: no such file.
      UnsafeCheckpointError: a torch pickle names a global a state_dict never needs.
      CheckpointError: anything else that is not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return _read(path)
    except CheckpointError as e:
        if str(path) in str(e):
            raise
        # Errors from inside the unpickler do not know the file; the user needs to.
        raise type(e)(f"{path}: {e}") from None


def _read(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".msgpack":
        return read_msgpack(path)
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        return read_safetensors(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return read_torch(path)
    raise CheckpointError(
        f"{path} is not a checkpoint: expected a torch .pth (zip or legacy pickle), a "
        f".safetensors or a Flax .msgpack file; it starts with bytes {head!r}")


def write(variables: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Writes Flax variables to a safe file that :func:`read` reads back.

    ``.safetensors`` stores the variables flattened with ``/`` (``params/conv1/kernel``);
    ``.msgpack`` stores the tree with ``flax.serialization``. The file is written to a
    temporary name and renamed, so an interrupted write never leaves a partial file.
    """
    from flax import serialization, traverse_util

    path = Path(path)
    flat = {"/".join(k): np.ascontiguousarray(np.asarray(v))
            for k, v in traverse_util.flatten_dict(dict(variables)).items()}
    tmp = path.with_name(path.name + ".partial")
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(flat, str(tmp))
    elif path.suffix == ".msgpack":
        tree = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})
        tmp.write_bytes(serialization.msgpack_serialize(tree))
    else:
        raise ValueError(f"cannot write {path}: use a .safetensors or .msgpack file name")
    os.replace(tmp, path)
    return path
