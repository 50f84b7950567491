"""Screenshots of the web console and of a report.html for the README (docs/console.png, docs/report.png).

    .venv/bin/python -m tests.console.screenshots [--model models/digits/1] [--out docs]

Serves a copy of the given version (plus a version 2 with a corrupt saved_model.pb, to show a failure) on
127.0.0.1, classifies three scikit-learn digits in the console's try-it panel, and takes the pictures in
headless chromium. The PNGs are reduced to 256 colours to keep the repository small.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from PIL import Image

from service.settings import Settings
from service.transport.http.console import REPORT_DIR
from tests.console.conftest import PageProblems, launch_browser
from tests.service.conftest import copy_version, start_server


def save_small(png: bytes, path: Path) -> None:
    path.write_bytes(png)
    with Image.open(path) as image:
        image.convert("RGB").quantize(256).save(path, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/digits/1"), help="a tlserve export's version dir")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from training.data import load_images
    from training.report import write_html

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        version = copy_version(args.model, tmp / "repo" / "digits", "1")
        report_dir = version / REPORT_DIR
        write_html(json.loads((report_dir / "report.json").read_text()), report_dir)  # an older export's too
        server = start_server(Settings(model_repo=tmp / "repo", poll_interval_s=0.5))
        try:
            broken = copy_version(args.model, tmp / "repo" / "digits", ".incoming-2")
            (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
            broken.rename(tmp / "repo" / "digits" / "2")
            digits = load_images("builtin:digits")
            files = []
            for index in (3, 7, 9):
                files.append(tmp / f"digit-{digits.classes[digits.labels[index]]}.png")
                files[-1].write_bytes(digits.images[index])
            args.out.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as playwright:
                browser = launch_browser(playwright, tmp / "profile")
                page = browser.new_page()
                problems = PageProblems(page)
                page.goto(f"{server.url}/ui")
                page.wait_for_selector('tr.version[data-version="2"] .state-failed', timeout=30_000)
                page.locator('tr.version[data-version="1"]').click()
                page.wait_for_selector(".gallery img")
                page.set_input_files("#try-files", [str(f) for f in files])
                page.wait_for_selector("#try-results .result >> nth=2")
                time.sleep(3.5)  # one refresh of the live figures after the call
                save_small(page.screenshot(full_page=True), args.out / "console.png")
                page.goto(f"{server.url}/ui/api/models/digits/versions/1/report/report.html")
                save_small(page.screenshot(full_page=True), args.out / "report.png")
                browser.close()
            if problems.items:
                print("the page reported problems:", *problems.items, sep="\n  ")
                return 1
        finally:
            server.stop()
    for name in ("console.png", "report.png"):
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
