"""Run by tests in a venv of its own (kserve pins its own grpcio and protobuf): KServe's gRPC client against tlserve.

    /path/to/kserve-venv/bin/python tests/peers/kserve_v2_client.py HOST:PORT IMAGE_FILE

Prints one JSON line: for half_plus_two's ``x`` sent in typed contents and in raw contents, and for the shapes
model's ``classes`` (BYTES), what KServe's InferenceGRPCClient decodes and which fields the answer used (KServe's own
stub, then ``InferResponse.from_grpc``, as its client does).
"""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest, InferResponse
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub


def _x(binary: bool) -> InferRequest:
    x = InferInput("x", [3, 1], "FP32")
    x.set_data_from_numpy(np.array([[1.0], [2.0], [5.0]], np.float32), binary_data=binary)
    return InferRequest(model_name="half_plus_two", infer_inputs=[x], request_id="kserve-1")


def _classes(image: bytes) -> InferRequest:
    images = InferInput("images", [1], "BYTES", data=[image])  # typed bytes_contents (set_data_from_numpy wants UTF-8)
    return InferRequest(model_name="shapes", infer_inputs=[images], request_outputs=[RequestedOutput("classes")])


async def main() -> None:
    url, image_path = sys.argv[1:]
    with open(image_path, "rb") as f:
        image = f.read()
    client = InferenceGRPCClient(url, timeout=60)
    stub = GRPCInferenceServiceStub(client._channel)
    answer: dict = {"live": await client.is_server_live(), "ready": await client.is_server_ready()}
    for key, request in (("typed", _x(False)), ("raw", _x(True)), ("bytes", _classes(image))):
        decoded = await client.infer(request)
        wire = await stub.ModelInfer(request.to_grpc(), timeout=60)
        output = decoded.outputs[0]
        values = output.as_numpy()
        answer[key] = {
            "id": decoded.id, "name": output.name, "datatype": output.datatype, "shape": list(output.shape),
            "values": [v.decode() if isinstance(v, bytes) else v for v in values.ravel().tolist()],
            "raw_output_contents": len(wire.raw_output_contents),
            "typed_fields": [f.name for t in wire.outputs for f, _ in t.contents.ListFields()],
            "from_grpc": InferResponse.from_grpc(wire).outputs[0].as_numpy().ravel().tolist() if key != "bytes"
            else None,
        }
    await client.close()
    print(json.dumps(answer))


if __name__ == "__main__":
    asyncio.run(main())
