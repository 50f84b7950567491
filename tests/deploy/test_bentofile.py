"""bentofile.yaml: points at the BentoML service, packs every serving file and the same dependencies as
pyproject.toml. (The real `bentoml build`, and `bentoml serve` of the Bento it builds, run in
tests/service/transport/http/test_bento_build.py.)"""

from __future__ import annotations

import ast
import tomllib

import pathspec
import yaml

from tests.deploy.conftest import REPO


def bentofile() -> dict:
    return yaml.safe_load((REPO / "bentofile.yaml").read_text())


def test_service_names_the_bentoml_service_class():
    module, _, name = bentofile()["service"].partition(":")
    tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    assert name in classes
    decorators = [ast.unparse(d) for d in classes[name].decorator_list]
    assert any(d.startswith("bentoml.service(") for d in decorators), decorators


def test_packages_are_the_serving_dependencies_of_pyproject():
    serving = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert bentofile()["python"]["packages"] == serving


def test_include_covers_every_serving_file_and_nothing_else():
    spec = bentofile()
    include = pathspec.PathSpec.from_lines("gitignore", spec["include"])
    exclude = pathspec.PathSpec.from_lines("gitignore", spec.get("exclude", []))
    serving = [p.relative_to(REPO).as_posix() for p in (REPO / "service").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts]
    serving += ["tlserve/__init__.py", "tlserve/contract.py"]  # service/ imports the repository contract
    missing = [p for p in serving if not include.match_file(p) or exclude.match_file(p)]
    assert missing == []
    for other in ("training/train.py", "tests/conftest.py", "models/README.md", "tlserve/cli.py"):
        assert not include.match_file(other)
