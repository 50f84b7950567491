"""Run by tests in a venv of its own (tritonclient needs protobuf < 7): Triton's gRPC client against tlserve.

    .venv-triton/bin/python tests/peers/triton_v2_client.py HOST:PORT MODEL IMAGE_FILE...

Prints one JSON line: server liveness/readiness, model metadata and the scores of the images.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as triton


def main() -> None:
    url, model, *paths = sys.argv[1:]
    client = triton.InferenceServerClient(url)
    images = np.array([open(p, "rb").read() for p in paths], dtype=object)
    request = triton.InferInput("images", [len(images)], "BYTES")
    request.set_data_from_numpy(images)
    result = client.infer(model, [request], outputs=[triton.InferRequestedOutput("scores")])
    metadata = client.get_model_metadata(model, as_json=True)
    print(json.dumps({
        "live": client.is_server_live(), "ready": client.is_server_ready(), "model_ready": client.is_model_ready(model),
        "inputs": metadata["inputs"], "scores": result.as_numpy("scores").tolist(),
    }))


if __name__ == "__main__":
    main()
