"""The Dockerfile: hadolint-clean, and built the way the deployment relies on (serve is the default target,
runs as a non-root user, exec-form entrypoint so SIGTERM reaches the server, ports 3000/8500), with a
build context that holds exactly what it copies and a serving stage without the training dependencies."""

from __future__ import annotations

import ast
import json
import subprocess
import tomllib

import pytest

from tests.deploy.conftest import REPO

TRAINING_ONLY = {"sklearn": "scikit-learn", "skimage": "scikit-image", "matplotlib": "matplotlib"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        current += " " + line.rstrip("\\").strip() if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list] = {}
    name = None
    for instruction, args in instructions(text):
        if instruction == "FROM":
            name = args.split()[-1] if " AS " in args.upper() else args
            found[name] = []
        elif name is not None:
            found[name].append((instruction, args))
    return found


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def hadolint(tool, path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("hadolint"), "--no-color", str(path)], capture_output=True, text=True)


def test_hadolint_is_clean(tool):
    result = hadolint(tool, REPO / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_bad_dockerfile(tool, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /src && pip install tlserve\nUSER root\nCMD tlserve serve\n")
    result = hadolint(tool, bad)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3003", "DL3002", "DL3025"):
        assert rule in result.stdout, result.stdout


def test_serve_is_the_default_target_and_runs_as_a_non_root_user(dockerfile):
    all_stages = stages(dockerfile)
    assert list(all_stages)[-1] == "serve"  # `docker build .` without --target gives the server
    assert "train" in all_stages
    for name in ("serve", "train"):
        users = [args for instruction, args in all_stages[name] if instruction == "USER"]
        uid = users[-1].split(":")[0]
        assert uid.isdigit() and int(uid) != 0, f"{name} runs as {users[-1]!r}: Kubernetes' runAsNonRoot needs a numeric non-root id"


def test_serve_stage_is_signal_safe_and_exposes_both_ports(dockerfile):
    serve = dict(stages(dockerfile)["serve"])
    entrypoint = json.loads(serve["ENTRYPOINT"])  # exec form: a JSON array, no shell between the signal and tlserve
    assert entrypoint[:2] == ["tlserve", "serve"]
    assert serve["STOPSIGNAL"] == "SIGTERM"
    assert set(serve["EXPOSE"].split()) == {"3000", "8500"}
    assert "TLSERVE_MODEL_REPO=/models" in serve["ENV"]
    # a read-only root file system: everything BentoML writes goes under /tmp
    assert "BENTOML_HOME=/tmp/" in serve["ENV"] and "PROMETHEUS_MULTIPROC_DIR=/tmp/" in serve["ENV"]


def test_serve_stage_has_no_training_dependencies(dockerfile):
    all_stages = stages(dockerfile)
    copied_from = {args.split()[0].split("=")[1] for i, args in all_stages["serve"] if i == "COPY" and "--from" in args}
    assert copied_from == {"deps-serve", "wheel"}
    build = " ".join(args for name in ("deps-serve", "wheel", "serve") for i, args in all_stages[name] if i == "RUN")
    assert "[train]" not in build and "--no-deps" in build
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    serving = " ".join(project["dependencies"])
    for package in TRAINING_ONLY.values():
        assert package not in serving
        assert any(d.startswith(package) for d in project["optional-dependencies"]["train"])


def test_serving_code_never_imports_training_only_packages():
    """What lets the serve image leave them out: service/ and tlserve/ import none of them at module level
    (tlserve's train/evaluate commands import training/ inside the command function)."""
    offenders = []
    checked = [(path, True) for path in (REPO / "service").rglob("*.py")]  # anywhere in service/
    checked += [(path, False) for path in (REPO / "tlserve").glob("*.py")]  # module level in tlserve/
    for path, everywhere in checked:
        tree = ast.parse(path.read_text())
        nodes = ast.walk(tree) if everywhere else tree.body
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if name.split(".")[0] in (*TRAINING_ONLY, "training"):
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []


def test_build_context_holds_exactly_what_the_package_build_needs():
    """.dockerignore excludes everything (models, venvs, .git) except what `pip install .` reads:
    pyproject.toml, the readme it names, and the packages it finds."""
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert allowed == {"pyproject.toml", pyproject["project"]["readme"], *packages}
