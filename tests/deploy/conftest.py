"""Fixtures for the deploy checks: the repository's manifests rendered with kubectl's kustomize."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu", "podman-local")


def _tool(name: str) -> str:
    """The path of a tool the deploy tests need. Missing is a failure, never a skip: `make setup` installs
    hadolint and kubernetes-validate into .venv, and kubectl is part of this project's machine image."""
    venv_bin = Path(__file__).resolve().parents[2] / ".venv" / "bin" / name
    path = str(venv_bin) if venv_bin.exists() else shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed (see README 'Deploy': `make setup`; kubectl comes with the machine)")
    return path


@pytest.fixture(scope="session")
def tool():
    return _tool


def render(overlay: Path) -> str:
    return subprocess.run([_tool("kubectl"), "kustomize", str(overlay)], check=True, text=True,
                          capture_output=True).stdout


@pytest.fixture(scope="session")
def rendered() -> dict[str, str]:
    """Each overlay's rendered YAML."""
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture
def docs(rendered):
    """A fresh copy of each overlay's objects, for tests that break them."""
    return {name: [d for d in yaml.safe_load_all(text) if d] for name, text in rendered.items()}
