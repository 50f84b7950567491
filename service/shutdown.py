"""Graceful shutdown of the serving process on SIGTERM: not ready -> drain delay -> stop accepting -> finish -> exit.

Kubernetes sends SIGTERM and removes the pod from its Service's endpoints at about the same time, and the
removal takes a moment to reach every load balancer. So on SIGTERM the server:
1. turns readiness false (HTTP ``/readyz`` 503, gRPC health NOT_SERVING) but keeps answering, with
   ``Connection: close`` on HTTP so that clients stop reusing their connections, for ``drain_delay_s``;
2. stops listening: new HTTP connections and new gRPC calls are refused at once (a refused connection is
   safe to retry elsewhere; a connection left waiting in the listen backlog would only be reset later);
3. lets in-flight requests finish within ``shutdown_grace_s`` (uvicorn's graceful shutdown for HTTP,
   ``server.stop(grace)`` for gRPC), then the process exits.
A second SIGTERM or a SIGINT skips the rest of the drain delay.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from typing import Callable

log = logging.getLogger(__name__)


def close_listeners(listeners: list[socket.socket]) -> None:
    """Stop listening on sockets this process may share with its parent (BentoML's arbiter opened the HTTP
    one): ``shutdown`` acts on the socket itself, not just this process's descriptor, so new connections are
    refused instead of queueing in a backlog nobody accepts from."""
    for listener in listeners:
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError as exc:  # already closed: nothing to refuse
            log.debug("listening socket already closed: %s", exc)


class GracefulShutdown:
    """Owns SIGTERM and SIGINT in the serving process; hands over to the server's own handler after draining."""

    def __init__(self, runtime, listeners: Callable[[], list[socket.socket]]):
        self.runtime = runtime
        self._listeners = listeners
        self._previous: dict[int, object] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
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
        elif self._task is None and sig == signal.SIGTERM:
            log.info("SIGTERM: not ready; draining for %.1f s", self.runtime.settings.drain_delay_s)
            self._task = self._loop.create_task(self.run(), name="graceful-shutdown")
        elif self._task is not None:
            self._task.cancel()  # cut the drain delay short: run() stops accepting and hands over
        else:
            self._finish(sig)

    async def run(self) -> None:
        await self.runtime.drain()
        try:
            await asyncio.sleep(self.runtime.settings.drain_delay_s)
        finally:
            self._finish(signal.SIGTERM)

    def _finish(self, sig: int) -> None:
        log.info("no longer accepting connections; in-flight requests have %.1f s",
                 self.runtime.settings.shutdown_grace_s)
        close_listeners(self._listeners())
        self.runtime.stop_accepting()
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
