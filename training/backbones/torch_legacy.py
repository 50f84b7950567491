"""Read a PyTorch state dict saved in the *legacy* format, with pickle and numpy only.

The legacy file (torch < 1.6) is a sequence of pickles: magic number, protocol version, system info,
the state dict (tensors refer to storages through persistent ids), the list of storage keys, and then,
for each key in that order, an int64 element count followed by the storage's raw little-endian data.
Reading it without torch keeps a 700 MB dependency out of the project for the sake of two files.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """The file is not a PyTorch legacy-format state dict this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: type


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only the handful of globals a state dict needs; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise TorchFileError(f"unexpected object {module}.{name} in a state dict")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchFileError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, _numel, view = pid[:6]
        if view is not None:
            raise TorchFileError("storage views are not supported")
        return _StorageRef(str(key), storage_type.dtype)


def _read_storages(stream: BinaryIO, keys: list[str], dtypes: dict[str, type]) -> dict[str, np.ndarray]:
    storages = {}
    for key in keys:
        header = stream.read(8)
        if len(header) != 8:
            raise TorchFileError("file ends before all storages were read")
        (count,) = struct.unpack("<q", header)
        dtype = np.dtype(dtypes.get(key, np.float32)).newbyteorder("<")
        raw = stream.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise TorchFileError(f"storage {key} is truncated")
        storages[key] = np.frombuffer(raw, dtype=dtype)
    return storages


def _materialise(ref: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    flat = storages[ref.storage.key]
    if not ref.size:
        return flat[ref.offset].copy()
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :], shape=ref.size, strides=tuple(s * item for s in ref.stride)
    )
    return np.ascontiguousarray(view).astype(flat.dtype.newbyteorder("="))


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Return the state dict in ``path`` as an ordered mapping of name -> numpy array."""
    with open(path, "rb") as stream:
        try:
            magic = pickle.load(stream)
            version = pickle.load(stream)
        except Exception as exc:  # any unpickling failure means "not this format"
            raise TorchFileError(f"{path}: not a PyTorch legacy file ({exc})") from exc
        if magic != _MAGIC_NUMBER or version != _PROTOCOL_VERSION:
            raise TorchFileError(
                f"{path}: not a PyTorch legacy file (zip-format files from torch>=1.6 are not supported)"
            )
        pickle.load(stream)  # sys info: byte order and type sizes, always little-endian x86 here
        state = _StateDictUnpickler(stream).load()
        keys = pickle.load(stream)
        dtypes = {v.storage.key: v.storage.dtype for v in state.values() if isinstance(v, _TensorRef)}
        storages = _read_storages(stream, [str(k) for k in keys], dtypes)
    return collections.OrderedDict(
        (name, _materialise(value, storages)) for name, value in state.items() if isinstance(value, _TensorRef)
    )
