"""The serving heap and the collector: what a load freezes, what an unload frees (service/runtime/heap.py)."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
from prometheus_client import CollectorRegistry

from service.app import build_runtime
from service.runtime import heap
from service.settings import Settings
from tests.conftest import TESTDATA


class _Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the collector frees it


@pytest.fixture(autouse=True)
def _thawed():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()  # the rest of the test session gets a normal collector back
    gc.set_threshold(*thresholds)


def test_after_a_load_what_is_alive_is_out_of_the_collectors_sight():
    kept = _Node()
    heap.after_load()
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # full collections no longer walk it


def test_after_a_load_young_collections_are_rarer():
    gc.set_threshold(700, 10, 10)
    heap.after_load()
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 10, 10)


def test_garbage_a_load_left_is_freed_at_the_next_unload():
    dead = weakref.ref(_Node())  # unreachable at once: a cycle only the collector frees
    gc.disable()  # no young collection may free it before the freeze
    try:
        heap.after_load()
        gc.collect()
        assert dead() is not None  # frozen: a load does not pay for a full collection
        heap.after_unload()
        assert dead() is None
    finally:
        gc.enable()


def test_after_an_unload_the_old_versions_cycles_are_freed():
    node = _Node()
    ref = weakref.ref(node)
    heap.after_load()  # the version's objects are frozen while it serves
    del node  # the version unloads: its cycles are garbage, but frozen
    gc.collect()
    assert ref() is not None  # a frozen cycle survives a full collection: why unloads thaw first
    heap.after_unload()
    assert ref() is None


def test_the_runtime_freezes_the_heap_once_a_version_is_loaded():
    runtime = build_runtime(Settings(model_name="half", model_base_path=TESTDATA / "saved_model_half_plus_two_cpu",
                                     grpc_port=-1, poll_interval_s=0), registry=CollectorRegistry())
    gc.unfreeze()

    async def main():
        await runtime.repository.start()
        frozen = gc.get_freeze_count()
        await runtime.repository.stop()
        return frozen

    assert asyncio.run(main()) > 0


def test_a_runtime_told_not_to_manage_the_heap_leaves_the_collector_alone():
    """The test suite's in-process servers share pytest's heap: they must not freeze it nor collect all of it."""
    runtime = build_runtime(Settings(model_name="half", model_base_path=TESTDATA / "saved_model_half_plus_two_cpu",
                                     grpc_port=-1, poll_interval_s=0), registry=CollectorRegistry(), manage_heap=False)
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)

    async def main():
        await runtime.repository.start()
        loaded = (gc.get_freeze_count(), gc.get_threshold(), runtime.repository.ready())
        await runtime.repository.stop()
        return loaded

    frozen, threshold, ready = asyncio.run(main())
    assert ready and frozen == 0 and threshold == (700, 10, 10)
