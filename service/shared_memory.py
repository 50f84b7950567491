"""System shared memory (Triton's extension): POSIX shared-memory regions that clients on this host register by
name, so that tensors travel through memory instead of the request.

A region is ``byte_size`` bytes from ``offset`` of the shared-memory object ``key`` (``/input0``, the name a client
gave ``shm_open``; on Linux the file ``/dev/shm/input0``). Registering opens the object and keeps its descriptor
until the region is unregistered or the server stops; every read and write goes through that descriptor with
``pread``/``pwrite``, never a mapping, so an object truncated or removed under us is a short read and a clear error,
never a SIGBUS.

Regions of a client that went away: Triton keeps a region until it is unregistered. So does tlserve, with two
bounds: at most ``MAX_REGIONS`` regions at once (each holds a descriptor), and a region whose key no longer names
the object registered (its owner removed it with ``shm_unlink``, as ``destroy_shared_memory_region`` does, or the
system cleaned up after it) is reclaimed at its next use and by every register and status call: its memory is no
longer reachable by any new client, so holding it would only leak it.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from service.core.dataplane import SharedMemoryRef, SharedMemoryRegion
from service.core.errors import InvalidInput, NotFound, shown

POSIX_SHM_ROOT = Path("/dev/shm")  # where Linux's shm_open keeps its objects
# Each region holds an open descriptor; a container's soft limit is often 1024, shared with every connection.
MAX_REGIONS = 128
MAX_NAME_CHARS = 255  # NAME_MAX: the longest shm_open name, and a bound on what an error echoes


@dataclass
class _Open:
    region: SharedMemoryRegion
    fd: int
    identity: tuple[int, int]  # (st_dev, st_ino) of the object registered


class SystemSharedMemory:
    """The registered regions of this server, safe to use from any thread."""

    def __init__(self, root: Path = POSIX_SHM_ROOT, max_regions: int = MAX_REGIONS):
        self.root, self.max_regions = root, max_regions
        self._regions: dict[str, _Open] = {}
        # Held across each pread/pwrite too: an unregister cannot close a descriptor (whose number the kernel may
        # then hand to another file) while a request still reads through it.
        self._lock = threading.Lock()

    def register(self, region: SharedMemoryRegion) -> None:
        name, path = _checked_name(region.name), self._path(region.key)
        if region.offset < 0 or region.byte_size < 0:
            raise InvalidInput(f"shared memory region '{name}': offset and byte_size must not be negative")
        with self._lock:
            self._sweep()
            if name in self._regions:
                raise InvalidInput(f"shared memory region '{name}' is already registered: unregister it first")
            if len(self._regions) >= self.max_regions:
                raise InvalidInput(f"at most {self.max_regions} shared memory regions may be registered at once: "
                                   "unregister some first")
            fd = _open(path, region.key)
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise InvalidInput(f"shared memory key '{region.key}' is not a shared memory object")
                if region.offset + region.byte_size > info.st_size:
                    raise InvalidInput(f"shared memory region '{name}': offset {region.offset} + byte_size "
                                       f"{region.byte_size} exceeds the {info.st_size} bytes of key '{region.key}'")
            except BaseException:
                os.close(fd)
                raise
            self._regions[name] = _Open(region, fd, (info.st_dev, info.st_ino))

    def unregister(self, name: str = "") -> None:
        """Forget ``name`` (nothing if unknown, as Triton does), or every region when ``name`` is empty."""
        with self._lock:
            for gone in list(self._regions) if not name else [name]:
                entry = self._regions.pop(gone, None)
                if entry is not None:
                    os.close(entry.fd)

    def close(self) -> None:
        """At shutdown: every descriptor closed (the objects themselves belong to their clients)."""
        self.unregister()

    def status(self, name: str = "") -> list[SharedMemoryRegion]:
        with self._lock:
            self._sweep()
            if not name:
                return [entry.region for entry in self._regions.values()]
            if name not in self._regions:
                raise NotFound(f"no system shared memory region '{shown(name)}' is registered")
            return [self._regions[name].region]

    def read(self, ref: SharedMemoryRef) -> bytes:
        with self._lock:
            entry, start = self._locate(ref)
            data = os.pread(entry.fd, ref.byte_size, start)
        if len(data) != ref.byte_size:
            raise InvalidInput(f"shared memory region '{shown(ref.region)}' shrank under the server: "
                               f"{len(data)} of {ref.byte_size} bytes could be read")
        return data

    def write(self, ref: SharedMemoryRef, data: bytes) -> None:
        if len(data) > ref.byte_size:
            raise InvalidInput(f"shared memory region '{shown(ref.region)}': the output needs {len(data)} bytes, "
                               f"shared_memory_byte_size gives {ref.byte_size}")
        with self._lock:
            entry, start = self._locate(ref)
            # pwrite past the object's end would grow it: check the size the object has now.
            if start + len(data) > os.fstat(entry.fd).st_size:
                raise InvalidInput(f"shared memory region '{shown(ref.region)}' shrank under the server")
            written = os.pwrite(entry.fd, data, start)
        if written != len(data):
            raise InvalidInput(f"shared memory region '{shown(ref.region)}': {written} of {len(data)} bytes written")

    # -- under the lock ---------------------------------------------------------------------------------------
    def _locate(self, ref: SharedMemoryRef) -> tuple[_Open, int]:
        """The region a tensor names and the object offset it starts at, every bound checked."""
        entry = self._regions.get(ref.region)
        if entry is not None and not self._alive(entry):
            self._drop(ref.region)
            raise InvalidInput(f"shared memory region '{shown(ref.region)}' was reclaimed: its key "
                               f"'{entry.region.key}' was removed; create and register it again")
        if entry is None:
            raise InvalidInput(f"unknown shared memory region '{shown(ref.region)}': register it first")
        region = entry.region
        if ref.offset < 0 or ref.byte_size < 0:
            raise InvalidInput(f"shared memory region '{region.name}': offset and byte_size must not be negative")
        if ref.offset + ref.byte_size > region.byte_size:
            raise InvalidInput(f"shared memory region '{region.name}': offset {ref.offset} + byte_size "
                               f"{ref.byte_size} exceeds the region's {region.byte_size} bytes")
        return entry, region.offset + ref.offset

    def _alive(self, entry: _Open) -> bool:
        """Whether the region's key still names the object registered (not unlinked, not replaced)."""
        try:
            info = os.stat(self._path(entry.region.key))
        except (OSError, InvalidInput):
            return False
        return (info.st_dev, info.st_ino) == entry.identity

    def _sweep(self) -> None:
        for name in [n for n, entry in self._regions.items() if not self._alive(entry)]:
            self._drop(name)

    def _drop(self, name: str) -> None:
        os.close(self._regions.pop(name).fd)

    def _path(self, key: str) -> Path:
        """The object a key names, refused unless it is one plain name under the root (no directory, no '..')."""
        base = key[1:] if key.startswith("/") else key
        if not base or len(base) > MAX_NAME_CHARS or "/" in base or base in (".", "..") or "\0" in base \
                or not base.isprintable():
            raise InvalidInput(f"shared memory key '{shown(key)}' must be '/name': one name of at most "
                               f"{MAX_NAME_CHARS} printable characters, without '/'")
        return self.root / base


def _open(path: Path, key: str) -> int:
    try:
        # O_NOFOLLOW: a symlink planted in /dev/shm cannot point the server at another file; O_NONBLOCK: a FIFO
        # there cannot hang the event loop (it is then refused as not a regular file).
        return os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidInput(f"shared memory key '{key}' does not exist: create it (shm_open) before "
                           "registering it") from None
    except OSError as exc:
        raise InvalidInput(f"cannot open shared memory key '{key}': {exc.strerror}") from None


def _checked_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise InvalidInput(f"a shared memory region name is 1 to {MAX_NAME_CHARS} printable characters, "
                           f"got '{shown(name)}'")
    return name
