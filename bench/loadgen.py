"""Load generators, both logging every request (start, ok, latency) for bench.stats.window.

- closed loop: h2load (nghttp2-client, compiled, one thread) — ``concurrency`` connections, each sending the
  next request as soon as the previous answer arrived. HTTP/1.1 for HTTP servers, h2c for gRPC (the body is
  a framed gRPC message; h2load does not read grpc-status, so the harness checks each gRPC endpoint with a
  real client before loading it). Its CPU time is measured from the kernel's rusage of the child.
- open loop: Python asyncio in the harness, one request started every 1/rate s whatever the answers, the
  latency measured from the planned start (so a stalled server is not hidden by a stalled generator).
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.stats import Request

_FINISHED = re.compile(r"finished in")
MARGIN_S = 0.5


@dataclass(frozen=True)
class Endpoint:
    """One way to call one system: the URL, the exact body and headers of every request."""

    system: str
    api: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    grpc: bool = False


@dataclass
class Run:
    requests: list[Request]
    window_start_s: float  # time.time() at which measuring starts (after the warm-up)
    loadgen_cpu_s: float
    closed: bool = True  # closed loop: a window of answers by end; open loop: every planned request counts


def closed_loop(endpoint: Endpoint, concurrency: int, seconds: float, warmup_s: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as tmp:
        body, log = Path(tmp) / "body", Path(tmp) / "log.tsv"
        body.write_bytes(endpoint.body)
        # No --warm-up-time: h2load then logs only requests started after it, so answers to requests started in
        # the warm-up would be missing from the window. It runs warm-up + window + a margin instead, logging all.
        command = ["h2load", "-c", str(concurrency), "-m", "1", "-D", _ms(warmup_s + seconds + MARGIN_S),
                   "-d", str(body), "--log-file", str(log)]
        if not endpoint.grpc:
            command.append("--h1")
        for name, value in endpoint.headers.items():
            command += ["-H", f"{name}: {value}"]
        command.append(endpoint.url)
        launched = time.time()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = process.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0 or not _FINISHED.search(output):
            raise RuntimeError(f"h2load failed ({process.returncode}): {output[-2000:]}")
        requests = [_logged(line) for line in log.read_text().splitlines() if line.strip()]
    # The window starts ``warmup_s`` after the first request, and ends before h2load stops (the margin), so
    # every answer inside it was logged. No answer at all (a server slower than the run) is a point of 0 img/s.
    first = min((r.start_s for r in requests), default=launched)
    return Run(requests, first + warmup_s, usage.ru_utime + usage.ru_stime)


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"  # h2load takes whole units only


def _logged(line: str) -> Request:
    start_us, status, duration_us = line.split("\t")[:3]
    return Request(start_s=int(start_us) / 1e6, ok=status.strip() == "200", latency_s=int(duration_us) / 1e6)


def open_loop(endpoint: Endpoint, rate: float, seconds: float) -> Run:
    """``rate`` requests per second for ``seconds`` (plus the answers' tail), from this process."""
    cpu_before = _own_cpu()
    requests, window_start = asyncio.run(_open_loop(endpoint, rate, seconds))
    return Run(requests, window_start, _own_cpu() - cpu_before, closed=False)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _open_loop(endpoint: Endpoint, rate: float, seconds: float) -> tuple[list[Request], float]:
    send, close = await _sender(endpoint)
    requests: list[Request] = []

    async def one(planned_wall: float, planned: float) -> None:
        await asyncio.sleep(max(0.0, planned - time.monotonic()))
        try:
            ok = await send()
        except Exception:  # noqa: BLE001 - a failed request is an error figure, not a harness failure
            ok = False
        requests.append(Request(planned_wall, ok, time.monotonic() - planned))

    t0, wall0 = time.monotonic() + 0.2, time.time() + 0.2
    count = int(rate * seconds)
    try:
        await asyncio.wait_for(asyncio.gather(*(one(wall0 + i / rate, t0 + i / rate) for i in range(count))),
                               timeout=seconds + 60)
    finally:
        await close()
    return requests, wall0


async def _sender(endpoint: Endpoint):
    """``(send, close)``: ``send()`` makes one request and says whether it succeeded."""
    if endpoint.grpc:
        import grpc

        target, method = endpoint.url.removeprefix("http://").split("/", 1)
        channel = grpc.aio.insecure_channel(target)
        call = channel.unary_unary("/" + method)  # no (de)serializers: the framed message's payload as bytes
        message = endpoint.body[5:]

        async def send() -> bool:
            await call(message, timeout=30)  # raises on any status but OK
            return True

        return send, channel.close
    import aiohttp

    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                    connector=aiohttp.TCPConnector(limit=0))

    async def send() -> bool:
        async with session.post(endpoint.url, data=endpoint.body, headers=endpoint.headers) as response:
            await response.read()
            return response.status == 200

    return send, session.close
