"""PyTriton: Triton's dynamic batcher in front of a Python function calling the SavedModel (run from
.venv-pytriton: numpy < 2, TensorFlow 2.18). Clients speak KServe V2 (HTTP, binary tensor extension):
input ``image`` BYTES [1, 1] -> outputs ``label`` INT32 and ``score`` FP32 [1, 1]."""

from __future__ import annotations

import signal
import threading

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from bench.peers.model import Classifier, settings

config = settings()
classifier = Classifier(config["version_dir"])


@batch
def infer(image: np.ndarray) -> dict[str, np.ndarray]:
    labels, scores = classifier.top1([bytes(i) for i in image[:, 0]])
    return {"label": np.array(labels, np.int32)[:, None], "score": np.array(scores, np.float32)[:, None]}


def main() -> None:
    port = config["port"]
    triton_config = TritonConfig(http_address="127.0.0.1", http_port=port, grpc_address="127.0.0.1",
                                 grpc_port=port + 1, metrics_port=port + 2, allow_metrics=False)
    with Triton(config=triton_config) as triton:
        triton.bind(model_name="peer", infer_func=infer,
                    inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
                    outputs=[Tensor(name="label", dtype=np.int32, shape=(1,)),
                             Tensor(name="score", dtype=np.float32, shape=(1,))],
                    config=ModelConfig(max_batch_size=config["max_batch_size"], batcher=DynamicBatcher(
                        max_queue_delay_microseconds=int(config["batch_wait_s"] * 1e6))))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        triton.run()
        stop.wait()  # leaving the with-block runs triton.stop(), which also ends tritonserver


if __name__ == "__main__":
    main()
