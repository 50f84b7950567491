"""DynamicBatcher: gathers items from concurrent requests into batches for one ``async fn(list) -> list``.

It knows nothing of TensorFlow, HTTP or gRPC. Policy:
- A batch leaves as soon as it is full, or as soon as an executor slot is free and either no batch is in
  flight (an idle executor never makes a lone request wait) or the oldest item has waited
  ``batch_timeout_s`` (with several slots, a short wait fills batches while another one runs).
- The queue is bounded in items: a request that does not fit is refused at once (``Unavailable``), so
  memory never grows with the backlog.
- A request larger than ``max_batch_size`` is spread over several batches and reassembled in order.
- Items whose deadline passed while queued fail with ``DeadlineExceeded`` and are never executed;
  items whose request was cancelled are dropped before execution.
- ``fn`` may return an exception in place of a result: only that item fails. If ``fn`` raises, the batch's
  items are retried one by one (when ``retry_alone``), so one bad item never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from service.core.errors import DeadlineExceeded, InternalError, ServiceError, TooLarge, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
BatchFn = Callable[[list[T]], Awaitable[Sequence[Any]]]


@dataclass
class _Entry(Generic[T]):
    item: T
    future: asyncio.Future
    deadline: float | None
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """What one batch looked like, for metrics: how many items ran and how long each waited."""

    size: int
    queue_waits_s: list[float]
    run_s: float


class DynamicBatcher(Generic[T, R]):
    def __init__(self, fn: BatchFn, *, max_batch_size: int = 32, batch_timeout_s: float = 0.002,
                 max_queue: int = 1024, max_concurrent_batches: int = 1, retry_alone: bool = True,
                 on_batch: Callable[[BatchStats], None] | None = None):
        if max_batch_size < 1 or max_queue < 1 or max_concurrent_batches < 1 or batch_timeout_s < 0:
            raise ValueError("max_batch_size, max_queue and max_concurrent_batches must be >= 1, timeout >= 0")
        self._fn = fn
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_s
        self.max_queue = max_queue
        self._slots = max_concurrent_batches
        self._retry_alone = retry_alone
        self._on_batch = on_batch
        self._queue: deque[_Entry] = deque()
        self._in_flight = 0
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None
        self._closed = False

    @property
    def queue_depth(self) -> int:
        """Items waiting, not yet in a batch."""
        return len(self._queue)

    def start(self) -> None:
        """Start the dispatch loop on the running event loop."""
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._dispatch_loop())

    async def stop(self) -> None:
        """Refuse new work, let queued and running batches finish, then end the loop."""
        self._closed = True
        self._wakeup.set()
        while self._queue or self._in_flight:
            await asyncio.sleep(0.005)
        if self._loop_task:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)

    async def submit(self, items: Sequence[T], *, deadline: float | None = None) -> list[R]:
        """Run ``items`` (one request) through batches; results in the same order.

        ``deadline`` is a ``time.monotonic()`` instant. Raises the first item's error if any item fails.
        """
        if self._closed:
            raise Unavailable("shutting down", retry_after_s=1.0)
        if not items:
            return []
        if len(items) > self.max_queue:
            # Retrying cannot help this request: it is refused as too large, not as overload.
            raise TooLarge(f"{len(items)} items in one request; this model queues at most {self.max_queue}")
        if len(self._queue) + len(items) > self.max_queue:
            self._drop_dead()  # cancelled and expired entries do not count against the bound
        if len(self._queue) + len(items) > self.max_queue:
            raise Unavailable(f"queue full ({self.max_queue} items waiting)", retry_after_s=1.0)
        loop = asyncio.get_running_loop()
        entries = [_Entry(item, loop.create_future(), deadline) for item in items]
        self._queue.extend(entries)
        self._wakeup.set()
        results = asyncio.gather(*(e.future for e in entries))
        try:
            if deadline is None:
                return list(await results)
            try:
                return list(await asyncio.wait_for(results, max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                raise DeadlineExceeded("deadline passed before the model answered") from None
        finally:
            # On failure or cancellation, siblings still queued are not worth running.
            for e in entries:
                if not e.future.done():
                    e.future.cancel()
            # Nobody awaits the gathered results any more: retrieve their outcome so that asyncio does not log
            # "exception was never retrieved" for every client that left.
            results.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _dispatch_loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                timeout = self._time_to_timeout()
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                except TimeoutError:
                    pass
                continue
            if batch:
                self._in_flight += 1
                task = asyncio.get_running_loop().create_task(self._run(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _drop_dead(self) -> None:
        """Fail expired items and forget cancelled ones at the head of the queue and anywhere in it."""
        now = time.monotonic()
        alive: deque[_Entry] = deque()
        for e in self._queue:
            if e.future.done():
                continue
            if e.deadline is not None and now >= e.deadline:
                e.future.set_exception(DeadlineExceeded("deadline passed while queued"))
                continue
            alive.append(e)
        self._queue = alive

    def _take_batch(self) -> list[_Entry] | None:
        """The next batch to run, [] if only dead items were dropped, or None to wait."""
        if not self._queue or self._in_flight >= self._slots:
            return None
        before = len(self._queue)
        self._drop_dead()
        if not self._queue:
            return [] if before else None
        waited = time.monotonic() - self._queue[0].enqueued
        full = len(self._queue) >= self.max_batch_size
        if not (full or self._in_flight == 0 or waited >= self.batch_timeout_s):
            return None
        return [self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))]

    def _time_to_timeout(self) -> float | None:
        if not self._queue or self._in_flight >= self._slots:
            return None  # woken by submit() or by a batch finishing
        return max(0.0, self.batch_timeout_s - (time.monotonic() - self._queue[0].enqueued))

    async def _run(self, batch: list[_Entry]) -> None:
        started = time.monotonic()
        try:
            outcome = await self._call([e.item for e in batch])
            if isinstance(outcome, Exception) and self._retry_alone and len(batch) > 1:
                # Which item broke the batch is unknown: run each alone so only the culprit fails.
                outcome = [await self._call_one(e) for e in batch]
            if isinstance(outcome, Exception):
                outcome = [outcome] * len(batch)
            for entry, result in zip(batch, outcome, strict=True):
                self._settle(entry, result)
        finally:
            self._in_flight -= 1
            self._wakeup.set()
            if self._on_batch:
                try:
                    self._on_batch(BatchStats(len(batch), [started - e.enqueued for e in batch],
                                              time.monotonic() - started))
                except Exception:  # noqa: BLE001 - metrics must never stop the batcher
                    log.exception("batch statistics callback failed")

    async def _call(self, items: list) -> Sequence[Any] | Exception:
        """``fn(items)``'s results, or the exception it raised."""
        try:
            results = await self._fn(items)
        except Exception as exc:  # noqa: BLE001 - any failure of the model is confined to this batch
            return exc
        if len(results) != len(items):
            return InternalError(f"batch function returned {len(results)} results for {len(items)} items")
        return results

    async def _call_one(self, entry: _Entry) -> Any:
        if entry.future.done():  # cancelled meanwhile: not worth running
            return None
        outcome = await self._call([entry.item])
        return outcome if isinstance(outcome, Exception) else outcome[0]

    @staticmethod
    def _settle(entry: _Entry, result: Any) -> None:
        if entry.future.done():
            return
        if isinstance(result, ServiceError):
            entry.future.set_exception(result)
        elif isinstance(result, Exception):
            entry.future.set_exception(InternalError(f"model execution failed: {type(result).__name__}: {result}"))
        else:
            entry.future.set_result(result)
