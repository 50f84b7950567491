"""Hot reload under traffic: new versions switch in with no failed request; broken ones are never served."""

from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest

from service.settings import Settings
from tests.conftest import TESTDATA, grpc_channel
from tests.service.conftest import copy_version, start_server

HALF_PLUS_TWO = TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"
HALF_PLUS_THREE = TESTDATA / "saved_model_half_plus_three" / "00000123"


class Traffic:
    """Sends predict requests back to back in a thread; records every answer."""

    def __init__(self, url: str):
        self.url, self.answers, self.failures = url, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/v1/models/half:predict", json={"instances": [[2.0]]})
                    if r.status_code == 200:
                        self.answers.append(r.json()["predictions"][0][0])
                    else:
                        self.failures.append((r.status_code, r.text))
                except httpx.HTTPError as exc:
                    self.failures.append(("transport", repr(exc)))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def wait_for(self, value: float, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers and self.answers[-1] == value:
                return
            time.sleep(0.05)
        raise AssertionError(f"never answered {value}; last answers {self.answers[-5:]}")


@pytest.fixture()
def repo(tmp_path):
    copy_version(HALF_PLUS_TWO, tmp_path / "half", "1")
    return tmp_path


@pytest.fixture()
def running(repo):
    server = start_server(Settings(model_repo=repo, poll_interval_s=0.2))
    yield server
    server.stop()


def test_new_version_switches_in_under_traffic_without_a_failure(repo, running):
    with Traffic(running.url) as traffic:
        traffic.wait_for(3.0)
        copy_version(HALF_PLUS_THREE, repo / "half", "2")
        traffic.wait_for(4.0)
        served_before = len(traffic.answers)
        while len(traffic.answers) < served_before + 20:
            time.sleep(0.05)
    assert traffic.failures == []
    first_new = traffic.answers.index(4.0)
    assert set(traffic.answers[:first_new]) == {3.0} and set(traffic.answers[first_new:]) == {4.0}
    status = httpx.get(running.url + "/v1/models/half").json()["model_version_status"]
    states = {s["version"]: s["state"] for s in status}
    assert states["2"] == "AVAILABLE"
    assert states["1"] in ("UNLOADING", "END")


def test_half_copied_version_is_never_served(repo, running):
    broken = repo / "half" / "2"
    broken.mkdir()
    shutil.copy(HALF_PLUS_THREE / "saved_model.pb", broken / "saved_model.pb")
    (broken / "variables").mkdir()
    (broken / "variables" / "variables.data-00000-of-00001").write_bytes(b"partial")
    with Traffic(running.url) as traffic:
        time.sleep(1.5)  # several polls
    assert traffic.failures == [] and set(traffic.answers) == {3.0}
    status = {s["version"]: s for s in httpx.get(running.url + "/v1/models/half").json()["model_version_status"]}
    assert status["1"]["state"] == "AVAILABLE"
    assert status["2"]["state"] == "END" and "incomplete" in status["2"]["status"]["error_message"]

    # The copy finishes late: the version's files change, so it is tried again and served.
    shutil.rmtree(broken)
    copy_version(HALF_PLUS_THREE, repo / "half", "2")
    deadline = time.monotonic() + 60
    while httpx.post(running.url + "/v1/models/half:predict", json={"instances": [[2.0]]}).json() != \
            {"predictions": [[4.0]]}:
        assert time.monotonic() < deadline, "the completed version was never loaded"
        time.sleep(0.2)


def test_version_that_fails_to_load_keeps_the_previous_one(repo, running):
    broken = repo / "half" / ".incoming"
    shutil.copytree(HALF_PLUS_THREE, broken)
    (broken / "saved_model.pb").write_bytes(b"not a protobuf at all")
    broken.rename(repo / "half" / "2")
    deadline = time.monotonic() + 30
    while True:
        status = {s["version"]: s for s in httpx.get(running.url + "/v1/models/half").json()["model_version_status"]}
        if "2" in status and status["2"]["state"] == "END":
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "load failed" in status["2"]["status"]["error_message"]
    assert httpx.post(running.url + "/v1/models/half:predict", json={"instances": [[2.0]]}).json() == \
        {"predictions": [[3.0]]}
    metrics = httpx.get(running.url + "/metrics").text
    assert 'tlserve_model_loads_total{model="half",result="failed",version="2"} 1.0' in metrics


def test_removed_model_leaves_every_listing(repo, running):
    copy_version(HALF_PLUS_THREE, repo / "three", "1")
    deadline = time.monotonic() + 30
    while httpx.get(running.url + "/v1/models/three").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    shutil.rmtree(repo / "three")
    while {m["name"] for m in httpx.post(running.url + "/v2/repository/index").json()} != {"half"}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert httpx.post(running.url + "/v1/models/three:predict", json={"instances": [[2.0]]}).status_code == 404


def test_a_model_without_versions_is_listed_unavailable_with_its_reason(repo, running):
    # A model folder with no version in it yet (or one being removed) is still a model of the repository: the
    # index lists it, as Triton lists a model it cannot serve, rather than leaving it out while requests to it
    # get a 503 (CI once saw exactly that gap).
    (repo / "empty").mkdir()
    deadline = time.monotonic() + 30
    while not any(m["name"] == "empty" for m in httpx.post(running.url + "/v2/repository/index").json()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    entry = next(m for m in httpx.post(running.url + "/v2/repository/index").json() if m["name"] == "empty")
    assert entry["version"] == "" and entry["state"] == "UNAVAILABLE" and "no version" in entry["reason"], entry
    assert httpx.post(running.url + "/v1/models/empty:predict", json={"instances": [[2.0]]}).status_code == 503
    ready = httpx.post(running.url + "/v2/repository/index", json={"ready": True}).json()
    assert {m["name"] for m in ready} == {"half"}


def test_removed_model_directory_unloads_cleanly(repo, running):
    shutil.rmtree(repo / "half" / "1")
    deadline = time.monotonic() + 30
    while httpx.post(running.url + "/v1/models/half:predict", json={"instances": [[2.0]]}).status_code != 503:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert httpx.get(running.url + "/readyz").status_code == 503


def test_model_service_reload_config_switches_the_served_models(repo, running):
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    copy_version(HALF_PLUS_THREE, repo / "three", "5")
    request = model_management_pb2.ReloadConfigRequest()
    config = request.config.model_config_list.config.add()
    config.name, config.base_path, config.model_platform = "three", str(repo / "three"), "tensorflow"
    with grpc_channel(running) as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=60)
    assert response.status.error_code == 0
    assert httpx.post(running.url + "/v1/models/three:predict", json={"instances": [[2.0]]}).json() == \
        {"predictions": [[4.0]]}
    # 'half' is no longer configured: it is unloaded and unknown.
    assert httpx.post(running.url + "/v1/models/half:predict", json={"instances": [[2.0]]}).status_code == 404
