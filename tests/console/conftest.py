"""Browser tests of the web console: Debian's chromium driven by Playwright against a real server on 127.0.0.1.

Playwright's own browser download cannot work here, so it drives the system browser (``/usr/bin/chromium``,
installed by ``make setup``). The model is a real one trained on scikit-learn's digits for a few seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from service.settings import Settings
from tests.service.conftest import copy_version, start_server

CHROMIUM = Path(os.environ.get("TLSERVE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1200, "height": 900}


def launch_browser(playwright, user_data_dir: Path):
    """A headless chromium context with a fresh profile in ``user_data_dir``."""
    if not CHROMIUM.is_file():
        raise RuntimeError(f"{CHROMIUM} not found: `make setup` installs Debian's chromium")
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True, viewport=VIEWPORT)


class PageProblems:
    """Everything a page complained about: console errors and warnings, uncaught errors, failed requests."""

    def __init__(self, page):
        self.items: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.items.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.items.append(f"request failed: {r.url} {r.failure}"))

    def _console(self, message) -> None:
        if message.type in ("error", "warning"):
            self.items.append(f"console {message.type}: {message.text}")


@pytest.fixture(scope="session")
def digits_training():
    """MobileNetV2 at 48 px, head only, 4 epochs on scikit-learn's digits: ~0.94 test accuracy in ~15 s."""
    from training.train import TrainConfig, train

    cfg = TrainConfig(data="builtin:digits", name="digits", image_size=48, head_epochs=4, fine_tune_epochs=0,
                      augment=(), verbose=0)
    return train(cfg)


@pytest.fixture(scope="session")
def digits_repo(digits_training, tmp_path_factory) -> Path:
    """A model repository holding the digits model (with its evaluation report) as version 1."""
    from training.evaluate import export_trained

    staging = tmp_path_factory.mktemp("digits-export")
    version_dir, _ = export_trained(digits_training, staging)
    root = tmp_path_factory.mktemp("console-repo")
    copy_version(version_dir, root / "digits", "1")
    return root


@pytest.fixture(scope="module")
def console_server(digits_repo):
    running = start_server(Settings(model_repo=digits_repo, poll_interval_s=0.3, max_batch_size=4,
                                    batch_timeout_ms=3))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch_browser(playwright, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


@pytest.fixture
def page(browser):
    """A fresh tab; the test fails if the page logged an error or warning or a request of it failed."""
    tab = browser.new_page()
    problems = PageProblems(tab)
    tab.problems = problems
    yield tab
    tab.close()
    assert problems.items == []


@pytest.fixture(scope="session")
def digit_images(digits_training) -> list[tuple[bytes, str]]:
    """Two test-split digits of different classes, each the one the trained model scored highest for its
    true class: ``(png bytes, true label)``. The console must show that label on top."""
    data, test = digits_training.data, np.asarray(digits_training.split.test)
    truth = data.labels[test]
    own_score = digits_training.test_scores[np.arange(len(test)), truth]
    chosen = []
    for digit in (3, 8):
        candidates = np.flatnonzero(truth == digit)
        best = candidates[np.argmax(own_score[candidates])]
        chosen.append((data.images[test[best]], data.classes[truth[best]]))
    return chosen
