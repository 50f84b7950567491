"""The capture folder on disk: the one module that knows its layout, used by the writer and by every reader.

    DIR/pending/<id><ext>     the image bytes as received (ext sniffed: .jpg .png .gif .bmp .webp, else .bin)
    DIR/pending/<id>.json     its sidecar; written last, so a capture exists iff its sidecar exists
    DIR/labelled/<model>/<class>/<id><ext>   a reviewed, labelled image: the class-folder layout `tlserve train
                              --data DIR/labelled/<model>` reads
    DIR/reviewed/<id>.json    every reviewed sidecar, with "label" (or "discarded": true) and "reviewed_at"

``<id>`` is ``YYYYmmddTHHMMSSZ-<12 hex>``: names sort by time, so "oldest first" is a sort of the names.
Every file is written atomically (a hidden temporary name in the same folder, then ``os.replace``): a reader never
sees half a file, and `tlserve train` skips hidden files, so it never reads a temporary one. Moves between folders
are renames inside DIR (one file system). One server writes to a DIR; reviews may run concurrently with it and with
each other: a review or an eviction first *claims* the capture by renaming its sidecar to a hidden name, which only
one of them can do, so two reviews of one id cannot both succeed and a capture under review is never evicted.
Ids and labels from outside are checked before they become paths (no traversal, no hidden or odd names).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.core.errors import InvalidInput, NotFound
from tlserve.contract import valid_model_name

PENDING, LABELLED, REVIEWED = "pending", "labelled", "reviewed"
SIDECAR_SUFFIX = ".json"
ID_PATTERN = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{12}")
# The formats the image pipeline accepts, sniffed from their first bytes (the header check has run by then).
_SIGNATURES = ((b"\xff\xd8\xff", ".jpg", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", ".png", "image/png"),
               (b"GIF87a", ".gif", "image/gif"), (b"GIF89a", ".gif", "image/gif"), (b"BM", ".bmp", "image/bmp"))
UNKNOWN_EXT, UNKNOWN_TYPE = ".bin", "application/octet-stream"
# What `tlserve train --data` reads from a class folder (training.preprocessing.IMAGE_SUFFIXES; a test keeps the two
# equal where they overlap): an image of another kind cannot be labelled, only discarded.
TRAINABLE_EXTS = (".jpg", ".png", ".gif", ".bmp")
MAX_LABEL_CHARS = 255


def new_id(now: datetime | None = None) -> str:
    """A fresh capture id: the UTC time to the second, then 48 random bits (names sort by time)."""
    return f"{(now or datetime.now(UTC)).astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"


def valid_id(capture_id: object) -> bool:
    """Whether an id from outside (a URL, a file name) is a capture id, and so safe as part of a file name."""
    return isinstance(capture_id, str) and ID_PATTERN.fullmatch(capture_id) is not None


def sniff(image: bytes) -> tuple[str, str]:
    """(file extension, content type) of encoded image bytes, from their magic number."""
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return ".webp", "image/webp"
    for magic, ext, content_type in _SIGNATURES:
        if image.startswith(magic):
            return ext, content_type
    return UNKNOWN_EXT, UNKNOWN_TYPE


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_label(label: Any) -> str:
    """A class name that is safe as one folder name (it becomes DIR/labelled/<model>/<label>/), else InvalidInput."""
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL_CHARS:
        raise InvalidInput(f"a label is a non-empty string of at most {MAX_LABEL_CHARS} characters")
    if label.startswith(".") or any(c in label for c in "/\\") or any(ord(c) < 32 or ord(c) == 127 for c in label):
        raise InvalidInput("a label cannot start with '.' nor hold '/', '\\' or control characters")
    return label


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` under a hidden temporary name beside ``path``, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class PendingEntry:
    """The files of one pending capture (or of an image whose sidecar was never written) and their bytes."""

    id: str
    bytes: int
    complete: bool  # the sidecar exists


class CaptureDir:
    """Paths and moves under one capture folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.pending = self.root / PENDING
        self.labelled = self.root / LABELLED
        self.reviewed = self.root / REVIEWED

    def create(self) -> None:
        for folder in (self.pending, self.labelled, self.reviewed):
            folder.mkdir(parents=True, exist_ok=True)

    # -- the writer ------------------------------------------------------------------------------------------
    def write(self, capture_id: str, image: bytes, sidecar: dict[str, Any]) -> int:
        """Write one capture (image first, sidecar last); the bytes it takes on disk."""
        body = json.dumps(sidecar, separators=(",", ":")).encode()
        write_atomic(self.pending / sidecar["image"], image)
        write_atomic(self.pending / f"{capture_id}{SIDECAR_SUFFIX}", body)
        return len(image) + len(body)

    def pending_entries(self) -> list[PendingEntry]:
        """Every pending capture, oldest first, with the bytes its image and sidecar take. Images without a
        sidecar (a crash between the two writes) are listed too, so that eviction reclaims them."""
        sizes: dict[str, int] = {}
        complete: set[str] = set()
        with os.scandir(self.pending) as entries:
            for entry in entries:
                stem, _, ext = entry.name.partition(".")
                if not valid_id(stem) or not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    sizes[stem] = sizes.get(stem, 0) + entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:  # reviewed or evicted meanwhile
                    continue
                if "." + ext == SIDECAR_SUFFIX:
                    complete.add(stem)
        return [PendingEntry(i, sizes[i], i in complete) for i in sorted(sizes)]

    def evict(self, capture_id: str) -> int:
        """Delete a pending capture (or an image without a sidecar) unless a review holds it; the bytes freed."""
        claim = self._try_claim(capture_id)
        if claim is None and any(self.pending.glob(f".{capture_id}.claim-*")):
            return 0  # under review: the review decides
        freed = 0
        for path in self._pending_images(capture_id):
            freed += _remove(path)
        if claim is not None:
            freed += _remove(claim)
        return freed

    def remove_leftovers(self) -> None:
        """Drop hidden temporaries and claims a crashed process left in pending/ (call before serving starts)."""
        for path in self.pending.glob(".*"):
            if path.is_file():
                _remove(path)

    # -- readers ---------------------------------------------------------------------------------------------
    def pending_ids(self) -> list[str]:
        """The ids of the complete pending captures, oldest first."""
        return [e.id for e in self.pending_entries() if e.complete]

    def read(self, capture_id: str) -> dict[str, Any]:
        """A pending capture's sidecar; NotFound when there is none (or the id is no capture id)."""
        try:
            doc = _load_sidecar(self._sidecar(capture_id))
        except FileNotFoundError:
            doc = None
        if doc is None:  # none, or not a sidecar: nothing to show (discard still removes it)
            raise NotFound(f"no pending capture {_shown(capture_id)}")
        return doc

    def image_path(self, capture_id: str) -> Path:
        """The pending image of a capture (named by its sidecar), NotFound when there is none."""
        path = self.pending / self._image_name(self.read(capture_id), capture_id)
        if not path.is_file():
            raise NotFound(f"capture {capture_id} has no image")
        return path

    # -- reviews ---------------------------------------------------------------------------------------------
    def label(self, capture_id: str, label: str, now: datetime | None = None) -> dict[str, Any]:
        """Move the capture's image to labelled/<model>/<label>/ and its sidecar to reviewed/; the new sidecar."""
        label = check_label(label)
        claim = self._claim(capture_id)
        try:
            sidecar = _load_sidecar(claim)
            if sidecar is None:
                raise InvalidInput(f"capture {capture_id} has an unreadable sidecar: discard it instead")
            model, image = sidecar.get("model"), self._image_name(sidecar, capture_id)
            if not isinstance(model, str) or not valid_model_name(model):
                raise InvalidInput(f"capture {capture_id} names no valid model")
            if Path(image).suffix not in TRAINABLE_EXTS:
                raise InvalidInput(f"capture {capture_id} is not an image `tlserve train` reads ({image}): discard "
                                   "it instead")
            folder = self.labelled / model / label
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(self.pending / image, folder / image)
        except BaseException:
            os.replace(claim, self._sidecar(capture_id))  # the review failed: the capture is pending again
            raise
        return self._finish(claim, capture_id, sidecar, {"label": label}, now)

    def discard(self, capture_id: str, now: datetime | None = None) -> dict[str, Any]:
        """Delete the capture's image and move its sidecar to reviewed/ with "discarded": true."""
        claim = self._claim(capture_id)
        sidecar = _load_sidecar(claim) or {"id": capture_id}
        for path in self._pending_images(capture_id):
            _remove(path)
        return self._finish(claim, capture_id, sidecar, {"discarded": True}, now)

    # -- internals -------------------------------------------------------------------------------------------
    def _sidecar(self, capture_id: str) -> Path:
        if not valid_id(capture_id):
            raise NotFound(f"no capture {_shown(capture_id)}")
        return self.pending / f"{capture_id}{SIDECAR_SUFFIX}"

    def _try_claim(self, capture_id: str) -> Path | None:
        """Rename the sidecar to a hidden name only this caller knows: rename is atomic, so of two callers one
        gets the capture and the other None."""
        claim = self.pending / f".{capture_id}.claim-{secrets.token_hex(4)}"
        try:
            os.rename(self._sidecar(capture_id), claim)
        except FileNotFoundError:
            return None
        return claim

    def _claim(self, capture_id: str) -> Path:
        claim = self._try_claim(capture_id)
        if claim is None:
            raise NotFound(f"no pending capture {capture_id} (reviewed or evicted already?)")
        return claim

    def _finish(self, claim: Path, capture_id: str, sidecar: dict, review: dict, now: datetime | None) -> dict:
        reviewed = {**sidecar, **review, "reviewed_at": rfc3339(now or datetime.now(UTC))}
        self.reviewed.mkdir(parents=True, exist_ok=True)
        write_atomic(self.reviewed / f"{capture_id}{SIDECAR_SUFFIX}", json.dumps(reviewed).encode())
        _remove(claim)
        return reviewed

    def _image_name(self, sidecar: dict, capture_id: str) -> str:
        """The sidecar's image name, trusted only when it is <id><one of our extensions>."""
        name = sidecar.get("image")
        allowed = {capture_id + ext for ext in (*TRAINABLE_EXTS, ".webp", UNKNOWN_EXT)}
        if name not in allowed:
            raise InvalidInput(f"capture {capture_id} names an unexpected image file")
        return name

    def _pending_images(self, capture_id: str) -> list[Path]:
        return [p for p in self.pending.glob(f"{capture_id}.*") if p.suffix != SIDECAR_SUFFIX]


def sidecar(*, capture_id: str, model: str, version: int, transport: str, api: str, request_id: str,
            moment: datetime, image: bytes, predictions: list[dict[str, Any]], confident: bool | None,
            reason: str) -> dict[str, Any]:
    """The sidecar of one capture, with every field the layout promises (``confident`` absent when the version
    has no unknown score)."""
    ext, content_type = sniff(image)
    doc: dict[str, Any] = {
        "id": capture_id, "model": model, "version": version, "transport": transport, "api": api,
        "request_id": request_id, "time": rfc3339(moment), "image": capture_id + ext, "content_type": content_type,
        "bytes": len(image), "sha256": hashlib.sha256(image).hexdigest(), "predictions": predictions,
        "top_score": predictions[0]["score"] if predictions else None}
    if confident is not None:
        doc["confident"] = confident
    doc["reason"] = reason
    return doc


def _load_sidecar(path: Path) -> dict[str, Any] | None:
    """A sidecar's fields, or None when the file is not a JSON object (a review must answer, not crash)."""
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _remove(path: Path) -> int:
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def _shown(text: Any, limit: int = 40) -> str:
    shown = str(text)
    return repr(shown if len(shown) <= limit else shown[:limit] + "...")
