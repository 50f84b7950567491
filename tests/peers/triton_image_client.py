"""Run by tests in Triton's venv: the calls of Triton's ``image_client.py`` / ``grpc_image_client.py`` against tlserve.

    .venv-triton/bin/python tests/peers/triton_image_client.py http|grpc|grpc-stub URL MODEL CLASS_COUNT IMAGE.npy...

``http`` and ``grpc`` are image_client.py with ``-i HTTP`` / ``-i gRPC`` (tritonclient's InferenceServerClient);
``grpc-stub`` is grpc_image_client.py (tritonclient's generated GRPCInferenceServiceStub, the batch sent as one
``raw_input_contents`` entry, the classification read back from ``raw_output_contents``). Follows the examples step
by step: model metadata and model configuration, ``parse_model``'s checks (one input of
three dims besides the batch, NHWC or NCHW, one FP32 vector output), the images cast to the input's datatype and
stacked into one batch, ``InferRequestedOutput(output, class_count=k)``, and ``postprocess`` splitting each
"score:index:label" string. Two differences, both outside the protocol: the images come as ``.npy`` pixel arrays
at the model's size (this venv has no Pillow to decode and resize files), and the HTTP client's dicts are read as
dicts (the example wraps them in the unmaintained ``attrdict``). Also reads the statistics before and after the
inference. Prints one JSON line.
"""

import json
import struct
import sys

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.model_config_pb2 as mc
import tritonclient.http as httpclient
from tritonclient.utils import triton_to_np_dtype


def parse_model(metadata: dict, config: dict):
    """image_client.py's parse_model, over the JSON forms (gRPC's messages read with as_json=True)."""
    if len(metadata["inputs"]) != 1 or len(metadata["outputs"]) != 1 or len(config["input"]) != 1:
        raise Exception("expecting 1 input and 1 output")
    input_metadata, input_config, output_metadata = metadata["inputs"][0], config["input"][0], metadata["outputs"][0]
    if output_metadata["datatype"] != "FP32":
        raise Exception("expecting output datatype to be FP32, got " + output_metadata["datatype"])
    max_batch_size = int(config.get("max_batch_size", 0))
    input_batch_dim = max_batch_size > 0
    shape = [int(d) for d in input_metadata["shape"]]
    if len(shape) != 3 + (1 if input_batch_dim else 0):
        raise Exception(f"expecting input to have {3 + input_batch_dim} dimensions, got {len(shape)}")
    fmt = mc.ModelInput.Format.Value(input_config.get("format", "FORMAT_NONE"))
    if fmt not in (mc.ModelInput.FORMAT_NCHW, mc.ModelInput.FORMAT_NHWC):
        raise Exception("unexpected input format " + mc.ModelInput.Format.Name(fmt))
    dims = shape[1:] if input_batch_dim else shape
    h, w, c = dims if fmt == mc.ModelInput.FORMAT_NHWC else (dims[1], dims[2], dims[0])
    return max_batch_size, input_metadata["name"], output_metadata["name"], c, h, w, fmt, input_metadata["datatype"]


def statistics(client, protocol: str, model: str) -> dict:
    stats = client.get_inference_statistics(model, as_json=True) if protocol == "grpc" else \
        client.get_inference_statistics(model)
    (entry,) = stats["model_stats"]
    inference = entry.get("inference_stats", {})
    return {"inference_count": int(entry.get("inference_count", 0)),
            "execution_count": int(entry.get("execution_count", 0)),
            "success": int(inference.get("success", {}).get("count", 0)),
            "last_inference": int(entry.get("last_inference", 0)),
            "batch_sizes": sorted(int(b["batch_size"]) for b in entry.get("batch_stats", []))}


