"""The web console at ``/ui``: three static files and the small JSON API they read.

- ``/ui/`` (index.html), ``/ui/app.js``, ``/ui/style.css``: plain files from ``console_static/``, served
  with a Content-Security-Policy that allows nothing from outside the server;
- ``GET /ui/api/models``: every model, its versions with state and failure reason, version labels,
  class names, batching settings and the files of each version's evaluation report;
- ``GET /ui/api/stats``: live figures per model (``service.observability.stats``);
- ``GET /ui/api/predictions``: per model and version, the class frequencies of the recent predictions beside the
  export's reference, and their drift (``service.observability.predictions``);
- ``GET /ui/api/models/{m}/versions/{v}/report/{file}``: one file of that version's exported report;
- ``/ui/api/captures...``: the review of captured images (``console_review``).

Predictions go through the public ``POST /classify``, and the Grad-CAM overlays of a version with an explain
signature through the public ``POST /explain``. Console calls are not counted in the request
metrics (they would drown the traffic they show).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, RedirectResponse

from service.codec.version import parse_version
from service.core.dataplane import DataPlane, ModelInfo, VersionStatus
from service.core.errors import NotFound
from service.observability.metrics import Metrics
from service.observability.predictions import PredictionMonitor
from service.observability.stats import StatsWindow
from service.transport.http import console_review
from service.transport.http.common import json_response
from tlserve.contract import REPORT_DIR

STATIC_DIR = Path(__file__).with_name("console_static")
STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
REPORT_TYPES = {".json": "application/json", ".html": "text/html", ".md": "text/markdown", ".png": "image/png"}
REPORT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Nothing is loaded from outside the server; report images arrive as blob: URLs, report.html's as data: URIs.
CONSOLE_CSP = ("default-src 'self'; img-src 'self' data: blob:; frame-src 'self' blob:; "
               "object-src 'none'; base-uri 'none'; form-action 'none'")
# report.html is one self-contained file: its own inline style and data: images, nothing else.
REPORT_HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def is_report_name(name: str) -> bool:
    """``name`` can be a file of a report: no separators, no leading dot, one of the report's own types."""
    return bool(REPORT_NAME.fullmatch(name)) and Path(name).suffix.lower() in REPORT_TYPES


def report_file(version_dir: Path | str, name: str) -> Path | None:
    """The report file ``name`` of a version, or None: a regular file directly inside the report folder,
    also once symbolic links are followed (blocking: file-system access). A version from an object store (a URL)
    shows no report here."""
    if not isinstance(version_dir, Path):
        return None
    folder = version_dir / REPORT_DIR
    path = folder / name
    try:
        return path if is_report_name(name) and path.is_file() and path.resolve().parent == folder.resolve() else None
    except OSError:
        return None


def list_report_files(version_dir: Path | str) -> list[str]:
    """Names of the report files a version carries (blocking: file-system access); none for a URL."""
    if not isinstance(version_dir, Path):
        return []
    folder = version_dir / REPORT_DIR
    try:
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return []
    return [name for name in names if report_file(version_dir, name)]


def list_report_files_of(version_dirs: list[Path | str]) -> list[list[str]]:
    return [list_report_files(path) for path in version_dirs]


def _version_json(info: ModelInfo, status: VersionStatus, report: list[str]) -> dict:
    served = info.served.get(status.number)
    return {"version": str(status.number), "state": status.state, "reason": status.error,
            "since": status.changed_at, "report": report, "classes": served.class_names if served else None,
            "batching": served.batching if served else None, "explain": bool(served and served.explain)}


def build_router(dataplane: DataPlane, metrics: Metrics, predictions: PredictionMonitor,
                 capture_dir: Path | None = None) -> APIRouter:
    """The console's routes; ``capture_dir``: the capture folder under review (None: capture is off)."""
    router = APIRouter(tags=["console"])
    stats = StatsWindow(metrics)

    def static(name: str) -> FileResponse:
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name],
                            headers={"Content-Security-Policy": CONSOLE_CSP, "Cache-Control": "no-cache"})

    @router.get("/ui", include_in_schema=False)
    async def ui_root():
        return RedirectResponse("/ui/")  # the page's relative links need the trailing slash

    @router.get("/ui/", include_in_schema=False)
    async def index():
        return static("index.html")

    @router.get("/ui/app.js", include_in_schema=False)
    async def script():
        return static("app.js")

    @router.get("/ui/style.css", include_in_schema=False)
    async def style():
        return static("style.css")

    @router.get("/ui/api/models", summary="Models, versions, states, labels, classes, batching, report files")
    async def models():
        listing = []
        for name in dataplane.model_names():
            info = dataplane.model_info(name)
            reports = await asyncio.to_thread(list_report_files_of, [s.path for s in info.versions])
            listing.append({
                "name": name,
                "version_labels": info.version_labels,
                "ready": info.ready,
                "versions": [_version_json(info, s, r) for s, r in zip(info.versions, reports, strict=True)],
            })
        return json_response({"models": listing})

    @router.get("/ui/api/stats", summary="Recent request rate, p50/p99 latency, batch size, queue depth, errors")
    async def live_stats():
        return json_response({"models": stats.figures()})

    @router.get("/ui/api/predictions", summary="Recent predicted class frequencies beside the reference, and drift")
    async def live_predictions():
        return json_response({"models": predictions.live()})

    @router.get("/ui/api/models/{model}/versions/{version}/report/{file}", summary="A file of a version's report")
    async def get_report_file(model: str, version: str, file: str):
        (status,) = dataplane.status(model, parse_version(version))
        path = await asyncio.to_thread(report_file, status.path, file)
        if path is None:
            raise NotFound(f"model '{model}' version {version} has no report file '{file}'")
        headers = {"Content-Security-Policy": REPORT_HTML_CSP} if path.suffix.lower() == ".html" else None
        return FileResponse(path, media_type=REPORT_TYPES[path.suffix.lower()], headers=headers)

    console_review.add_routes(router, capture_dir)
    return router
