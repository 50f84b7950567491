"""Version directory discovery, completeness checks and content stamps, on TF Serving's test models and tmp dirs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from service.repository.discovery import VersionDir, content_stamp, scan_versions, version_problem


def make_version(path: Path, shards: int = 1, pb: bytes = b"graph") -> Path:
    """A fake but complete-looking version directory with a ``shards``-way checkpoint."""
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(pb)
    (path / "variables" / "variables.index").write_bytes(b"index")
    for i in range(shards):
        (path / "variables" / f"variables.data-{i:05d}-of-{shards:05d}").write_bytes(b"data")
    return path


# --- scan_versions ----------------------------------------------------------------------------------------------


def test_scan_testdata_keeps_the_path_as_found(testdata):
    base = testdata / "saved_model_half_plus_two_2_versions"
    versions = scan_versions(base)
    assert versions == {123: VersionDir(123, base / "00000123"), 124: VersionDir(124, base / "00000124")}
    assert versions[123].path.name == "00000123"
    assert list(versions) == [123, 124]


def test_scan_ignores_hidden_non_integer_and_files(tmp_path):
    for name in ("1", "0042", ".tmp-3-ab12", ".5", "tmp", "1a", "-2", "٣", "²"):
        (tmp_path / name).mkdir()
    (tmp_path / "9").write_text("a file, not a version")
    assert scan_versions(tmp_path) == {1: VersionDir(1, tmp_path / "1"), 42: VersionDir(42, tmp_path / "0042")}


def test_scan_duplicate_numbers_keep_the_shortest_name_and_warn(tmp_path, caplog):
    for name in ("007", "7", "07"):
        (tmp_path / name).mkdir()
    with caplog.at_level(logging.WARNING, logger="service.repository.discovery"):
        versions = scan_versions(tmp_path)
    assert versions == {7: VersionDir(7, tmp_path / "7")}
    assert "'07'" in caplog.text and "'007'" in caplog.text


def test_scan_missing_base_path_is_empty(tmp_path):
    assert scan_versions(tmp_path / "nope") == {}
    (tmp_path / "file").write_text("")
    assert scan_versions(tmp_path / "file") == {}


# --- version_problem --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["saved_model_half_plus_two_cpu", "saved_model_half_plus_three",
                                   "saved_model_half_plus_two_2_versions"])
def test_testdata_versions_are_complete(testdata, model):
    for version in scan_versions(testdata / model).values():
        assert version_problem(version.path) is None


def test_fake_complete_versions(tmp_path):
    assert version_problem(make_version(tmp_path / "1")) is None
    assert version_problem(make_version(tmp_path / "2", shards=3)) is None


def test_missing_graph(tmp_path):
    version = make_version(tmp_path / "1")
    (version / "saved_model.pb").unlink()
    assert "no saved_model.pb" in version_problem(version)
    (version / "saved_model.pbtxt").write_text("meta_graphs {}")
    assert version_problem(version) is None


def test_empty_graph(tmp_path):
    assert "saved_model.pb is empty" in version_problem(make_version(tmp_path / "1", pb=b""))


def test_not_a_directory(tmp_path):
    assert "not a directory" in version_problem(tmp_path / "nope")


def test_a_file_removed_during_the_check_is_a_problem_not_an_error(tmp_path):
    # A version deleted (or rewritten) while it is checked: variables/ lists a name that no longer resolves. A
    # dangling link is that moment held still. It must read as "not complete yet", never raise: a raise failed the
    # whole poll (every model's) in CI, with the model half-listed in between.
    version = make_version(tmp_path / "1")
    (version / "variables" / "variables.index").unlink()
    (version / "variables" / "variables.index").symlink_to(tmp_path / "gone")
    assert "could not be read" in version_problem(version)


def test_missing_index(tmp_path):
    version = make_version(tmp_path / "1")
    (version / "variables" / "variables.index").unlink()
    assert "no variables.index" in version_problem(version)


def test_empty_index(tmp_path):
    version = make_version(tmp_path / "1")
    (version / "variables" / "variables.index").write_bytes(b"")
    assert "variables.index is empty" in version_problem(version)


def test_missing_shard(tmp_path):
    version = make_version(tmp_path / "1", shards=3)
    (version / "variables" / "variables.data-00001-of-00003").unlink()
    assert "variables.data-00001-of-00003" in version_problem(version)


def test_index_without_any_shard(tmp_path):
    version = make_version(tmp_path / "1", shards=2)
    for shard in (version / "variables").glob("variables.data-*"):
        shard.unlink()
    assert "no variables.data" in version_problem(version)


def test_shards_of_two_checkpoints(tmp_path):
    version = make_version(tmp_path / "1", shards=1)
    (version / "variables" / "variables.data-00000-of-00002").write_bytes(b"data")
    assert "mixes shards" in version_problem(version)


def test_models_without_variables_are_complete(tmp_path):
    # No variables/ at all, or the empty variables/ that TF1's SavedModelBuilder writes for a variable-free graph.
    version = make_version(tmp_path / "1")
    for f in (version / "variables").iterdir():
        f.unlink()
    assert version_problem(version) is None
    (version / "variables").rmdir()
    assert version_problem(version) is None


# --- content_stamp ----------------------------------------------------------------------------------------------


def test_stamp_is_stable_and_relative(tmp_path):
    a = make_version(tmp_path / "a")
    assert content_stamp(a) == content_stamp(a)
    names = [entry[0] for entry in content_stamp(a)]
    assert names == sorted(names)
    assert "variables/variables.index" in names and "variables/" in names
    assert all(not name.startswith(str(tmp_path)) for name in names)


def test_stamp_changes_when_a_file_is_added(tmp_path):
    version = make_version(tmp_path / "1")
    before = content_stamp(version)
    (version / "variables" / "variables.data-00000-of-00002").write_bytes(b"")
    assert content_stamp(version) != before


def test_stamp_changes_when_a_file_grows(tmp_path):
    version = make_version(tmp_path / "1")
    pb = version / "saved_model.pb"
    mtime = pb.stat().st_mtime_ns
    before = content_stamp(version)
    with open(pb, "ab") as f:
        f.write(b"more")
    os.utime(pb, ns=(mtime, mtime))  # same mtime: the size alone must tell
    assert content_stamp(version) != before


def test_stamp_changes_when_a_file_is_rewritten_in_place(tmp_path):
    version = make_version(tmp_path / "1")
    pb = version / "saved_model.pb"
    before = content_stamp(version)
    st = pb.stat()
    pb.write_bytes(b"GRAPH")  # same size
    os.utime(pb, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert content_stamp(version) != before


def test_stamp_changes_when_an_empty_directory_appears(tmp_path):
    version = tmp_path / "1"
    version.mkdir()
    (version / "saved_model.pb").write_bytes(b"graph")
    before = content_stamp(version)
    (version / "variables").mkdir()
    assert content_stamp(version) != before


def test_stamp_of_missing_dir_is_empty(tmp_path):
    assert content_stamp(tmp_path / "nope") == ()
