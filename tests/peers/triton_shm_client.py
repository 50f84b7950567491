"""Run by tests in a venv of its own (tritonclient needs protobuf < 7): the flows of Triton's
``simple_{http,grpc}_shm_client.py`` and ``reuse_infer_objects_client.py`` against tlserve, then the model
repository (index, unload, load) and the errors the server must answer clearly.

    .venv-triton/bin/python tests/peers/triton_shm_client.py http|grpc URL MODEL

MODEL takes INPUT0 and INPUT1 (INT32 [1, 16]) and answers OUTPUT0 = sum and OUTPUT1 = difference, as Triton's
``simple`` model. Prints one JSON line.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils as utils
import tritonclient.utils.shared_memory as shm

protocol, url, model = sys.argv[1:4]
lib = grpcclient if protocol == "grpc" else httpclient
client = lib.InferenceServerClient(url)
tag = f"{protocol}_{np.random.randint(1 << 30)}"  # keys of this run only: tests may run side by side


def field(output, name):
    return getattr(output, name) if protocol == "grpc" else output[name]


def error_of(call):
    """The server's answer to a bad call: [status, message] (status "400" over HTTP, "StatusCode.X" over gRPC)."""
    try:
        call()
    except utils.InferenceServerException as exc:
        return [str(exc.status()), exc.message()]
    return None


