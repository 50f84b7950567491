"""Graceful shutdown of the serving process on SIGTERM: not ready -> drain delay -> stop accepting -> finish -> exit.

Kubernetes sends SIGTERM and removes the pod from its Service's endpoints at about the same time, and the
removal takes a moment to reach every load balancer. So on SIGTERM the server:
1. turns readiness false (HTTP ``/readyz`` 503, gRPC health NOT_SERVING) but keeps answering, with
   ``Connection: close`` on HTTP so that clients stop reusing their connections, for ``drain_delay_s``;
2. stops listening: new HTTP connections and new gRPC calls are refused at once (a refused connection is
   safe to retry elsewhere; a connection left waiting in the listen backlog would only be reset later);
3. lets in-flight requests finish within ``shutdown_grace_s`` (uvicorn's graceful shutdown for HTTP,
   ``server.stop(grace)`` for gRPC), then the process exits.
A SIGINT (Ctrl-C) skips the drain delay; a second signal cuts it short.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import socket
import struct
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


SO_ATTACH_FILTER = 26  # Linux <asm-generic/socket.h>
_DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)  # classic BPF "ret #0": accept no packet
BACKLOG_WAIT_S = 1.0


async def close_listeners(listeners: list[socket.socket]) -> None:
    """Stop listening without resetting a connection the kernel has already accepted for us.

    ``shutdown`` on a listening socket acts on the socket itself, not just this process's descriptor (BentoML's
    arbiter holds another one), so new connections are refused instead of waiting in a backlog nobody accepts
    from. But it also resets the connections already waiting in that backlog. So first a socket filter drops
    new handshakes (their clients retry the SYN and then meet the refusal), the server accepts what is queued,
    and only then the socket stops listening. Off Linux, or without the filter, it just stops listening."""
    for listener in listeners:
        with contextlib.suppress(OSError):
            program = ctypes.create_string_buffer(_DROP_ALL)
            listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                                struct.pack("HL", 1, ctypes.addressof(program)))
    deadline = time.monotonic() + BACKLOG_WAIT_S
    while any(_backlog(listener) for listener in listeners) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for listener in listeners:
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError as exc:  # already closed: nothing to refuse
            log.debug("listening socket already closed: %s", exc)


def _backlog(listener: socket.socket) -> int:
    """Connections waiting to be accepted (Linux reports it in tcp_info.tcpi_unacked for a listener)."""
    try:
        return struct.unpack_from("I", listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 24)[0]
    except (OSError, AttributeError, struct.error):
        return 0


class GracefulShutdown:
    """Owns SIGTERM and SIGINT in the serving process; hands over to the server's own handler after draining."""

    def __init__(self, runtime, listeners: Callable[[], list[socket.socket]]):
        self.runtime = runtime
        self._listeners = listeners
        self._previous: dict[int, object] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._skip_delay = asyncio.Event()  # a second signal cuts the drain delay short
        self._handed_over = False

    def install(self) -> bool:
        """Take over the signals (from the running loop, in the main thread: the only place Python allows it).

        Call it after the server (uvicorn) has installed its own handlers: those run once the drain is over."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return True

    def _on_signal(self, sig: int, frame) -> None:
        self._loop.call_soon_threadsafe(self._handle, sig)

    def _handle(self, sig: int) -> None:
        if self._handed_over:
            self._call_previous(sig)  # e.g. uvicorn's: a second Ctrl-C forces the exit
        elif self._task is None:
            self._task = self._loop.create_task(self.run(sig), name="graceful-shutdown")
        else:
            self._skip_delay.set()

    async def run(self, sig: int = signal.SIGTERM) -> None:
        """Drain (SIGTERM only), stop accepting, then let the server's own handler finish in-flight requests."""
        if sig == signal.SIGTERM:
            log.info("SIGTERM: not ready; draining for %.1f s", self.runtime.settings.drain_delay_s)
            await self.runtime.drain()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._skip_delay.wait(), self.runtime.settings.drain_delay_s)
        log.info("no longer accepting connections; in-flight requests have %.1f s",
                 self.runtime.settings.shutdown_grace_s)
        self.runtime.stop_accepting()
        await close_listeners(self._listeners())
        self._handed_over = True
        self._call_previous(sig)

    def _call_previous(self, sig: int) -> None:
        """The server's own handler (uvicorn: stop, wait for in-flight requests, run the shutdown hooks)."""
        previous = self._previous.get(sig)
        if callable(previous):
            previous(sig, None)
        else:  # no handler before ours: the default action
            signal.signal(sig, previous or signal.SIG_DFL)
            signal.raise_signal(sig)
