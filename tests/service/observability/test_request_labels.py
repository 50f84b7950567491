"""Request metrics' labels come from the requests, so a name the repository does not know must not become a
series: 60 requests naming random models added 1,100 series to /metrics before this (each name, each code, each
histogram bucket), and nothing bounded how many a client could make."""

from __future__ import annotations

import time

import httpx
from prometheus_client import CollectorRegistry

from service.observability.metrics import Metrics


def _series(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    return [s.labels for m in registry.collect() for s in m.samples if s.name == name]


def test_unknown_models_and_versions_share_one_series():
    registry = CollectorRegistry()
    metrics = Metrics(registry, known=lambda model, version: model == "shapes" and version in ("", "1"))
    for i in range(50):
        metrics.observe_request(f"m{i}", "", "tfserving-rest", "predict", "404", 0.001)
        metrics.observe_request("shapes", str(1000 + i), "tfserving-rest", "predict", "404", 0.001)
    metrics.observe_request("shapes", "1", "tfserving-rest", "predict", "200", 0.001)
    series = _series(registry, "tlserve_requests_total")
    assert {(s["model"], s["version"], s["code"]) for s in series} == {("", "", "404"), ("shapes", "", "404"),
                                                                       ("shapes", "1", "200")}
    tfs = {tuple(sorted(s.items())) for s in _series(registry, ":tensorflow:serving:request_count")}
    assert len(tfs) == 3


def test_a_server_keeps_the_series_of_random_names_bounded(server):
    """Against a real server: requests naming models and versions nobody serves, on three APIs."""
    requests = server.runtime.metrics.requests
    for i in range(20):
        httpx.post(f"{server.url}/v1/models/nobody{i}:predict", json={"instances": [1]})
        httpx.post(f"{server.url}/v1/models/shapes/versions/{900 + i}:predict", json={"instances": [1]})
        httpx.post(f"{server.url}/v2/models/nobody{i}/infer", json={})
    time.sleep(0.2)
    labels = {(s.labels["model"], s.labels["version"]) for m in requests.collect() for s in m.samples}
    assert not [m for m, _ in labels if m.startswith("nobody")]
    assert not [v for m, v in labels if m == "shapes" and v.startswith("9")]