def shm_flow():
    """simple_*_shm_client.py: regions created, registered, inputs and outputs in them, read back, unregistered."""
    client.unregister_system_shared_memory()
    input0, input1 = np.arange(16, dtype=np.int32), np.ones(16, dtype=np.int32)
    size = input0.size * input0.itemsize
    out_handle = shm.create_shared_memory_region("output_data", f"/output_{tag}", size * 2)
    client.register_system_shared_memory("output_data", f"/output_{tag}", size * 2)
    in_handle = shm.create_shared_memory_region("input_data", f"/input_{tag}", size * 2)
    shm.set_shared_memory_region(in_handle, [input0])
    shm.set_shared_memory_region(in_handle, [input1], offset=size)
    client.register_system_shared_memory("input_data", f"/input_{tag}", size * 2)
    inputs = [lib.InferInput("INPUT0", [1, 16], "INT32"), lib.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_shared_memory("input_data", size)
    inputs[1].set_shared_memory("input_data", size, offset=size)
    outputs = [lib.InferRequestedOutput("OUTPUT0"), lib.InferRequestedOutput("OUTPUT1")]
    outputs[0].set_shared_memory("output_data", size)
    outputs[1].set_shared_memory("output_data", size, offset=size)
    results = client.infer(model_name=model, inputs=inputs, outputs=outputs)
    out0, out1 = results.get_output("OUTPUT0"), results.get_output("OUTPUT1")
    sums = shm.get_contents_as_numpy(out_handle, utils.triton_to_np_dtype(field(out0, "datatype")),
                                     field(out0, "shape"))
    diffs = shm.get_contents_as_numpy(out_handle, utils.triton_to_np_dtype(field(out1, "datatype")),
                                      field(out1, "shape"), offset=size)
    status = client.get_system_shared_memory_status(as_json=True) if protocol == "grpc" else \
        client.get_system_shared_memory_status()
    one = client.get_system_shared_memory_status("input_data", **({"as_json": True} if protocol == "grpc" else {}))
    answer = {"sum": sums.tolist(), "difference": diffs.tolist(), "status": status, "one": one,
              # data in the response for an output written to shared memory (there must be none)
              "response_data": "data" in out0 if protocol == "http" else bool(out0.contents.ListFields())}
    answer["errors"] = bounds_errors(size)
    client.unregister_system_shared_memory("input_data")
    client.unregister_system_shared_memory("output_data")
    answer["after"] = client.get_system_shared_memory_status(**({"as_json": True} if protocol == "grpc" else {}))
    shm.destroy_shared_memory_region(in_handle)
    shm.destroy_shared_memory_region(out_handle)
    return answer


def bounds_errors(size):
    """Every bound the server checks, each a clear client error."""
    def infer(region, byte_size, offset=0, output=False):
        inputs = [lib.InferInput("INPUT0", [1, 16], "INT32"), lib.InferInput("INPUT1", [1, 16], "INT32")]
        zeros = np.zeros((1, 16), dtype=np.int32)
        inputs[1].set_data_from_numpy(zeros)
        outputs = None
        if output:
            inputs[0].set_data_from_numpy(zeros)
            outputs = [lib.InferRequestedOutput("OUTPUT0")]
            outputs[0].set_shared_memory(region, byte_size, offset=offset)
        else:
            inputs[0].set_shared_memory(region, byte_size, offset=offset)
        return lambda: client.infer(model_name=model, inputs=inputs, outputs=outputs)

    return {
        "unknown_key": error_of(lambda: client.register_system_shared_memory("nokey", f"/missing_{tag}", 64)),
        "too_big": error_of(lambda: client.register_system_shared_memory("big", f"/input_{tag}", size * 3)),
        "twice": error_of(lambda: client.register_system_shared_memory("input_data", f"/input_{tag}", size)),
        "unknown_region": error_of(infer("nope", size)),
        "past_region": error_of(infer("input_data", size, offset=size + 4)),
        "wrong_size": error_of(infer("input_data", size - 4)),
        "output_too_small": error_of(infer("output_data", size - 4, output=True)),
        "cuda_register": error_of(lambda: client.register_cuda_shared_memory("gpu", b"\0" * 64, 0, 64)),
    }


def reuse_flow():
    """reuse_infer_objects_client.py: the same InferInput/InferRequestedOutput objects with and without shm."""
    client.unregister_system_shared_memory()
    client.unregister_cuda_shared_memory()
    input0, input1 = np.arange(16, dtype=np.int32), np.ones(16, dtype=np.int32)
    size = input0.size * input0.itemsize
    handles = {}
    for name in ("output0_data", "output1_data", "input0_data", "input1_data"):
        handles[name] = shm.create_shared_memory_region(name, f"/{name}_{tag}", size)
        if name.startswith("input"):
            shm.set_shared_memory_region(handles[name], [input0 if name == "input0_data" else input1])
        client.register_system_shared_memory(name, f"/{name}_{tag}", size)
    inputs = [lib.InferInput("INPUT0", [1, 16], "INT32"), lib.InferInput("INPUT1", [1, 16], "INT32")]
    outputs = [lib.InferRequestedOutput("OUTPUT0"), lib.InferRequestedOutput("OUTPUT1")]
    checks = []
    for use_shm in (True, False, True):
        second = input1 if use_shm else input1 * 2
        if use_shm:
            inputs[0].set_shared_memory("input0_data", size)
            inputs[1].set_shared_memory("input1_data", size)
            outputs[0].set_shared_memory("output0_data", size)
            outputs[1].set_shared_memory("output1_data", size)
        else:
            inputs[0].set_data_from_numpy(np.expand_dims(input0, axis=0))
            inputs[1].set_data_from_numpy(np.expand_dims(second, axis=0))
            outputs[0].unset_shared_memory()
            outputs[1].unset_shared_memory()
        results = client.infer(model_name=model, inputs=inputs, outputs=outputs)
        got = []
        for out_name, handle in (("OUTPUT0", "output0_data"), ("OUTPUT1", "output1_data")):
            output = results.get_output(out_name)
            got.append(shm.get_contents_as_numpy(handles[handle], utils.triton_to_np_dtype(field(output, "datatype")),
                                                 field(output, "shape")) if use_shm else results.as_numpy(out_name))
        checks.append(bool((got[0][0] == input0 + second).all() and (got[1][0] == input0 - second).all()))
    client.unregister_system_shared_memory()
    for handle in handles.values():
        shm.destroy_shared_memory_region(handle)
    return checks


def repository_flow():
    index = client.get_model_repository_index(as_json=True) if protocol == "grpc" else \
        client.get_model_repository_index()
    client.unload_model(model)
    unloaded = client.is_model_ready(model)
    client.load_model(model)
    return {"index": index, "ready_after_unload": unloaded, "ready_after_load": client.is_model_ready(model)}


metadata = client.get_server_metadata(**({"as_json": True} if protocol == "grpc" else {}))
print(json.dumps({"extensions": metadata["extensions"], "shm": shm_flow(), "reuse": reuse_flow(),
                  "repository": repository_flow()}))
