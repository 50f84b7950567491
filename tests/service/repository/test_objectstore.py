"""Model repositories in S3, against a real S3 API server on 127.0.0.1 (moto's server mode, started here).

AWS_ENDPOINT_URL and dummy credentials are set for these tests only; s3fs and botocore find them through their
standard chain, as they would find a real deployment's. GCS has no emulator here: its URL handling is unit-tested.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import httpx
import pytest

from service.repository.config import ConfigError, specs_from_repository
from service.repository.discovery import LocalFolders
from service.repository.objectstore import ObjectStore, safe_message
from service.settings import Settings
from tests.conftest import TESTDATA, wait_until
from tests.service.conftest import start_server

pytest.importorskip("moto")

HALF_PLUS_TWO = TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"  # x/2 + 2: answers 3.0 for 2.0
HALF_PLUS_THREE = TESTDATA / "saved_model_half_plus_three" / "00000123"  # answers 4.0
SECRET = "dummy-secret-key-never-printed"


class S3:
    """A moto S3 server on a free port with one bucket, and an s3fs client of it (for the tests' own uploads)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{self.port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        import fsspec

        self.fs = fsspec.filesystem("s3", use_listings_cache=False, skip_instance_cache=True)
        self.fs.mkdir("models")

    def put_version(self, source: Path, key: str, only: tuple[str, ...] | None = None) -> list[str]:
        """Upload the files of the version folder ``source`` (those named in ``only``, in that order) under
        ``models/<key>``; return the relative names uploaded."""
        names = only or tuple(p.relative_to(source).as_posix() for p in sorted(source.rglob("*")) if p.is_file())
        for rel in names:
            self.fs.put_file(str(source / rel), f"models/{key}/{rel}")
        return list(names)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def s3():
    with pytest.MonkeyPatch.context() as monkeypatch:
        store = S3(monkeypatch)
        yield store
        store.stop()


def statuses(url: str, model: str) -> dict[str, dict]:
    r = httpx.get(f"{url}/v1/models/{model}", timeout=10)
    return {v["version"]: v for v in r.json().get("model_version_status", [])}


def predict(url: str, model: str) -> float:
    r = httpx.post(f"{url}/v1/models/{model}:predict", json={"instances": [[2.0]]}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["predictions"][0][0]


# --- the source, on its own --------------------------------------------------------------------------------------
def test_listing_applies_the_local_rules_to_the_store(s3, tmp_path):
    s3.put_version(HALF_PLUS_TWO, "rules/1")
    s3.put_version(HALF_PLUS_TWO, "rules/2", only=("saved_model.pb", "variables/variables.index"))  # no shard
    s3.put_version(HALF_PLUS_TWO, "rules/.tmp-3-ab12cd34")  # a staging name is never a version
    s3.put_version(HALF_PLUS_TWO, "rules/004")  # leading zeros: kept as found
    store = ObjectStore(tmp_path / "cache")
    found = store.scan("s3://models/rules")
    assert sorted(found) == [1, 2, 4] and found[4].path == "s3://models/rules/004"
    assert store.problem(found[1]) is None and store.problem(found[4]) is None
    local = LocalFolders().problem(LocalFolders().scan(HALF_PLUS_TWO.parent)[123])
    assert local is None  # the same rule passes the same files on disk
    assert "has variables.index but no variables.data-* shard" in store.problem(found[2])

    cached = store.fetch(found[1])
    assert sorted(p.relative_to(cached).as_posix() for p in cached.rglob("*") if p.is_file()) == \
        sorted(p.relative_to(HALF_PLUS_TWO).as_posix() for p in HALF_PLUS_TWO.rglob("*") if p.is_file())
    assert (cached / "saved_model.pb").read_bytes() == (HALF_PLUS_TWO / "saved_model.pb").read_bytes()
    assert store.fetch(found[1]) == cached  # fetched once
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_repository_listing_and_start_checks(s3, tmp_path):
    s3.put_version(HALF_PLUS_TWO, "repo/half/1")
    s3.put_version(HALF_PLUS_TWO, "repo/.hidden/1")
    store = ObjectStore(tmp_path)
    assert [s.name for s in specs_from_repository("s3://models/repo", store.children)] == ["half"]
    assert specs_from_repository("s3://models/repo", store.children)[0].base_path == "s3://models/repo/half"
    assert specs_from_repository("s3://models/empty-prefix", store.children) == []
    store.check("s3://models/repo")
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket' does not exist"):
        store.check("s3://no-such-bucket/models")
    with pytest.raises(ConfigError, match="not a valid bucket name"):
        store.check("s3://X/models")


def test_store_errors_never_show_the_secret(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    assert SECRET not in safe_message(RuntimeError(f"signature mismatch for key {SECRET}"))


@pytest.mark.parametrize("url", ["gs://bucket/models", "gcs://bucket/models/"])
def test_gcs_urls_choose_the_gcs_file_system(url, tmp_path):
    # No GCS emulator runs here: the URL handling is checked with a stand-in file system (recording the scheme),
    # and gcsfs itself takes GOOGLE_APPLICATION_CREDENTIALS or the metadata server, as for any gcsfs user.
    opened = []

    class Listing:
        def find(self, root, detail):
            return {f"{root}/1/saved_model.pb": {"type": "file", "size": 3, "generation": "7"}}

    store = ObjectStore(tmp_path, filesystem=lambda scheme: opened.append(scheme) or Listing())
    found = store.scan(url)
    assert opened == [url.split(":")[0]] and found[1].path == f"{url.rstrip('/')}/1"
    assert found[1].files == (("saved_model.pb", 3, "7"),) and store.problem(found[1]) is None


# --- a real server on the store ----------------------------------------------------------------------------------
def test_serves_from_s3_and_a_version_appears_only_once_complete(s3, tmp_path):
    s3.put_version(HALF_PLUS_TWO, "live/half/1")
    server = start_server(Settings(model_repo="s3://models/live", model_cache_dir=tmp_path, poll_interval_s=0.2))
    try:
        assert predict(server.url, "half") == 3.0
        # Version 2, object by object, the graph file first: not served until its last shard is there.
        s3.put_version(HALF_PLUS_THREE, "live/half/2", only=("saved_model.pb", "variables/variables.index"))
        wait_until(lambda: "incomplete" in statuses(server.url, "half").get("2", {}).get("status", {})
                   .get("error_message", ""), what="version 2 reported incomplete")
        assert predict(server.url, "half") == 3.0
        s3.put_version(HALF_PLUS_THREE, "live/half/2", only=("variables/variables.data-00000-of-00001",))
        wait_until(lambda: predict(server.url, "half") == 4.0, what="version 2 served")
        # Version 1 left (latest policy): once unloaded, its cached copy is deleted; version 2's is there.
        wait_until(lambda: [p.name for p in tmp_path.rglob("*-*") if p.parent.name == "half"] and
                   all(p.name.startswith("2-") for p in tmp_path.rglob("*-*") if p.parent.name == "half"),
                   what="version 1's cached copy removed")

        # A version missing a shard is never served, however many polls pass.
        s3.put_version(HALF_PLUS_TWO, "live/half/3", only=("saved_model.pb", "variables/variables.index"))
        wait_until(lambda: statuses(server.url, "half").get("3"), what="version 3 seen")
        time.sleep(1.0)  # five polls
        assert predict(server.url, "half") == 4.0
        assert statuses(server.url, "half")["3"]["state"] == "END"
        s3.fs.rm("models/live/half/3", recursive=True)

        # The store goes away: the served version keeps answering and its status says why nothing new comes.
        s3.stop()
        try:
            status = wait_until(lambda: statuses(server.url, "half")["2"]["status"]["error_message"],
                                what="the unreachable store in the status")
            assert "model store unreachable" in status and SECRET not in status
            assert statuses(server.url, "half")["2"]["state"] == "AVAILABLE"
            assert predict(server.url, "half") == 4.0
            assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        finally:
            s3.server = type(s3.server)(ip_address="127.0.0.1", port=s3.port, verbose=False)
            s3.server.start()  # moto keeps its buckets in this process: the same store comes back
        wait_until(lambda: not statuses(server.url, "half")["2"]["status"]["error_message"],
                   what="the error cleared once the store answers")
    finally:
        server.stop()


def test_tlserve_train_to_s3_then_served(tiny_training, tiny_export, s3, tmp_path, monkeypatch):
    import shutil

    import training.evaluate
    import training.train
    from tlserve.cli import main

    # Fitting and exporting are the session's tiny model and its export (the suite makes them once for every test
    # that needs them; tests/training checks both): what runs here is tlserve train's path to the store (the
    # destination check, the version choice, the upload under a staging name, the publish) and a server on it.
    def export_trained(trained, root, version, **_trust):
        path = shutil.copytree(tiny_export[0], Path(root) / "shapes" / str(version))
        return path, tiny_export[1]

    monkeypatch.setattr(training.train, "train", lambda cfg: tiny_training)
    monkeypatch.setattr(training.evaluate, "export_trained", export_trained)
    args = ["train", "--data", "builtin:shapes", "--name", "shapes", "--out", "s3://models/trained", "--quiet"]
    # (No capsys here: TensorFlow's logging keeps the stream it first saw, and capsys closes its own at the end.)
    assert main(args) == 0
    assert main(args) == 0  # the next free version in the store: 2
    keys = s3.fs.find("models/trained")
    assert {k.split("/")[3] for k in keys} == {"1", "2"}  # and no staging copy left
    assert len(keys) == 2 * len([p for p in tiny_export[0].rglob("*") if p.is_file()])
    server = start_server(Settings(model_repo="s3://models/trained", model_cache_dir=tmp_path, poll_interval_s=0))
    try:
        metadata = httpx.get(f"{server.url}/v1/models/shapes/metadata", timeout=30)
        assert metadata.status_code == 200 and "serving_default" in metadata.text
        assert metadata.json()["model_spec"]["version"] == "2"
    finally:
        server.stop()


def test_bad_urls_and_missing_buckets_are_one_line_errors(s3, capsys):
    from tlserve.cli import main

    for url, message in [("s3://no-such-bucket/models", "bucket 'no-such-bucket' does not exist"),
                         ("s3://Bad_Bucket/models", "not a valid bucket name"),
                         ("ftp://host/models", "ftp:// is not supported")]:
        assert main(["serve", "--model-repo", url]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and SECRET not in err
    assert main(["train", "--data", "builtin:shapes", "--name", "x", "--out", "s3://no-such-bucket/m"]) == 2
    assert "bucket 'no-such-bucket' does not exist" in capsys.readouterr().err

