"""The Grafana dashboard: up to date with its generator, and querying only metrics the server exports."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from service.batching.batcher import BatchStats
from service.observability.drift import Reference
from service.observability.metrics import Metrics
from service.observability.predictions import PredictionMonitor
from tests.deploy.conftest import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "tlserve-dashboard.json"


def exported_series() -> dict[str, set[str]]:
    """Sample name -> label names, from the server's own Metrics after one of each event."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.observe_request("digits", "1", "classify", "classify", "200", 0.01)
    metrics.observe_batch("digits", 1, BatchStats(size=2, queue_waits_s=[0.001, 0.002], run_s=0.01), queue_depth=3)
    metrics.model_event("loaded", "digits", 1, "AVAILABLE", 1.5)
    reference = Reference(10, (0.5, 0.5), None, (0.1,) * 10)
    PredictionMonitor(metrics, window=10).observe("digits", 1, ["a", "b"], reference, np.eye(2)[[0] * 10],
                                                  np.zeros(10), 0.5)
    series: dict[str, set[str]] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?", line)
        labels = set(re.findall(r"([a-zA-Z_]+)=", match.group(2) or ""))
        series.setdefault(match.group(1), set()).update(labels)
    return series


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_json_is_generated_from_its_source():
    result = subprocess.run([sys.executable, str(REPO / "deploy" / "grafana" / "make_dashboard.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_queried_metric_and_label_is_exported():
    series = exported_series()
    # labels Prometheus adds when it scrapes a pod, or PromQL's own
    added = {"pod", "namespace", "instance", "job", "le"}
    for expr in expressions():
        for name in re.findall(r"\btlserve_[a-z_]+", expr):
            assert name in series, f"{name} (in {expr!r}) is not exported; exported: {sorted(series)}"
            for clause in re.findall(r"by \(([^)]*)\)", expr):
                for label in (x.strip() for x in clause.split(",")):
                    assert label in series[name] | added, f"{label} is not a label of {name}"


def test_dashboard_covers_what_operators_watch():
    joined = "\n".join(expressions())
    assert "sum by (protocol) (rate(tlserve_requests_total" in joined  # request rate
    assert "histogram_quantile(0.5, sum by (le) (rate(tlserve_request_latency_seconds_bucket" in joined
    assert "histogram_quantile(0.99, sum by (le) (rate(tlserve_request_latency_seconds_bucket" in joined
    assert "tlserve_batch_size_bucket" in joined and "tlserve_queue_depth" in joined
    assert "sum by (code) (rate(tlserve_requests_total" in joined  # errors by code
    assert "tlserve_model_state" in joined
    for name in ("tlserve_prediction_drift", "tlserve_predicted_class_total", "tlserve_prediction_score_bucket",
                 "tlserve_unconfident_total"):
        assert name in joined, name
