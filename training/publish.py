"""Export to an object store (``tlserve train --out s3://bucket/models``): written locally, then published.

The version is exported into a local temporary folder as usual (training/export.py), uploaded under a hidden
staging name (``contract.staging_name``: never a version folder, so a server ignores it), then copied to its final
name in ``contract.publish_order`` (the graph file last), and the staging copy removed. Object stores have no
rename, so the final name fills up file by file; a server waits for the graph file and every variables shard
before it loads a version, so it never sees a half-written one. Credentials come from the libraries' own chains.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from tlserve import contract
from training.distribute import export_destination
from training.export import ExportError


def _filesystem(scheme: str):
    import fsspec

    return fsspec.filesystem(scheme, use_listings_cache=False, skip_instance_cache=True)


def _store(url: str):
    """``(file system, 'bucket/prefix')`` of ``url``, once its bucket has answered; ``ExportError`` otherwise."""
    scheme, bucket, prefix = contract.split_store_url(url)  # StoreUrlError (a ValueError) for a bad URL
    fs = _filesystem(scheme)
    try:
        fs.ls(bucket)
    except FileNotFoundError:
        raise ExportError(f"{url}: bucket {bucket!r} does not exist (or these credentials cannot see it)") from None
    except Exception as exc:  # noqa: BLE001 - unreachable endpoint, refused credentials: one line, no traceback
        raise ExportError(f"{url}: cannot reach the object store ({type(exc).__name__}: {exc})") from None
    return fs, f"{bucket}/{prefix}".rstrip("/")


def check_destination(url: str) -> None:
    """Fail now, before any training, when ``url`` cannot take an export (bad URL, missing bucket, no store)."""
    _store(url)


def store_versions(fs, model: str) -> list[int]:
    """The version numbers under ``model`` ('bucket/prefix/name'), by the contract's rule for folder names."""
    folders = {key[len(model) + 1:].split("/", 1)[0] for key in fs.find(model)}
    return sorted({n for f in folders if (n := contract.parse_version(f)) is not None})


def publish(fs, local_version: Path, model: str, version: int) -> str:
    """Upload the folder ``local_version`` as version ``version`` of ``model`` ('bucket/prefix/name'): staging
    name first, then the final name (graph file last); return the final location."""
    files = [p.relative_to(local_version).as_posix() for p in sorted(local_version.rglob("*")) if p.is_file()]
    staging = f"{model}/{contract.staging_name(version, uuid.uuid4().hex[:8])}"
    final = f"{model}/{version}"
    try:
        for rel in contract.publish_order(files):
            fs.put_file(str(local_version / rel), f"{staging}/{rel}")
        if fs.find(final):
            raise ExportError(f"version {version} appeared under {final} while exporting; not overwriting it")
        for rel in contract.publish_order(files):
            fs.copy(f"{staging}/{rel}", f"{final}/{rel}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(staging, recursive=True)
    return final


@contextlib.contextmanager
def export_root(out: str | Path, name: str, version: int | None, chief: bool) -> Iterator[tuple[Path, int | None]]:
    """Where to export and which version: ``(local repository root, version)``.

    For a local ``out``, ``export_destination``'s folder and ``version`` as given. For an object-store URL (on
    the chief), a temporary folder and the version to write (``version``, or the next free one in the store);
    leaving the block publishes what was exported there (``publish``)."""
    if not contract.is_url(out) or not chief:
        with export_destination(out, chief) as root:
            yield root, version
        return
    fs, prefix = _store(str(out))
    model = f"{prefix}/{name}"
    taken = store_versions(fs, model)
    if version is not None and version in taken:
        raise ExportError(f"version {version} of {name} already exists in {out}")
    version = version or (taken[-1] + 1 if taken else 1)
    with tempfile.TemporaryDirectory(prefix="tlserve-export-") as tmp:
        yield Path(tmp), version
        publish(fs, Path(tmp) / name / str(version), model, version)
