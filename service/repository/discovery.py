"""Version directories: which exist, whether one looks completely copied, and when its files changed.

Nothing here loads a model; these checks run before the loader so that a half-copied version is never served.
The rules are written once, over file names and sizes (``files_problem``); a ``VersionSource`` applies them to
one kind of storage: ``LocalFolders`` (here) or an object store (``objectstore.py``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tlserve.contract import (
    SAVED_MODEL_FILE,
    SAVED_MODEL_TEXT_FILE,
    VARIABLES_DIR,
    VARIABLES_INDEX_FILE,
    is_version_name,
    parse_version,
    version_name_order,
)

log = logging.getLogger(__name__)

_SHARD = re.compile(r"variables\.data-(\d+)-of-(\d+)")


@dataclass(frozen=True)
class VersionDir:
    """A version directory: its number and its location exactly as found (``.../00000123``, never rebuilt): a
    local ``Path``, or an object-store URL with ``files``, the listing it was found in (relative path, size, tag)."""

    number: int
    path: Path | str
    files: tuple[tuple[str, int, str], ...] = ()


class VersionSource(Protocol):
    """Where a model's versions live: how to list them, judge them and bring one to a local folder to load."""

    def scan(self, base: Path | str) -> dict[int, VersionDir]:
        """The versions under ``base`` by number (``{}`` when there is none). May raise when the storage cannot
        be reached: the caller keeps what it serves."""
        ...

    def problem(self, entry: VersionDir) -> str | None:
        """Why ``entry`` does not look complete yet (``files_problem``), or None."""
        ...

    def stamp(self, entry: VersionDir) -> tuple:
        """A fingerprint of ``entry``'s files that changes when any of them does."""
        ...

    def fetch(self, entry: VersionDir) -> Path:
        """A local folder holding ``entry``'s files, for the loader (blocking)."""
        ...

    def gone(self, entry: VersionDir) -> bool:
        """True when ``entry`` is known to have been removed (checked once a load finishes)."""
        ...

    def release(self, local: Path) -> None:
        """``local`` (what ``fetch`` gave) is no longer loaded: a cache may delete it."""
        ...


class LocalFolders:
    """Versions in local (or mounted) folders: the rules below applied to the file system itself."""

    def scan(self, base: Path | str) -> dict[int, VersionDir]:
        return scan_versions(Path(base))

    def problem(self, entry: VersionDir) -> str | None:
        return version_problem(Path(entry.path))

    def stamp(self, entry: VersionDir) -> tuple:
        return content_stamp(Path(entry.path))

    def fetch(self, entry: VersionDir) -> Path:
        return Path(entry.path)

    def gone(self, entry: VersionDir) -> bool:
        return not Path(entry.path).exists()

    def release(self, local: Path) -> None:
        pass  # the repository's own folder: never deleted by the server


def scan_versions(base_path: Path) -> dict[int, VersionDir]:
    """The integer-named sub-directories of ``base_path`` by version number.

    Hidden and non-integer names (``.tmp-3-ab12``, ``tmp``, ``1a``) are ignored, as TF Serving ignores them. When
    two names mean one number (``7`` and ``007``) the shortest name (then the smallest string) wins, with a warning.
    A missing ``base_path`` gives ``{}``: the model simply has no versions yet.
    """
    base_path = Path(base_path)
    try:
        entries = sorted(os.scandir(base_path), key=lambda e: version_name_order(e.name))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found: dict[int, VersionDir] = {}
    for entry in entries:
        if not is_version_name(entry.name) or not entry.is_dir():
            continue
        number = parse_version(entry.name)
        if number is None:
            log.warning("ignoring %s: version number does not fit in int64", entry.path)
            continue
        if number in found:
            # Entries are sorted, so the one already kept is the deterministic winner.
            log.warning("version %d of %s: ignoring %r, %r has the same number", number, base_path, entry.name,
                        Path(found[number].path).name)
            continue
        found[number] = VersionDir(number, base_path / entry.name)
    return dict(sorted(found.items()))


