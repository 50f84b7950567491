"""tlserve/contract.py: the model repository's rules, its standard-library-only imports, and that the service's
discovery and the training export read one folder listing the same way."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from tlserve import contract

CONTRACT = Path(contract.__file__)


# --- version folders --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, number", [
    ("0", 0), ("1", 1), ("7", 7), ("007", 7), ("00000123", 123), ("42", 42),
    (str(contract.MAX_VERSION), contract.MAX_VERSION), ("0" * 30 + "5", 5),
])
def test_integer_names_are_versions(name, number):
    assert contract.is_version_name(name)
    assert contract.parse_version(name) == number


@pytest.mark.parametrize("name", [
    "²", "١٢", "٣", "１", "𝟙",  # Unicode digits: str.isdigit() is True, and int() refuses or misreads them
    "-1", "+1", "1.5", "1e3", "0x1", "1_000", " 1", "1 ", "1\n", "", ".incoming-2", ".5", "tmp", "1a", "v1",
])
def test_other_names_are_not_versions(name):
    assert not contract.is_version_name(name)
    assert contract.parse_version(name) is None


def test_isdigit_alone_would_accept_what_the_contract_refuses():
    """Why the rule says ASCII: these are the names that crashed or fooled an ``isdigit()`` check."""
    assert "²".isdigit() and "١٢".isdigit()
    with pytest.raises(ValueError):
        int("²")
    assert int("١٢") == 12
    assert contract.parse_version("²") is None and contract.parse_version("١٢") is None


def test_numbers_beyond_int64_are_spelt_as_versions_but_are_not_versions():
    too_big = str(contract.MAX_VERSION + 1)
    assert contract.is_version_name(too_big)
    assert contract.parse_version(too_big) is None
    assert contract.MAX_VERSION == 2**63 - 1


def test_the_shortest_name_of_one_number_comes_first():
    assert sorted(["007", "7", "07", "0007"], key=contract.version_name_order) == ["7", "07", "007", "0007"]
    assert sorted(["10", "09"], key=contract.version_name_order) == ["09", "10"]


# --- model names ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits", "m", "7", "a.b", "a-b_c", "Model2", "x" * 255])
def test_valid_model_names(name):
    assert contract.valid_model_name(name)


@pytest.mark.parametrize("name", [
    "", ".", "..", ".hidden", "../x", "a/b", "a\\b", "_x", "-x", "a b", "a\x00", "a\n", "é", "x" * 256, "models/",
])
def test_invalid_model_names(name):
    assert not contract.valid_model_name(name)


# --- names of a tlserve export ----------------------------------------------------------------------------------


def test_file_names_are_the_tf_serving_layout():
    assert contract.SAVED_MODEL_FILE == "saved_model.pb"
    assert contract.VARIABLES_DIR == "variables" and contract.VARIABLES_INDEX_FILE == "variables.index"
    assert contract.LABELS_FILE == "assets/labels.txt"
    assert contract.METADATA_FILE == "assets.extra/metadata.json"
    assert contract.WARMUP_FILE == "assets.extra/tf_serving_warmup_requests"
    assert contract.REPORT_DIR == "assets.extra/report"


def test_signatures_inputs_and_outputs():
    assert dict(contract.SIGNATURE_INPUTS) == {"serving_default": "images", "pixels": "pixels",
                                               "preprocess": "image", "classify": "inputs"}
    assert contract.EXAMPLE_IMAGE_KEY == "image/encoded"
    assert (contract.SCORES_OUTPUT, contract.CLASSES_OUTPUT) == ("scores", "classes")
    assert contract.PREPROCESS_OUTPUT == contract.PIXELS_INPUT  # preprocess's output is what pixels takes
    assert set(contract.IMAGE_MODEL_SIGNATURES) == {"preprocess", "pixels"}
    with pytest.raises(TypeError):
        contract.SIGNATURE_INPUTS["explain"] = "images"  # type: ignore[index]


# --- dependency-free --------------------------------------------------------------------------------------------


def _imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):  # every import, including any inside a function
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def test_contract_imports_only_the_standard_library():
    tree = ast.parse(CONTRACT.read_text(), str(CONTRACT))
    modules = _imported_modules(tree)
    assert modules, "the walk found no imports at all: the test itself is broken"
    not_stdlib = [m for m in modules if m.startswith(".") or m.partition(".")[0] not in sys.stdlib_module_names]
    assert not_stdlib == [], f"tlserve/contract.py must import the standard library only, not {not_stdlib}"
    dynamic = [ast.unparse(n) for n in ast.walk(tree)
               if isinstance(n, ast.Call) and ast.unparse(n.func) in ("__import__", "importlib.import_module")]
    assert dynamic == [], "no imports behind the check's back either"


def test_the_import_check_catches_a_third_party_or_relative_import():
    tree = ast.parse("import numpy as np\nfrom service.core import served\nfrom . import x\n"
                     "def f():\n    import tensorflow\n")
    modules = _imported_modules(tree)
    assert modules == ["numpy", "service.core", ".", "tensorflow"]
    assert all(m.startswith(".") or m.partition(".")[0] not in sys.stdlib_module_names for m in modules)


# --- both halves read one listing the same way --------------------------------------------------------------------

# Folder names and what they mean. '' cannot be a folder name on any file system, so it is checked by name only.
LISTING = {
    "1": 1, "0042": 42, "00000123": 123, "7": 7, "007": 7, "07": 7, str(contract.MAX_VERSION): contract.MAX_VERSION,
    str(contract.MAX_VERSION + 1): None, "²": None, "١٢": None, "٣": None, "-1": None, "1.5": None, "+5": None,
    ".incoming-2": None, ".tmp-9-ab12": None, "tmp": None, "1a": None, "": None,
}
FILES = ("3", "8.txt")  # a file named like a version is not a version


def test_service_discovery_and_training_export_agree_on_every_name(tmp_path):
    from service.repository.discovery import scan_versions
    from training.export import existing_versions, version_dirs

    for name in LISTING:
        if name:
            (tmp_path / name).mkdir()
    for name in FILES:
        (tmp_path / name).write_text("not a version")
    for name, number in LISTING.items():
        assert contract.parse_version(name) == number, name
    assert contract.parse_version("3") == 3  # ...but it is a file, so neither half takes it

    served = {number: found.path for number, found in scan_versions(tmp_path).items()}
    exported = version_dirs(tmp_path)
    # One number, one folder: of '7', '07' and '007' both halves take '7', kept as found ('0042', not '42').
    expected = {1: tmp_path / "1", 7: tmp_path / "7", 42: tmp_path / "0042", 123: tmp_path / "00000123",
                contract.MAX_VERSION: tmp_path / str(contract.MAX_VERSION)}
    assert served == expected
    assert exported == expected
    assert existing_versions(tmp_path) == sorted(expected) == list(served)


# --- publishing and object-store URLs ----------------------------------------------------------------------------
def test_a_staging_name_is_never_a_version_and_the_graph_file_is_published_last():
    name = contract.staging_name(3, "ab12cd34")
    assert name == ".tmp-3-ab12cd34" and contract.parse_version(name) is None
    order = contract.publish_order(["saved_model.pb", "variables/variables.index", "assets/labels.txt",
                                    "variables/variables.data-00000-of-00001"])
    assert order[-1] == "saved_model.pb" and sorted(order[:-1]) == order[:-1]


@pytest.mark.parametrize("url, parts", [("s3://models/repo", ("s3", "models", "repo")),
                                        ("gs://my.bucket/a/b/", ("gs", "my.bucket", "a/b")),
                                        ("GCS://bucket", ("gcs", "bucket", "")),
                                        ("s3://bucket//a///b", ("s3", "bucket", "a/b"))])
def test_store_urls_split_into_scheme_bucket_and_prefix(url, parts):
    assert contract.is_url(url) and contract.split_store_url(url) == parts


@pytest.mark.parametrize("url, why", [("/models", "not a URL"), ("file:///models", "file:// is not supported"),
                                      ("s3://user:pass@bucket/m", "must not hold credentials"),
                                      ("s3://ab/m", "not a valid bucket name"), ("s3://Bucket/m", "bucket name"),
                                      ("s3:///m", "bucket name"), ("s3://bucket/m?versionId=1", "'?' or '#'"),
                                      ("gs://bucket/a/../b", "'..' are not allowed")])
def test_bad_store_urls_say_why(url, why):
    with pytest.raises(contract.StoreUrlError, match=re.escape(why)) as caught:
        contract.split_store_url(url)
    assert "pass" not in str(caught.value)
