"""TensorFlow imported for serving without the Keras ``import tensorflow`` loads eagerly (1.1 s of every cold
start here; issue 14). Each probe runs in a fresh interpreter: what a process has imported is the point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ["tensorflow", "keras", "sklearn", "matplotlib"]
REPORT = f"import sys; print(*[m in sys.modules for m in {HEAVY!r}])"


def _imported(code: str, env: dict[str, str] | None = None) -> dict[str, bool]:
    out = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=180, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(zip(HEAVY, (word == "True" for word in out.stdout.split()[-len(HEAVY):]), strict=True))


@pytest.fixture(scope="module")
def repo(testdata, tmp_path_factory) -> Path:
    import shutil

    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(testdata / "saved_model_half_plus_two_cpu", root / "half")
    return root


def test_plain_import_tensorflow_loads_keras_here_and_after_it_import_tensorflow_changes_nothing():
    """The cost avoided exists in this venv (were it gone, the tests below could not fail); once TensorFlow is
    imported, ``import_tensorflow`` returns it as it is."""
    code = ("import tensorflow\nfrom service.runtime.tf_import import import_tensorflow\n"
            "assert import_tensorflow() is tensorflow")
    assert _imported(code) == {"tensorflow": True, "keras": True, "sklearn": True, "matplotlib": True}


@pytest.mark.parametrize("build", [
    "from service.bento_service import worker; worker.build()",
    "from service.settings import Settings; from tlserve.model_server import build; build(Settings.from_env())",
], ids=["bentoml-worker", "tlserve-model-server"])
def test_a_serving_process_builds_its_runtime_without_keras(repo, build):
    env = {"TLSERVE_MODEL_REPO": str(repo), "TLSERVE_GRPC_PORT": "-1"}
    assert _imported(build, env) == {"tensorflow": True, "keras": False, "sklearn": False, "matplotlib": False}


def test_a_keras_export_loads_and_answers_without_keras_and_keras_still_imports_after(tiny_export, images):
    """The export is Keras-built (training/export.py); serving it needs none of Keras. Keras stays importable
    afterwards (tf.keras, training in the same interpreter): nothing of the import is left blocked."""
    version_dir, _ = tiny_export
    code = f"""
import sys
from service.runtime.tf_import import import_tensorflow
import_tensorflow()
from service.runtime.savedmodel import LoadedModel
model = LoadedModel(__import__("pathlib").Path({str(version_dir)!r}))
model.warm_up()
import numpy as np
out = model.run("serving_default", {{"images": np.array([{images[0]!r}], dtype=object)}})
assert out["scores"].shape[0] == 1, out
assert "keras" not in sys.modules, "serving pulled Keras in"
import keras
assert keras.optimizers.Adam is not None
print("loaded-keras-after", "keras.src.optimizers" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["loaded-keras-after", "True"]