def grpc_image_client(url: str, model: str, class_count: int, paths: list[str]) -> dict:
    """grpc_image_client.py's calls: ModelMetadata, ModelConfig, ModelInfer with raw contents, on the raw stub."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))
    metadata = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=model, version=""))
    config = stub.ModelConfig(service_pb2.ModelConfigRequest(name=model, version="")).config
    if len(metadata.inputs) != 1 or len(metadata.outputs) != 1 or len(config.input) != 1:
        raise Exception("expecting 1 input and 1 output")
    if metadata.outputs[0].datatype != "FP32":
        raise Exception("expecting output datatype to be FP32")
    input_batch_dim = config.max_batch_size > 0
    if len(metadata.inputs[0].shape) != 3 + (1 if input_batch_dim else 0):
        raise Exception("expecting a 3-dimensional image input")
    fmt = config.input[0].format
    if fmt not in (mc.ModelInput.FORMAT_NCHW, mc.ModelInput.FORMAT_NHWC):
        raise Exception("unexpected input format " + mc.ModelInput.Format.Name(fmt))
    dims = list(metadata.inputs[0].shape)[1:] if input_batch_dim else list(metadata.inputs[0].shape)
    h, w, c = dims if fmt == mc.ModelInput.FORMAT_NHWC else (dims[1], dims[2], dims[0])
    dtype = metadata.inputs[0].datatype
    images = [np.load(p).astype(triton_to_np_dtype(dtype)) for p in paths]
    request = service_pb2.ModelInferRequest(model_name=model, model_version="")
    output = service_pb2.ModelInferRequest().InferRequestedOutputTensor(name=metadata.outputs[0].name)
    output.parameters["classification"].int64_param = class_count
    request.outputs.extend([output])
    tensor = service_pb2.ModelInferRequest().InferInputTensor(name=metadata.inputs[0].name, datatype=dtype)
    tensor.shape.extend([len(images), h, w, c])
    request.inputs.extend([tensor])
    request.raw_input_contents.extend([b"".join(i.tobytes() for i in images)])
    response = stub.ModelInfer(request)
    if len(response.outputs) != 1 or len(response.raw_output_contents) != 1:
        raise Exception("expected 1 output with raw contents")
    raw, strings, offset = response.raw_output_contents[0], [], 0
    while offset < len(raw):  # deserialize_bytes_tensor: 4-byte little-endian length, then the bytes
        (length,) = struct.unpack_from("<I", raw, offset)
        strings.append(raw[offset + 4:offset + 4 + length])
        offset += 4 + length
    contents = np.reshape(np.array(strings, dtype=object), response.outputs[0].shape)
    return {"parsed": [config.max_batch_size, metadata.inputs[0].name, metadata.outputs[0].name, c, h, w,
                       mc.ModelInput.Format.Name(fmt), dtype],
            "classes": [["".join(chr(x) for x in r).split(":") for r in row] for row in contents]}


def main() -> None:
    protocol, url, model, class_count, *paths = sys.argv[1:]
    if protocol == "grpc-stub":
        print(json.dumps(grpc_image_client(url, model, int(class_count), paths)))
        return
    client_module = grpcclient if protocol == "grpc" else httpclient
    client = client_module.InferenceServerClient(url=url)
    if protocol == "grpc":
        metadata = client.get_model_metadata(model_name=model, as_json=True)
        config = client.get_model_config(model_name=model, as_json=True)["config"]
    else:
        metadata = client.get_model_metadata(model_name=model)
        config = client.get_model_config(model_name=model)
    max_batch_size, input_name, output_name, c, h, w, fmt, dtype = parse_model(metadata, config)
    images = [np.load(p).astype(triton_to_np_dtype(dtype)) for p in paths]
    if fmt == mc.ModelInput.FORMAT_NCHW:
        images = [np.transpose(i, (2, 0, 1)) for i in images]
    batch = np.stack(images, axis=0)
    before = statistics(client, protocol, model)
    inputs = [client_module.InferInput(input_name, batch.shape, dtype)]
    inputs[0].set_data_from_numpy(batch)
    outputs = [client_module.InferRequestedOutput(output_name, class_count=int(class_count))]
    result = client.infer(model, inputs, outputs=outputs)
    output_array = result.as_numpy(output_name)
    classes = []
    for row in output_array:  # postprocess(): each result is "score:index:label"
        classes.append([(r.decode() if isinstance(r, bytes) else str(r)).split(":") for r in row])
    print(json.dumps({"parsed": [max_batch_size, input_name, output_name, c, h, w,
                                 mc.ModelInput.Format.Name(fmt), dtype],
                      "config": config, "classes": classes, "before": before,
                      "after": statistics(client, protocol, model)}))


if __name__ == "__main__":
    main()
