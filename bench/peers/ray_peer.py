"""Ray Serve: one replica whose ``@serve.batch`` method calls the SavedModel (run from .venv-ray).

``POST /classify`` with ``{"images": [base64 JPEG]}`` -> ``{"predictions": [{"label", "score"}]}``.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import threading

import ray
from ray import serve
from starlette.requests import Request

from bench.peers.model import Classifier, settings

config = settings()


@serve.deployment(num_replicas=1, max_ongoing_requests=config["max_queue"], ray_actor_options={"num_cpus": 0})
class Peer:
    def __init__(self, version_dir: str):
        self.classifier = Classifier(version_dir)

    @serve.batch(max_batch_size=config["max_batch_size"], batch_wait_timeout_s=config["batch_wait_s"])
    async def top1(self, images: list[bytes]) -> list[dict]:
        # A thread keeps the replica's event loop free to gather the next batch meanwhile.
        return await asyncio.to_thread(self.classifier.answers, images)

    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        answers = await asyncio.gather(*(self.top1(base64.b64decode(i)) for i in body["images"]))
        return {"predictions": list(answers)}


def main() -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": config["port"]})
    serve.run(Peer.bind(config["version_dir"]), route_prefix="/classify")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
