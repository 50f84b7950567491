"""Model versions in an object store (``s3://``, ``gs://``), through fsspec: listed, judged, fetched into a cache.

A ``VersionSource`` (discovery.py) like ``LocalFolders``, so the repository manager stays generic: one listing of
a model's prefix per poll gives its versions and their files; the completeness rule is discovery's
``files_problem`` (one rule, two sources); a complete version is downloaded into the local cache folder, under a
hidden staging name first, and loaded from there. Credentials come from each library's own chain (s3fs: boto's
environment variables, ``AWS_ENDPOINT_URL``, profiles, web identity; gcsfs: ``GOOGLE_APPLICATION_CREDENTIALS``,
the metadata server); tlserve never reads or passes them, and keeps them out of every message (``safe_message``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.repository.config import ConfigError
from service.repository.discovery import VersionDir, files_problem
from tlserve.contract import (
    SAVED_MODEL_FILE,
    SAVED_MODEL_TEXT_FILE,
    VARIABLES_DIR,
    StoreUrlError,
    parse_version,
    split_store_url,
    staging_name,
    version_name_order,
)

log = logging.getLogger(__name__)

# The variables the credential chains read that hold secrets: never echoed, whatever a library puts in an error.
_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID")


def safe_message(exc: BaseException) -> str:
    """``exc`` as one line for logs and statuses, with any credential from the environment masked."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    for name in _SECRET_VARIABLES:
        secret = os.environ.get(name, "")
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def open_filesystem(scheme: str):
    """A new fsspec file system of ``scheme`` that lists afresh at every call (a poll must see new objects); not
    fsspec's shared instance, so it takes its credentials and endpoint from the environment of now."""
    import fsspec

    return fsspec.filesystem(scheme, use_listings_cache=False, skip_instance_cache=True)


class ObjectStore:
    """A ``VersionSource`` over object-store URLs; ``cache_dir`` holds the fetched versions."""

    def __init__(self, cache_dir: Path, filesystem: Callable[[str], object] = open_filesystem):
        self.cache_dir = Path(cache_dir)
        self._filesystem = filesystem
        self._opened: dict[str, object] = {}  # one file system per scheme (a client and its connection pool)
        self._lock = threading.Lock()

    def _fs(self, url: str) -> tuple[Any, str]:
        scheme, bucket, prefix = split_store_url(url)
        with self._lock:
            if scheme not in self._opened:
                self._opened[scheme] = self._filesystem(scheme)
            return self._opened[scheme], f"{bucket}/{prefix}".rstrip("/")

    # -- listing ----------------------------------------------------------------------------------------------
    def scan(self, base: Path | str) -> dict[int, VersionDir]:
        """The versions under ``base`` (one recursive listing), each with its files. A missing bucket or an
        unreachable store raises; a prefix with no objects is a model with no versions yet."""
        url = str(base).rstrip("/")
        fs, root = self._fs(url)
        listing = fs.find(root, detail=True)
        by_folder: dict[str, list[tuple[str, int, str]]] = {}
        for key, info in listing.items():
            if info.get("type") == "directory" or not key.startswith(root + "/"):
                continue
            folder, _, rel = key[len(root) + 1:].partition("/")
            if rel:
                by_folder.setdefault(folder, []).append((rel, int(info.get("size") or 0), _tag(info)))
        found: dict[int, VersionDir] = {}
        for folder in sorted(by_folder, key=version_name_order):
            number = parse_version(folder)  # hidden staging names ('.tmp-3-ab12') and other names are not versions
            if number is None or number in found:
                continue
            found[number] = VersionDir(number, f"{url}/{folder}", tuple(sorted(by_folder[folder])))
        return dict(sorted(found.items()))

    def children(self, root: str) -> list[str]:
        """The folder names directly under ``root`` (a model repository's model names). A missing bucket or an
        unreachable store raises ``ConfigError``."""
        fs, path = self._fs(root)
        try:
            entries = fs.ls(path, detail=True)
        except FileNotFoundError:
            if "/" in path:
                return []  # the bucket exists (check() says so at start) but nothing is under the prefix yet
            raise ConfigError(f"{root}: bucket does not exist; create it or fix --model-repo") from None
        except Exception as exc:  # noqa: BLE001 - every library has its own errors; all mean "cannot list"
            raise ConfigError(f"{root}: cannot list the model repository ({safe_message(exc)})") from None
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory")

    def check(self, url: str) -> None:
        """Raise ``ConfigError`` (a clear message, no credentials) unless ``url`` is a valid object-store URL
        whose bucket exists and answers."""
        try:
            fs, path = self._fs(url)
        except StoreUrlError as exc:
            raise ConfigError(str(exc)) from None
        bucket = path.split("/", 1)[0]
        try:
            fs.ls(bucket)
        except FileNotFoundError:
            raise ConfigError(f"{url}: bucket {bucket!r} does not exist (or these credentials cannot see it)") \
                from None
        except Exception as exc:  # noqa: BLE001 - unreachable endpoint, refused credentials, missing library
            raise ConfigError(f"{url}: cannot reach the object store ({safe_message(exc)})") from None

    # -- the VersionSource rules ----------------------------------------------------------------------------
    def problem(self, entry: VersionDir) -> str | None:
        graphs = {rel: size for rel, size, _ in entry.files if rel in (SAVED_MODEL_FILE, SAVED_MODEL_TEXT_FILE)}
        prefix = VARIABLES_DIR + "/"
        variables = {rel[len(prefix):]: size for rel, size, _ in entry.files
                     if rel.startswith(prefix) and "/" not in rel[len(prefix):]}
        return files_problem(str(entry.path), graphs, variables or None)

    def stamp(self, entry: VersionDir) -> tuple:
        return entry.files

    def gone(self, entry: VersionDir) -> bool:
        return False  # the next poll's listing retires a removed version; no extra request here

    def release(self, local: Path) -> None:
        """Delete the cached copy ``local`` of a version no longer loaded (only ever inside the cache folder)."""
        local = Path(local).resolve()
        if local != self.cache_dir.resolve() and local.is_relative_to(self.cache_dir.resolve()):
            shutil.rmtree(local, ignore_errors=True)

    def fetch(self, entry: VersionDir) -> Path:
        """The cached copy of ``entry`` (downloaded now when absent): exactly the files of its listing, checked
        against their listed sizes, written under a staging name and renamed, so a cached folder is whole."""
        scheme, bucket, prefix = split_store_url(str(entry.path))
        digest = hashlib.sha256(repr(entry.files).encode()).hexdigest()[:16]
        parent = self.cache_dir / scheme / bucket / Path(*prefix.split("/")).parent
        final = parent / f"{prefix.rsplit('/', 1)[-1]}-{digest}"
        if final.is_dir():
            return final
        parent.mkdir(parents=True, exist_ok=True)
        staging = parent / staging_name(entry.number, uuid.uuid4().hex[:8])
        fs, root = self._fs(str(entry.path))
        try:
            for rel, size, _ in entry.files:
                target = staging.joinpath(*rel.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(f"{root}/{rel}", str(target))
                if target.stat().st_size != size:
                    raise OSError(f"{entry.path}/{rel} changed while it was fetched; retrying at the next poll")
            os.rename(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final


def _tag(info: dict) -> str:
    """What changes when an object is rewritten: S3's ETag, GCS's generation or md5, else the modification time."""
    for key in ("ETag", "etag", "generation", "md5Hash", "LastModified", "mtime", "updated"):
        if info.get(key):
            return str(info[key])
    return ""
