"""A small HTTP client for ``/classify``, used by ``tlserve predict`` (and usable from any Python code)."""

from __future__ import annotations

import httpx


class ClientError(ConnectionError):
    """The server could not be reached, or answered with an error (its message is kept)."""


class HttpClient:
    def __init__(self, url: str = "http://127.0.0.1:3000", timeout_s: float = 60.0):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def classify(self, images: list[bytes], *, model: str | None = None, top_k: int = 3) -> dict:
        """``{"model", "version", "predictions": [[{"label", "score"}, ...], ...], "confident": [bool, ...]}`` for
        encoded images (``confident`` only from a server that answers it: one from before issue 16 does not)."""
        data = {"top_k": str(top_k)}
        if model:
            data["model"] = model
        files = [("images", (f"image{i}", image, "application/octet-stream")) for i, image in enumerate(images)]
        try:
            response = httpx.post(f"{self.url}/classify", data=data, files=files, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.url}: {exc}") from exc
        if response.status_code != 200:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise ClientError(f"{self.url} answered {response.status_code}: {message}")
        return response.json()


class GrpcClient:
    """The same call over gRPC, through tlserve's Classifier service."""

    def __init__(self, target: str = "127.0.0.1:8500", timeout_s: float = 60.0):
        self.target = target
        self.timeout_s = timeout_s

    def classify(self, images: list[bytes], *, model: str | None = None, top_k: int = 3) -> dict:
        """Same answer shape as ``HttpClient.classify``."""
        import grpc

        from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc

        request = classifier_pb2.ClassifyRequest(model=model or "", images=images, top_k=top_k)
        with grpc.insecure_channel(self.target) as channel:
            try:
                response = classifier_pb2_grpc.ClassifierStub(channel).Classify(request, timeout=self.timeout_s)
            except grpc.RpcError as exc:
                raise ClientError(f"{self.target} answered {exc.code().name}: {exc.details()}") from exc
        # ``confident`` is a plain proto3 bool: always present (False from a server from before issue 16).
        return {"model": response.model, "version": str(response.version),
                "predictions": [[{"label": label.label, "score": label.score} for label in result.labels]
                                for result in response.results],
                "confident": [result.confident for result in response.results]}
