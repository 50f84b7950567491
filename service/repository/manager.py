"""The live model repository: which versions are loaded, loading and unloading them, hot reload.

Each poll compares what the configuration and the disk ask for with what is loaded:
- a wanted version that is not loaded is loaded and warmed up in a worker thread, and becomes visible to
  requests only once ready (one dict assignment on the event loop: the switch is atomic);
- a loaded version that is no longer wanted (removed from disk, or past the version policy once a newer
  one is ready) leaves the lookup at once and is unloaded when its in-flight requests have finished;
- a version that looks incomplete, fails to load, or would break the clients of the version it replaces
  (compatibility.py) is never served; the previous version keeps serving, the error is kept in its status,
  and loading is tried again only when the version's files change;
- where the versions live is a ``VersionSource`` per base path (local folders, or an object store): when it
  cannot be listed, what is served keeps serving and the served versions' statuses carry the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from service.core.dataplane import AVAILABLE, END, LOADING, UNLOADING, VersionStatus
from service.core.errors import NotFound, Unavailable
from service.core.tensors import SignatureInfo
from service.repository.compatibility import interface_problem
from service.repository.config import ModelSpec
from service.repository.discovery import LocalFolders, VersionDir, VersionSource
from service.repository.objectstore import safe_message

log = logging.getLogger(__name__)

UNREACHABLE = "model store unreachable: "  # the status error of a served version while its source cannot be listed
_FETCH_FAILED = ("fetch failed",)  # a stamp no listing has: a version whose fetch failed is tried again next poll


class Servable(Protocol):
    """What the repository needs of a loaded version (the serving package's ServedVersion)."""

    path: Path

    @property
    def signatures(self) -> dict[str, SignatureInfo]: ...

    async def drain_and_stop(self) -> None: ...


V = TypeVar("V", bound=Servable)


class ModelRepository(Generic[V]):
    def __init__(self, specs: Callable[[], list[ModelSpec]], loader: Callable[[str, int, Path], V], *,
                 poll_interval_s: float = 2.0, on_event: Callable[[str, str, int, str, float], None] | None = None,
                 sources: Callable[[Path | str], VersionSource] | None = None):
        """``specs`` is called at every poll (a config file may change); ``loader(name, number, path)`` loads a
        version from a local folder (blocking: it runs in a worker thread); ``on_event(kind, model, version,
        state, seconds)`` reports loads, failures and unloads to metrics and logs; ``sources(base_path)`` is where
        a spec's versions live (default: local folders)."""
        self._specs_source = specs
        self._loader = loader
        local = LocalFolders()
        self._sources = sources or (lambda _base: local)
        self.poll_interval_s = poll_interval_s
        self._on_event = on_event or (lambda *args: None)
        self._specs: dict[str, ModelSpec] = {}
        self._served: dict[str, dict[int, V]] = {}
        self._status: dict[str, dict[int, VersionStatus]] = {}
        self._sync_lock = asyncio.Lock()
        self._poller: asyncio.Task | None = None
        self._unloads: set[asyncio.Task] = set()
        self._unloaded_by_request: set[str] = set()  # V2 repository 'unload': kept out until 'load'
        self._source_of: dict[tuple[str, int], VersionSource] = {}  # of each served version: released at unload
        self._listing_error: dict[str, str] = {}  # why a model's versions could not be listed at the last poll

    # -- lookups (event loop, no awaits: always a consistent view) ---------------------------------
    def model_names(self) -> list[str]:
        return sorted(self._specs)

    def knows(self, name: str, version: str = "") -> bool:
        """Whether ``name`` is a model of the repository and ``version`` ("" for none) one of its versions
        (found on a scan, whatever its state): a bounded set, unlike the names requests carry."""
        if name not in self._specs:
            return False
        return not version or (version.isdigit() and int(version) in self._status.get(name, {}))

    def spec(self, name: str) -> ModelSpec:
        if name not in self._specs:
            raise NotFound.servable(name)
        return self._specs[name]

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> V:
        """The version a request should use: the given number, the label's, or the newest available."""
        spec = self.spec(name)
        served = self._served.get(name, {})
        if label is not None:
            if label not in spec.labels:
                raise NotFound.label(label)
            version = spec.labels[label]
        if version is not None:
            if version in served:
                return served[version]
            if version in self._status.get(name, {}) and self._status[name][version].state == LOADING:
                raise Unavailable(f"model '{name}' version {version} is loading", retry_after_s=1.0)
            raise NotFound.servable(name, version)
        if not served:
            raise Unavailable(f"model '{name}' has no version ready", retry_after_s=1.0)
        return served[max(served)]

    def statuses(self, name: str) -> list[VersionStatus]:
        """Every version this server knows of for ``name``, newest first."""
        self.spec(name)
        return sorted(self._status.get(name, {}).values(), key=lambda s: -s.number)

    def no_versions_reason(self, name: str) -> str | None:
        """Why ``name`` has no version at all to show (None when it has one): its store could not be listed, or
        no version was found (none yet, or all removed)."""
        self.spec(name)  # NotFound for a model not (or no longer) of the repository
        if self._status.get(name):
            return None
        return self._listing_error.get(name) or "no version found"

    def ready(self, require_all: bool = True) -> bool:
        """All configured models (or any, when ``require_all`` is False) have a version available."""
        have = [bool(self._served.get(name)) for name in self._specs if name not in self._unloaded_by_request]
        return bool(have) and (all(have) if require_all else any(have))

    def ready_model(self, name: str) -> bool:
        return bool(self._served.get(name))

    async def replace_specs(self, specs: list[ModelSpec]) -> None:
        """Serve ``specs`` from now on instead of the configured source (ModelService's reload), and sync."""
        self._specs_source = lambda: specs
        await asyncio.shield(self.sync())  # a caller giving up must not leave a load half-done

    async def load(self, name: str) -> None:
        """Bring ``name`` back after an unload, or pick up its new versions now."""
        self.spec(name)
        self._unloaded_by_request.discard(name)
        await asyncio.shield(self.sync())

    async def unload(self, name: str) -> None:
        """Unload every version of ``name`` (after in-flight requests) until ``load`` is called."""
        self.spec(name)
        self._unloaded_by_request.add(name)
        await asyncio.shield(self.sync())

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load what is wanted now, then keep polling."""
        await self.sync()
        if self.poll_interval_s > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._poller:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        for name in list(self._served):
            for number in list(self._served[name]):
                self._retire(name, number)
        await asyncio.gather(*self._unloads, return_exceptions=True)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.sync()
            except Exception:  # noqa: BLE001 - a bad poll must not end polling
                log.exception("model repository poll failed")

    async def sync(self) -> None:
        """One reconciliation of wanted and loaded versions (also the 'reload now' action)."""
        async with self._sync_lock:
            self._specs = {spec.name: spec for spec in await asyncio.to_thread(self._specs_source)}
            for name in list(self._served):
                if name not in self._specs or name in self._unloaded_by_request:
                    for number in list(self._served[name]):
                        self._retire(name, number)
                if name not in self._specs:
                    del self._served[name]
                    self._listing_error.pop(name, None)
            names = [name for name in self._specs if name not in self._unloaded_by_request]
            results = await asyncio.gather(*(self._sync_model(self._specs[name]) for name in names),
                                           return_exceptions=True)
            # One model's failure (a file system error, say) is logged and tried again at the next poll; it
            # must not cut short the others' syncs, nor leave them running past the lock.
            for name, result in zip(names, results, strict=True):
                if isinstance(result, Exception):
                    log.error("model %s: sync failed, tried again at the next poll", name, exc_info=result)

    async def _sync_model(self, spec: ModelSpec) -> None:
        status = self._status.setdefault(spec.name, {})
        served = self._served.setdefault(spec.name, {})
        source = self._sources(spec.base_path)
        # Directory walks and listings can be slow (network file systems, object stores): worker threads.
        try:
            found = await asyncio.to_thread(source.scan, spec.base_path)
        except Exception as exc:  # noqa: BLE001 - an unreachable store must not stop what is served
            self._unreachable(spec.name, exc)
            return
        self._unreachable(spec.name, None)
        candidates = {}
        for number, entry in found.items():
            known = status.get(number)
            if number in served:
                candidates[number] = entry
                continue
            stamp = await asyncio.to_thread(source.stamp, entry)
            if known and known.error and known.stamp == stamp:
                continue  # failed before, unchanged since: do not retry
            problem = await asyncio.to_thread(source.problem, entry)
            if problem:
                self._set(spec.name, number, entry.path, END, f"incomplete version: {problem}", stamp)
                continue
            candidates[number] = entry
        wanted = spec.policy.select(candidates)
        await asyncio.gather(*(self._load(spec.name, source, candidates[n]) for n in wanted if n not in served))
        for number in list(served):
            if number not in found or (number not in wanted and self._newer_ready(spec.name, number, wanted)):
                self._retire(spec.name, number)

    def _newer_ready(self, name: str, number: int, wanted: set[int]) -> bool:
        """Keep an unwanted version until every wanted one is serving, so traffic never has a gap."""
        served = self._served.get(name, {})
        return all(n in served for n in wanted) and bool(wanted)

    def _unreachable(self, name: str, exc: Exception | None) -> None:
        """Put the listing failure ``exc`` into the statuses of ``name``'s served versions, or clear it (None)."""
        message = "" if exc is None else UNREACHABLE + safe_message(exc)
        self._listing_error[name] = message
        if message:
            log.warning("model %s: cannot list its versions, serving what is loaded: %s", name, message)
        for number in self._served.get(name, {}):
            current = self._status[name][number]
            if current.error != message and (message or current.error.startswith(UNREACHABLE)):
                self._set(name, number, current.path, AVAILABLE, message)

    async def _load(self, name: str, source: VersionSource, entry: VersionDir) -> None:
        stamp = await asyncio.to_thread(source.stamp, entry)
        self._set(name, entry.number, entry.path, LOADING, "", stamp)
        started = time.monotonic()
        try:
            local = await asyncio.to_thread(source.fetch, entry)
        except Exception as exc:  # noqa: BLE001 - a store that fails mid-fetch: tried again at the next poll
            log.error("model %s version %s could not be fetched: %s", name, entry.number, safe_message(exc))
            self._set(name, entry.number, entry.path, END, f"fetch failed: {safe_message(exc)}", _FETCH_FAILED)
            self._on_event("load_failed", name, entry.number, END, time.monotonic() - started)
            return
        try:
            version = await asyncio.to_thread(self._loader, name, entry.number, local)
        except Exception as exc:  # noqa: BLE001 - any failure to load is reported, never fatal
            seconds = time.monotonic() - started
            log.error("model %s version %s failed to load: %s", name, entry.number, exc)
            self._set(name, entry.number, entry.path, END, f"load failed: {type(exc).__name__}: {exc}", stamp)
            await asyncio.to_thread(source.release, local)
            self._on_event("load_failed", name, entry.number, END, seconds)
            return
        if name not in self._specs or await asyncio.to_thread(source.gone, entry):
            # Removed while loading: never expose it.
            self._set(name, entry.number, entry.path, END, "", stamp)
            return
        problem = self._breaks_clients(name, entry.number, version)
        if problem:
            log.error("model %s version %s refused: %s", name, entry.number, problem)
            self._set(name, entry.number, entry.path, END, f"refused: {problem}", stamp)
            self._on_event("load_failed", name, entry.number, END, time.monotonic() - started)
            return
        self._served.setdefault(name, {})[entry.number] = version
        self._source_of[name, entry.number] = source
        self._set(name, entry.number, entry.path, AVAILABLE, "", stamp)
        seconds = time.monotonic() - started
        log.info("model %s version %s available (%.1f s)", name, entry.number, seconds)
        self._on_event("loaded", name, entry.number, AVAILABLE, seconds)

    def _breaks_clients(self, name: str, number: int, version: V) -> str | None:
        """Why ``version`` may not take over from the newest served version it would replace, if it may not."""
        served = self._served.get(name, {})
        if not served or max(served) > number:
            return None  # nothing to replace (first load, or an older version kept by the policy)
        return interface_problem(served[max(served)].signatures, version.signatures)

    def _retire(self, name: str, number: int) -> None:
        version = self._served[name].pop(number)
        path = self._status[name][number].path  # where it was found (a URL for a store), not the cached copy
        self._set(name, number, path, UNLOADING, "")
        self._on_event("unloading", name, number, UNLOADING, 0.0)

        source = self._source_of.pop((name, number), None)

        async def unload() -> None:
            await version.drain_and_stop()
            if source is not None:
                await asyncio.to_thread(source.release, version.path)  # an object store's cached copy goes
            self._set(name, number, path, END, "")
            self._on_event("unloaded", name, number, END, 0.0)
            log.info("model %s version %s unloaded", name, number)

        task = asyncio.get_running_loop().create_task(unload())
        self._unloads.add(task)
        task.add_done_callback(self._unloads.discard)

    def _set(self, name: str, number: int, path: Path | str, state: str, error: str, stamp: tuple = ()) -> None:
        current = self._status.setdefault(name, {}).get(number)
        self._status[name][number] = VersionStatus(number, path, state, error,
                                                   stamp or (current.stamp if current else ()))

