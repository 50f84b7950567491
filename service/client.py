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
        """``{"model", "version", "predictions": [[{"label", "score"}, ...], ...]}`` for encoded images."""
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
