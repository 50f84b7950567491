"""A bounded queue drained by one background thread: how every sink writes without delaying a request.

``offer`` never blocks and never raises: when the queue is full the item is dropped and counted (``on_drop``), so a
slow disk or an unreachable sink costs requests nothing. The writer is a daemon thread (file and socket writes
block; the event loop must not); ``close`` lets it finish what is queued, within a timeout.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class BackgroundWriter(Generic[T]):
    def __init__(self, name: str, write: Callable[[T], None], *, max_items: int,
                 on_drop: Callable[[str], None] = lambda reason: None, max_bytes: int | None = None,
                 size: Callable[[T], int] = lambda item: 0):
        """``write(item)`` runs in the writer thread, one item at a time; an exception it raises is logged and the
        item counted as dropped (reason "error"), the writer carries on. The queue holds at most ``max_items``
        items and, when given, ``max_bytes`` of their ``size`` (queued records keep request bytes alive)."""
        self.name, self.write, self.max_items, self.on_drop = name, write, max_items, on_drop
        self.max_bytes, self.size = max_bytes, size
        self._queued_bytes = 0
        self._items: deque[tuple[T, int]] = deque()
        self._ready = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._running = threading.Event()  # clear while a test stalls the writer (``stall``)
        self._running.set()
        self._busy = False  # the writer holds an item outside the queue
        self.written = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name=f"tlserve-{self.name}", daemon=True)
            self._thread.start()

    def offer(self, item: T) -> bool:
        """Queue ``item`` for the writer; False (and counted) when the queue is full or the writer closed."""
        size = self.size(item) if self.max_bytes is not None else 0
        with self._ready:
            if self._closing or len(self._items) >= self.max_items or \
                    (self.max_bytes is not None and self._queued_bytes + size > self.max_bytes):
                accepted = False
            else:
                self._items.append((item, size))
                self._queued_bytes += size
                self._ready.notify_all()  # the writer, and a flush waiting on the same condition
                accepted = True
        if not accepted:
            self.on_drop("queue_full" if not self._closing else "closed")
        return accepted

    def pending(self) -> int:
        return len(self._items)

    def stall(self, stalled: bool = True) -> None:
        """Hold the writer before its next item (a test hook: a disk or sink that does not keep up)."""
        if stalled:
            self._running.clear()
        else:
            self._running.set()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued item is written (tests, shutdown); whether it emptied in time."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._items and not self._busy, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (at most ``timeout_s``), then stop; what is left is counted as dropped."""
        self._running.set()
        self.flush(timeout_s)
        with self._ready:
            self._closing = True
            left = len(self._items)
            self._items.clear()
            self._queued_bytes = 0
            self._ready.notify_all()
        for _ in range(left):
            self.on_drop("closed")
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _drain(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._items or self._closing)
                if self._closing and not self._items:
                    return
            self._running.wait()
            with self._ready:
                if not self._items:
                    continue
                item, size = self._items.popleft()
                self._queued_bytes -= size
                self._busy = True
            try:
                self.write(item)
                self.written += 1
            except Exception:  # noqa: BLE001 - a sink's failure must never reach a request or stop the writer
                log.exception("%s: a record could not be written", self.name)
                self.on_drop("error")
            finally:
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()