def version_problem(path: Path) -> str | None:
    """Why the version directory ``path`` does not look complete yet, or ``None`` when it does (``files_problem``
    applied to the folder's graph files and ``variables/``)."""
    path = Path(path)
    if not path.is_dir():
        return f"{path} is not a directory"
    try:
        graphs = {n: (path / n).stat().st_size for n in (SAVED_MODEL_FILE, SAVED_MODEL_TEXT_FILE)
                  if (path / n).is_file()}
        variables_dir = path / VARIABLES_DIR
        variables = ({p.name: p.stat().st_size for p in variables_dir.iterdir()} if variables_dir.is_dir() else None)
    except OSError as exc:  # removed or rewritten while checked, or unreadable: not complete, and tried again
        return f"{path} could not be read ({type(exc).__name__}: {exc.strerror or exc})"
    return files_problem(str(path), graphs, variables)


def files_problem(where: str, graphs: Mapping[str, int], variables: Mapping[str, int] | None) -> str | None:
    """The one completeness rule, over file names and sizes: ``graphs`` are the version's ``saved_model.pb`` /
    ``saved_model.pbtxt`` files present, ``variables`` the entries of its ``variables/`` (None: there is none).

    A graph file must be present and non-empty, and when ``variables/`` holds files, ``variables.index`` and every
    ``variables.data-XXXXX-of-NNNNN`` shard must be there. ``where`` names the version in the messages.
    """
    graph = next((n for n in (SAVED_MODEL_FILE, SAVED_MODEL_TEXT_FILE) if n in graphs), None)
    if graph is None:
        return f"no saved_model.pb or saved_model.pbtxt in {where}"
    if graphs[graph] == 0:
        return f"{where}/{graph} is empty (still being copied?)"
    if variables is None:
        return None  # some SavedModels have no variables at all
    return _variables_problem(f"{where}/{VARIABLES_DIR}", variables)


def _variables_problem(where: str, sizes: Mapping[str, int]) -> str | None:
    """The checkpoint in ``variables/`` (entry names -> sizes) is missing its index or a data shard."""
    names = set(sizes)
    if not names:
        # TF1's SavedModelBuilder leaves an empty variables/ for a model without variables, and TF loads it. A
        # half-copied model that does have variables fails to load instead (no checkpoint to restore), so
        # accepting this is safe; the loader retries once content_stamp changes. (An object store has no empty
        # folders: there, no variables/ at all looks the same.)
        return None
    if VARIABLES_INDEX_FILE not in names:
        return f"{where} has no variables.index (still being copied?)"
    if sizes[VARIABLES_INDEX_FILE] == 0:
        return f"{where}/{VARIABLES_INDEX_FILE} is empty (still being copied?)"
    totals = {int(m.group(2)) for n in names if (m := _SHARD.fullmatch(n))}
    if not totals:
        return f"{where} has variables.index but no variables.data-* shard (still being copied?)"
    if len(totals) > 1:
        return f"{where} mixes shards of different checkpoints (of-{sorted(totals)}); re-export the version"
    total = totals.pop()
    missing = [i for i in range(total) if f"variables.data-{i:05d}-of-{total:05d}" not in names]
    if missing:
        return (f"{where} is missing {len(missing)} of {total} data shards, e.g. "
                f"variables.data-{missing[0]:05d}-of-{total:05d} (still being copied?)")
    return None


def content_stamp(path: Path) -> tuple:
    """A cheap fingerprint of a version directory: sorted relative paths with size and mtime_ns.

    It changes when a file is added, removed, grows or is rewritten, so a version that failed to load is retried
    once its files change (e.g. a copy that finishes late). Directories appear too, with size and mtime 0, so that
    a new empty ``variables/`` counts as a change. A missing ``path`` gives ``()``.
    """
    root = Path(path)
    stamp = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        for name in dirnames:
            stamp.append(((rel_dir / name).as_posix() + "/", 0, 0))
        for name in filenames:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except FileNotFoundError:  # removed while we walked: the next stamp will differ anyway
                continue
            stamp.append(((rel_dir / name).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(sorted(stamp))
