"""The legacy PyTorch reader, on a file written here byte for byte and on the real shipped weights."""

from __future__ import annotations

import pickle
import struct
import sys
import types

import numpy as np
import pytest

from training.backbones.registry import BACKBONES
from training.backbones.torch_legacy import TorchFileError, load_state_dict


def _fake_torch_modules(monkeypatch):
    """Just enough of a 'torch' module for pickle to write references to torch globals by name."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class LongStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    for cls in (FloatStorage, LongStorage):
        cls.__module__, cls.__qualname__ = "torch", cls.__name__
        setattr(torch, cls.__name__, cls)
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch, _rebuild_tensor_v2


class _Tensor:
    def __init__(self, storage_key, storage_type, offset, size, stride, rebuild):
        self.args = (("storage", storage_type, storage_key), offset, size, stride, False, {})
        self.rebuild = rebuild

    def __reduce__(self):
        return self.rebuild, self.args


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, tuple) and obj and obj[0] == "storage":
            _, storage_type, key = obj
            return ("storage", storage_type, key, "cpu", 0, None)
        return None


def write_legacy(path, storages: dict, tensors: dict, monkeypatch):
    """Write ``tensors`` (name -> (key, offset, size, stride)) over ``storages`` in torch's legacy layout."""
    torch, rebuild = _fake_torch_modules(monkeypatch)
    types_by_dtype = {np.dtype(np.float32): torch.FloatStorage, np.dtype(np.int64): torch.LongStorage}
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"little_endian": True}, f, protocol=2)
        state = {name: _Tensor(key, types_by_dtype[storages[key].dtype], *geometry, rebuild)
                 for name, (key, *geometry) in tensors.items()}
        _Pickler(f, protocol=2).dump(state)
        pickle.dump(list(storages), f, protocol=2)
        for array in storages.values():
            f.write(struct.pack("<q", array.size))
            f.write(array.astype(array.dtype.newbyteorder("<")).tobytes())


def test_reads_strided_views_offsets_and_scalars(tmp_path, monkeypatch):
    base = np.arange(12, dtype=np.float32)
    path = tmp_path / "w.pth"
    write_legacy(path, {"0": base, "1": np.array([7], dtype=np.int64)}, {
        "matrix": ("0", 0, (3, 4), (4, 1)),
        "transposed": ("0", 0, (4, 3), (1, 4)),  # a non-contiguous view of the same storage
        "tail": ("0", 8, (4,), (1,)),
        "count": ("1", 0, (), ()),
    }, monkeypatch)
    state = load_state_dict(path)
    assert list(state) == ["matrix", "transposed", "tail", "count"]
    np.testing.assert_array_equal(state["matrix"], base.reshape(3, 4))
    np.testing.assert_array_equal(state["transposed"], base.reshape(3, 4).T)
    np.testing.assert_array_equal(state["tail"], [8, 9, 10, 11])
    assert state["count"] == 7 and state["count"].dtype == np.int64


def test_truncated_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    write_legacy(path, {"0": np.arange(100, dtype=np.float32)}, {"w": ("0", 0, (100,), (1,))}, monkeypatch)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(TorchFileError, match="truncated"):
        load_state_dict(path)


@pytest.mark.parametrize("content", [b"PK\x03\x04 a zip archive", b"\x00\x01\x02 random bytes"])
def test_other_files_are_refused(tmp_path, content):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(TorchFileError, match="not a PyTorch legacy file"):
        load_state_dict(path)


def test_real_mobilenet_v2_weights():
    state = load_state_dict(BACKBONES["mobilenet_v2"].source.locate())
    assert len(state) == 314
    assert sum(v.size for v in state.values()) == 3_539_036
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state["classifier.1.weight"].dtype == np.float32
