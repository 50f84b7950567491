"""The layers of the house, read from the imports (ast) of every module: each forbidden direction fails here.

DESIGN.md and docs/architecture.md: transports -> data plane (core) and codecs; serving -> batching, runtime,
codec, core; nothing in core imports repository, runtime, batching, transports, settings or TensorFlow; the
two halves never import each other (both may import the model-repository contract, tlserve.contract).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "service" / "transport" / "grpc" / "protos"

# package (a module path prefix) -> module prefixes it must never import
FORBIDDEN = {
    "service.core": ("service.repository", "service.runtime", "service.batching", "service.transport",
                     "service.settings", "service.serving", "service.dataplane", "service.app", "service.codec",
                     "service.observability", "tensorflow", "tensorflow_serving", "grpc", "starlette", "fastapi"),
    "service.transport": ("service.repository", "service.runtime", "service.batching", "service.serving",
                          "service.dataplane", "service.app", "service.settings"),
    "service.serving": ("service.transport", "service.repository", "service.dataplane", "service.app",
                        "service.settings"),
    "service.batching": ("service.transport", "service.repository", "service.runtime", "service.serving",
                         "service.codec", "service.settings", "tensorflow", "grpc", "starlette"),
    "service.runtime": ("service.transport", "service.repository", "service.serving", "service.batching",
                        "service.dataplane", "service.settings"),
    "service.codec": ("service.transport", "service.repository", "service.runtime", "service.batching",
                      "service.serving", "service.dataplane", "service.settings", "grpc", "starlette"),
    "service.shared_memory": ("service.transport", "service.repository", "service.runtime", "service.batching",
                              "service.serving", "service.dataplane", "service.codec", "service.settings",
                              "tensorflow", "grpc", "starlette", "numpy"),
    "service.repository": ("service.transport", "service.serving", "service.runtime", "service.batching",
                           "service.dataplane"),
    # capture and request records: fed by the data plane, written in the background; they know no wire, no model
    "service.capture": ("service.transport", "service.repository", "service.runtime", "service.batching",
                        "service.serving", "service.dataplane", "service.app", "service.settings", "tensorflow",
                        "grpc", "starlette"),
    "service.records": ("service.transport", "service.repository", "service.runtime", "service.batching",
                        "service.serving", "service.dataplane", "service.app", "service.settings", "tensorflow",
                        "grpc", "starlette"),
    "service": ("training",),
    "training": ("service",),
    "tlserve.contract": ("service", "training"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks: names for annotations, never imported at run time
    (test_core_loads_without_tensorflow checks what core really loads)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skipped


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports at run time, at any depth of the file (inside functions too)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_only(tree)
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources() -> list[Path]:
    return sorted(p for top in ("service", "training", "tlserve") for p in (ROOT / top).rglob("*.py")
                  if GENERATED not in p.parents)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(modules: dict[str, set[str]]) -> list[str]:
    found = []
    for module, names in modules.items():
        for package, banned in FORBIDDEN.items():
            if not within(module, package):
                continue
            for name in sorted(names):
                for prefix in banned:
                    # a package may import itself (service.core -> service.core.errors), never the banned rest
                    if within(name, prefix) and not within(name, package) and not within(name, "tlserve.contract"):
                        found.append(f"{module} imports {name} ({package} must not import {prefix})")
    return found


def test_no_module_imports_against_the_layers():
    assert violations({module_name(p): imported(p) for p in sources()}) == []


def test_the_check_sees_a_forbidden_import():
    """The rule table is live: a core module importing the repository, and a route importing a batcher, are caught."""
    assert violations({"service.core.x": {"service.repository.manager"},
                       "service.transport.http.y": {"service.batching.batcher"},
                       "service.core.z": {"service.core.errors"}}) == [
        "service.core.x imports service.repository.manager (service.core must not import service.repository)",
        "service.transport.http.y imports service.batching.batcher "
        "(service.transport must not import service.batching)"]


@pytest.mark.parametrize("module", ["service.core.dataplane", "service.core.errors", "service.core.tensors"])
def test_core_loads_without_tensorflow(module):
    """Not only the imports written in core: nothing core pulls in at run time loads TensorFlow."""
    code = f"import sys, {module}; print('tensorflow' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_bentoml_arbiter_imports_no_tensorflow_nor_what_only_the_worker_runs():
    """BentoML's arbiter imports the service module only to read its configuration and start the worker: it must
    not pay for TensorFlow (seconds of the cold start; issue 14), FastAPI (the app's, 0.2 s), uvicorn (the
    lifecycle's) or numpy (40 ms, for the JSON parser's depth check). Only the worker builds the runtime, and its
    import waits for the arbiter's."""
    heavy = ["tensorflow", "fastapi", "uvicorn", "numpy"]
    code = f"import sys, service.bento_service; print(*[m in sys.modules for m in {heavy!r}])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert dict(zip(heavy, out.stdout.split(), strict=True)) == dict.fromkeys(heavy, "False")
