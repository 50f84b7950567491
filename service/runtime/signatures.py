"""Read a SavedModel's signature definitions from ``saved_model.pb`` without loading the model."""

from __future__ import annotations

from pathlib import Path

from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from service.codec.dtypes import by_tf_enum
from service.core.tensors import SignatureInfo, TensorSpec
from tlserve.contract import SAVED_MODEL_FILE

SERVING_TAG = "serve"


def _spec(key: str, info: meta_graph_pb2.TensorInfo) -> TensorSpec:
    # An absent shape means unknown, not scalar (TF1 exports such as TF Serving's half_plus_three omit it).
    unknown = not info.HasField("tensor_shape") or info.tensor_shape.unknown_rank
    shape = None if unknown else tuple(
        None if d.size < 0 else d.size for d in info.tensor_shape.dim)
    return TensorSpec(key, by_tf_enum(info.dtype), shape)


def read_meta_graph(version_dir: Path) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraphDef tagged 'serve' (TF Serving's default), as stored."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((version_dir / SAVED_MODEL_FILE).read_bytes())
    for meta in saved.meta_graphs:
        if SERVING_TAG in meta.meta_info_def.tags:
            return meta
    raise ValueError(f"{version_dir}: no meta graph tagged '{SERVING_TAG}'")


def read_signatures(meta: meta_graph_pb2.MetaGraphDef) -> dict[str, SignatureInfo]:
    """Every signature of ``meta``; internal ones ('__saved_model_init_op') left out."""
    return {
        name: SignatureInfo(name, sig.method_name,
                            {k: _spec(k, v) for k, v in sig.inputs.items()},
                            {k: _spec(k, v) for k, v in sig.outputs.items()})
        for name, sig in meta.signature_def.items() if not name.startswith("__")
    }
