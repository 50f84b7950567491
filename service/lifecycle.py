"""The lifecycle of a serving process, one for every entry point: start, then on SIGTERM: not ready -> drain delay
-> stop accepting -> finish -> exit 0.

Kubernetes sends SIGTERM and removes the pod from its Service's endpoints at about the same time, and the
removal takes a moment to reach every load balancer. So on SIGTERM the server:
1. turns readiness false (HTTP ``/readyz`` 503, gRPC health NOT_SERVING) but keeps answering, with
   ``Connection: close`` on HTTP so that clients stop reusing their connections, for ``drain_delay_s``;
2. stops listening: new HTTP connections and new gRPC calls are refused at once (a refused connection is
   safe to retry elsewhere; a connection left waiting in the listen backlog would only be reset later);
3. lets in-flight requests finish within ``shutdown_grace_s`` (uvicorn's graceful shutdown for HTTP,
   ``server.stop(grace)`` for gRPC), then the process exits with status 0.
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
from collections.abc import Callable, Coroutine
from typing import Any

import uvicorn

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
    loop = asyncio.get_running_loop()
    for listener in listeners:
        # An accept loop on this very descriptor (tlserve-model-server's uvicorn) stops first: accept() on a shut
        # down socket fails at once, again and again, until the server closes. (BentoML's worker accepts on a
        # descriptor of its own; its uvicorn closes right after the hand-over.)
        loop.remove_reader(listener.fileno())
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


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run a serving process's main coroutine on uvloop when it is installed (a dependency on Linux), the loop
    uvicorn's "auto" picks under BentoML too: HTTP and gRPC share it, and both measured faster on it
    (docs/benchmarks.md, issue 14)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


class Lifecycle:
    """The one lifecycle of a serving process: start, then on SIGTERM the sequence above, then stop.

    Every entry point uses it: ``tlserve serve`` (BentoML's worker drives it from its start-up and shutdown hooks),
    ``tlserve-model-server`` (``serve`` below, with REST or gRPC only) and ``create_app``'s lifespan (plain uvicorn,
    the tests). It owns SIGTERM and SIGINT; once no longer accepting it hands over to ``stop_http(sig)``, which makes
    the HTTP server finish its in-flight requests and return. Without one, the hand-over goes to the signal handler
    installed before ours (BentoML's uvicorn: stop, wait ``--timeout-graceful-shutdown``, run the shutdown hooks)."""

    def __init__(self, runtime, listeners: Callable[[], list[socket.socket]] = list,
                 stop_http: Callable[[int], None] | None = None):
        self.runtime = runtime
        self._listeners = listeners
        self._stop_http = stop_http
        self._previous: dict[int, Any] = {}  # what signal.signal() returned: a handler, SIG_DFL, SIG_IGN or None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._skip_delay = asyncio.Event()  # a second signal cuts the drain delay short
        self.handed_over = asyncio.Event()  # no longer accepting: what is in flight finishes, then ``stop``

    async def start(self) -> None:
        """Take over the signals (a SIGTERM while the models load is not lost), then start the runtime."""
        self.install()
        await self.runtime.start()

    async def stop(self) -> None:
        """gRPC's in-flight calls finish (within the grace, counted from when it stopped accepting), models unload."""
        await self.runtime.stop()

    def install(self) -> bool:
        """Take over SIGTERM and SIGINT (from the running loop, in the main thread: the only place Python allows it).

        Under a server that installs its own handlers (uvicorn), call it after they are installed."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return True

    def _on_signal(self, sig: int, frame) -> None:
        assert self._loop is not None  # installed by start(), on the running loop
        self._loop.call_soon_threadsafe(self._handle, sig)

    def _handle(self, sig: int) -> None:
        if self.handed_over.is_set():
            self._hand_over(sig)  # a second signal: e.g. uvicorn stops waiting for in-flight requests
        elif self._task is None:
            assert self._loop is not None
            self._task = self._loop.create_task(self.shutdown(sig), name="graceful-shutdown")
        else:
            self._skip_delay.set()

    async def shutdown(self, sig: int = signal.SIGTERM) -> None:
        """Drain (SIGTERM only), stop accepting, then hand over to the HTTP server to finish in-flight requests."""
        settings = self.runtime.settings
        if sig == signal.SIGTERM:
            log.info("SIGTERM: not ready; draining for %.1f s", settings.drain_delay_s)
            await self.runtime.drain()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._skip_delay.wait(), settings.drain_delay_s)
        log.info("no longer accepting connections; in-flight requests have %.1f s", settings.shutdown_grace_s)
        self.runtime.stop_accepting()
        await close_listeners(self._listeners())
        self.handed_over.set()
        self._hand_over(sig)

    def _hand_over(self, sig: int) -> None:
        if self._stop_http is not None:
            self._stop_http(sig)
            return
        previous = self._previous.get(sig)
        if callable(previous):
            previous(sig, None)
        elif self._previous:  # no handler before ours: the default action
            signal.signal(sig, previous or signal.SIG_DFL)
            signal.raise_signal(sig)


class _HttpServer(uvicorn.Server):
    """uvicorn without signal handlers of its own: the Lifecycle owns SIGTERM and SIGINT and says when to stop.

    (uvicorn's own handlers would stop listening at once, with no drain delay, and re-raise the signal once done,
    which makes the exit status 143 instead of 0.)"""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    def stop(self, sig: int) -> None:
        """Stop: close the listeners, give in-flight requests ``timeout_graceful_shutdown``; again: at once."""
        self.force_exit = self.should_exit
        self.should_exit = True


async def serve(runtime, app=None) -> None:
    """Serve ``runtime`` in this process until SIGTERM or SIGINT: REST (``app`` under uvicorn on the settings' HTTP
    address) when given, and gRPC (when its port is set). Returns once shut down: the exit status is then 0."""
    settings = runtime.settings
    if app is None:
        lifecycle = Lifecycle(runtime, stop_http=lambda sig: None)
        await lifecycle.start()
        try:
            await lifecycle.handed_over.wait()
        finally:
            await lifecycle.stop()
        return
    tls = settings.tls_cert_file is not None
    config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port, log_level="warning",
                            timeout_graceful_shutdown=settings.shutdown_grace_s,
                            ssl_certfile=str(settings.tls_cert_file) if tls else None,
                            ssl_keyfile=str(settings.tls_key_file) if tls else None)
    server = _HttpServer(config)
    listener = config.bind_socket()
    lifecycle = Lifecycle(runtime, lambda: [listener], stop_http=server.stop)
    await lifecycle.start()
    try:
        await server.serve(sockets=[listener])
    finally:
        await lifecycle.stop()
