"""Closed-loop HTTP and gRPC clients that sort every request's outcome: the soak and the shutdown test use them.

Every request ends in exactly one of:
- served: 200 / OK;
- rejected: the server refused it cleanly (HTTP 503 with Retry-After, gRPC UNAVAILABLE with the server's
  own message): safe to retry;
- refused: the connection was refused (nothing listening): safe to retry elsewhere;
- lost: anything else (a reset, a closed connection without an answer, a timeout, a 500, a 504): the
  client cannot know whether it was processed. The goal is zero.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import httpx

# UNAVAILABLE messages the server itself sends (service/core/errors.py raisers): clean rejections.
SERVER_UNAVAILABLE = ("queue full", "too many concurrent requests", "shutting down", "no version ready", "is loading")
REFUSED_MARKERS = ("connection refused", "failed to connect to all addresses")


@dataclass
class Tally:
    """Outcomes of many requests, from many threads."""

    offered: int = 0  # requests sent by an open loop
    generator_lag_s: float = 0.0  # how late the open loop started its latest-started request
    served: int = 0
    rejected: int = 0
    refused: int = 0
    lost: Counter = field(default_factory=Counter)  # reason -> count
    latencies_s: list[tuple[float, float]] = field(default_factory=list)  # (finished at, seconds) of served
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: str, started: float, reason: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            if outcome == "served":
                self.served += 1
                self.latencies_s.append((now, now - started))
            elif outcome == "rejected":
                self.rejected += 1
            elif outcome == "refused":
                self.refused += 1
            else:
                self.lost[reason[:160]] += 1

    @property
    def lost_count(self) -> int:
        return sum(self.lost.values())

    def latency_ms(self, quantile: float) -> float | None:
        """A quantile (0-1) of the served requests' latencies, in milliseconds."""
        if not self.latencies_s:
            return None
        ordered = sorted(seconds for _, seconds in self.latencies_s)
        return round(1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))], 1)

    def summary(self) -> dict:
        return {"served": self.served, "rejected_503": self.rejected, "refused": self.refused,
                "lost": self.lost_count, "lost_reasons": dict(self.lost)}


def http_outcome(send: Callable[[], httpx.Response]) -> tuple[str, str]:
    try:
        return http_response_outcome(send())
    except httpx.HTTPError as exc:
        return http_error_outcome(exc)


def http_response_outcome(response: httpx.Response) -> tuple[str, str]:
    if response.status_code == 200:
        return "served", ""
    if response.status_code == 503 and response.headers.get("retry-after"):
        return "rejected", ""
    return "lost", f"HTTP {response.status_code}: {response.text[:100]}"


def http_error_outcome(exc: httpx.HTTPError) -> tuple[str, str]:
    if isinstance(exc, httpx.ConnectError) and "refused" in str(exc).lower():
        return "refused", ""
    return "lost", f"{type(exc).__name__}: {exc}"


def grpc_outcome(call: Callable[[], object]) -> tuple[str, str]:
    import grpc

    try:
        call()
    except grpc.RpcError as exc:
        return grpc_error_outcome(exc)
    return "served", ""


def grpc_error_outcome(exc) -> tuple[str, str]:
    """The outcome of a failed call (a ``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    import grpc

    details = (exc.details() or "").lower()
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        if any(m in details for m in REFUSED_MARKERS):
            return "refused", ""
        if any(m in details for m in SERVER_UNAVAILABLE):
            return "rejected", ""
    return "lost", f"{exc.code().name}: {exc.details()}"


class Load:
    """``clients`` threads, each calling ``one_request(tally)`` back to back (closed loop) until stopped."""

    def __init__(self, clients: list[Callable[["Load"], None]]):
        self.stopping = threading.Event()
        self._threads = [threading.Thread(target=client, args=(self,), daemon=True) for client in clients]

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self._threads:
            t.join(timeout=60)


def http_client(url: str, tally: Tally, path: str, body: dict, *, timeout_s: float = 30.0,
                pause_s: float = 0.0) -> Callable[[Load], None]:
    """A client that POSTs ``body`` as JSON to ``path`` over one pooled keep-alive connection."""

    def run(load: Load) -> None:
        with httpx.Client(base_url=url, timeout=timeout_s) as client:
            while not load.stopping.is_set():
                started = time.monotonic()
                outcome, reason = http_outcome(lambda: client.post(path, json=body))
                tally.add(outcome, started, reason)
                if outcome != "served" or pause_s:
                    time.sleep(max(pause_s, 0.02 if outcome != "served" else 0))

    return run


def grpc_client(target: str, tally: Tally, make_call: Callable[[object], Callable[[], object]], *,
                pause_s: float = 0.0) -> Callable[[Load], None]:
    """A client on one channel; ``make_call(channel)`` gives the call to repeat (it sets its own deadline)."""

    def run(load: Load) -> None:
        import grpc

        with grpc.insecure_channel(target) as channel:
            call = make_call(channel)
            while not load.stopping.is_set():
                started = time.monotonic()
                outcome, reason = grpc_outcome(call)
                tally.add(outcome, started, reason)
                if outcome != "served" or pause_s:
                    time.sleep(max(pause_s, 0.02 if outcome != "served" else 0))

    return run
