"""DynamicBatcher with plain fake callbacks: no model, no server."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.batching.batcher import DynamicBatcher
from service.core.errors import DeadlineExceeded, InternalError, InvalidInput, Unavailable


class Recorder:
    """A batch function that doubles numbers, records each batch, and can be held or made to fail."""

    def __init__(self, delay: float = 0.0):
        self.batches: list[list] = []
        self.delay = delay
        self.gate: asyncio.Event | None = None

    async def __call__(self, items):
        self.batches.append(list(items))
        if self.gate:
            await self.gate.wait()
        await asyncio.sleep(self.delay)
        if "boom" in items:
            raise RuntimeError("boom")
        return [InvalidInput(f"bad {x}") if x == "bad" else x * 2 for x in items]


def run(coro):
    return asyncio.run(coro)


async def _started(fn, **kwargs):
    batcher = DynamicBatcher(fn, **kwargs)
    batcher.start()
    return batcher


def test_results_come_back_in_order_and_concurrent_requests_share_batches():
    async def main():
        fn = Recorder(delay=0.02)
        b = await _started(fn, max_batch_size=8)
        results = await asyncio.gather(*(b.submit([i, i + 100]) for i in range(20)))
        await b.stop()
        return fn, results

    fn, results = run(main())
    assert results == [[2 * i, 2 * (i + 100)] for i in range(20)]
    assert max(len(batch) for batch in fn.batches) == 8
    assert len(fn.batches) < 20


def test_a_lone_request_on_an_idle_batcher_does_not_wait_for_the_timeout():
    async def main():
        b = await _started(Recorder(), max_batch_size=32, batch_timeout_s=5.0)
        started = time.monotonic()
        await b.submit([1])
        elapsed = time.monotonic() - started
        await b.stop()
        return elapsed

    assert run(main()) < 1.0  # with a 5 s timeout, waiting for it would be unmistakable


def test_large_request_is_split_across_batches_and_reassembled():
    async def main():
        fn = Recorder()
        b = await _started(fn, max_batch_size=4)
        result = await b.submit(list(range(10)))
        await b.stop()
        return fn, result

    fn, result = run(main())
    assert result == [2 * i for i in range(10)]
    assert all(len(batch) <= 4 for batch in fn.batches) and sum(map(len, fn.batches)) == 10


def test_full_queue_refuses_at_once():
    async def main():
        fn = Recorder()
        fn.gate = asyncio.Event()
        b = await _started(fn, max_batch_size=2, max_queue=3)
        running = asyncio.create_task(b.submit([1, 2]))  # taken into a batch that blocks on the gate
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(b.submit([3, 4, 5]))  # fills the queue
        await asyncio.sleep(0.01)
        with pytest.raises(Unavailable, match="queue full") as refused:
            await b.submit([6])
        assert refused.value.retry_after_s
        fn.gate.set()
        results = await asyncio.gather(running, queued)
        await b.stop()
        return results

    assert run(main()) == [[2, 4], [6, 8, 10]]


def test_expired_deadline_fails_without_running():
    async def main():
        fn = Recorder()
        fn.gate = asyncio.Event()
        b = await _started(fn, max_batch_size=1)
        first = asyncio.create_task(b.submit(["first"]))
        await asyncio.sleep(0.02)
        late = asyncio.create_task(b.submit(["late"], deadline=time.monotonic() + 0.05))
        await asyncio.sleep(0.1)
        fn.gate.set()
        await first
        with pytest.raises(DeadlineExceeded):
            await late
        await b.stop()
        return fn

    fn = run(main())
    assert ["late"] not in fn.batches


def test_cancelled_request_is_dropped_before_execution():
    async def main():
        fn = Recorder()
        fn.gate = asyncio.Event()
        b = await _started(fn, max_batch_size=1)
        first = asyncio.create_task(b.submit(["first"]))
        await asyncio.sleep(0.02)
        gone = asyncio.create_task(b.submit(["gone"]))
        await asyncio.sleep(0.02)
        gone.cancel()
        await asyncio.sleep(0.01)
        fn.gate.set()
        await first
        assert b.queue_depth == 0
        await b.stop()
        return fn

    fn = run(main())
    assert ["gone"] not in fn.batches


def test_a_failing_item_fails_only_its_own_request():
    async def main():
        fn = Recorder(delay=0.01)
        b = await _started(fn, max_batch_size=8)
        outcomes = await asyncio.gather(b.submit([1]), b.submit(["bad"]), b.submit([3]), return_exceptions=True)
        await b.stop()
        return outcomes

    good1, bad, good3 = run(main())
    assert good1 == [2] and good3 == [6]
    assert isinstance(bad, InvalidInput)


def test_a_batch_that_raises_is_retried_item_by_item():
    async def main():
        fn = Recorder(delay=0.01)
        fn.gate = asyncio.Event()
        b = await _started(fn, max_batch_size=8)
        blocker = asyncio.create_task(b.submit([0]))
        await asyncio.sleep(0.02)
        tasks = [asyncio.create_task(b.submit([x])) for x in (1, "boom", 3)]
        await asyncio.sleep(0.02)
        fn.gate.set()
        outcomes = await asyncio.gather(blocker, *tasks, return_exceptions=True)
        await b.stop()
        return fn, outcomes

    fn, (_, one, boom, three) = run(main())
    assert [1, "boom", 3] in fn.batches  # they did share a batch first
    assert one == [2] and three == [6]
    assert isinstance(boom, InternalError) and "boom" in str(boom)


def test_stop_finishes_queued_work_and_then_refuses():
    async def main():
        b = await _started(Recorder(delay=0.01), max_batch_size=2)
        pending = [asyncio.create_task(b.submit([i])) for i in range(6)]
        await asyncio.sleep(0)
        await b.stop()
        results = [t.result() for t in pending]
        with pytest.raises(Unavailable):
            await b.submit([1])
        return results

    assert run(main()) == [[2 * i] for i in range(6)]


def test_several_slots_overlap_batches():
    running, peak = 0, 0

    async def fn(items):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return items

    async def main():
        b = await _started(fn, max_batch_size=2, max_concurrent_batches=2, batch_timeout_s=0.0)
        await asyncio.gather(*(b.submit([i]) for i in range(8)))
        await b.stop()

    run(main())
    assert peak == 2


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        DynamicBatcher(Recorder(), max_batch_size=0)


def test_a_failing_statistics_callback_does_not_stop_the_batcher():
    def broken(_stats):
        raise OSError("disk full")

    async def main():
        b = await _started(Recorder(), on_batch=broken)
        first = await b.submit([1])
        second = await b.submit([2], deadline=time.monotonic() + 5)
        await b.stop()
        return first, second

    assert run(main()) == ([2], [4])


def test_a_request_larger_than_the_queue_is_too_large_not_overload():
    from service.core.errors import TooLarge

    async def main():
        b = await _started(Recorder(), max_queue=4)
        with pytest.raises(TooLarge):
            await b.submit([1, 2, 3, 4, 5])
        await b.stop()

    run(main())


def test_cancelled_entries_do_not_count_against_the_queue():
    async def main():
        fn = Recorder()
        fn.gate = asyncio.Event()
        b = await _started(fn, max_batch_size=1, max_queue=3)
        running = asyncio.create_task(b.submit(["first"]))
        await asyncio.sleep(0.02)
        gone = asyncio.create_task(b.submit([1, 2, 3]))
        await asyncio.sleep(0.02)
        gone.cancel()
        await asyncio.sleep(0.01)
        later = asyncio.create_task(b.submit([7]))  # fits once the cancelled entries are dropped
        await asyncio.sleep(0.01)
        fn.gate.set()
        results = await asyncio.gather(running, later)
        await b.stop()
        return results

    assert run(main()) == [["first" * 2], [14]]


def test_deadline_also_bounds_a_batch_that_never_finishes():
    async def main():
        fn = Recorder()
        fn.gate = asyncio.Event()  # never set: the model hangs
        b = await _started(fn)
        with pytest.raises(DeadlineExceeded):
            await b.submit([1], deadline=time.monotonic() + 0.1)

    run(main())
