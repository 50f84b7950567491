"""Writes tlserve-dashboard.json, the Grafana dashboard for tlserve's Prometheus metrics.

The panels are listed here once, as (title, unit, queries); the JSON is generated so that every panel is
laid out and wired the same way. Run `python deploy/grafana/make_dashboard.py` after changing a panel
(tests/deploy/test_dashboard.py checks that the committed JSON is up to date and that every metric it
queries is one the server exports). Import the JSON in Grafana (Dashboards > New > Import) and pick the
Prometheus data source that scrapes the pods.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("tlserve-dashboard.json")
SEL = 'model=~"$model"'  # every query follows the dashboard's model selector
RATE = "$__rate_interval"


def quantile(q: float, metric: str, by: str = "") -> str:
    group = f"le{', ' + by if by else ''}"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{SEL}}}[{RATE}])))"


# (title, unit, [(legend, expr)], kind)
PANELS = [
    ("Requests per second by protocol", "reqps",
     [("{{protocol}}", f"sum by (protocol) (rate(tlserve_requests_total{{{SEL}}}[{RATE}]))")], "timeseries"),
    ("Errors per second by code", "reqps",
     [("{{code}}", f'sum by (code) (rate(tlserve_requests_total{{{SEL}, code!~"200|OK"}}[{RATE}]))')],
     "timeseries"),
    ("Request latency p50 / p99", "s",
     [("p50", quantile(0.5, "tlserve_request_latency_seconds")),
      ("p99", quantile(0.99, "tlserve_request_latency_seconds"))], "timeseries"),
    ("Request latency p99 by protocol", "s",
     [("{{protocol}}", quantile(0.99, "tlserve_request_latency_seconds", "protocol"))], "timeseries"),
    ("Batch size (items per executed batch)", "none",
     [("mean", f"sum(rate(tlserve_batch_size_sum{{{SEL}}}[{RATE}])) / sum(rate(tlserve_batch_size_count{{{SEL}}}[{RATE}]))"),
      ("p50", quantile(0.5, "tlserve_batch_size")),
      ("p99", quantile(0.99, "tlserve_batch_size"))], "timeseries"),
    ("Queue depth (items waiting)", "none",
     [("{{model}} v{{version}} {{pod}}", f"sum by (model, version, pod) (tlserve_queue_depth{{{SEL}}})")],
     "timeseries"),
    ("Queue wait p50 / p99", "s",
     [("p50", quantile(0.5, "tlserve_queue_wait_seconds")),
      ("p99", quantile(0.99, "tlserve_queue_wait_seconds"))], "timeseries"),
    ("Model execution per batch p50 / p99", "s",
     [("p50", quantile(0.5, "tlserve_batch_execution_seconds")),
      ("p99", quantile(0.99, "tlserve_batch_execution_seconds"))], "timeseries"),
    ("Model state (1 = in this state)", "none",
     [("{{model}} v{{version}} {{state}}", f"max by (model, version, state) (tlserve_model_state{{{SEL}}}) == 1")],
     "table"),
    ("Model loads (last hour)", "none",
     [("{{model}} v{{version}} {{result}}",
       f"sum by (model, version, result) (increase(tlserve_model_loads_total{{{SEL}}}[1h]))")], "table"),
    # What the models predict (issue 17; docs/serving.md, "Drift").
    ("Prediction drift (PSI against the test split; > 0.2: shifted)", "none",
     [("{{model}} v{{version}} {{kind}}",
       f"max by (model, version, kind) (tlserve_prediction_drift{{{SEL}}})")], "timeseries"),
    ("Predicted classes per second", "reqps",
     [("{{model}} {{class}}", f"sum by (model, class) (rate(tlserve_predicted_class_total{{{SEL}}}[{RATE}]))")],
     "timeseries"),
    ("Top-1 score p10 / p50", "percentunit",
     [("p10", quantile(0.1, "tlserve_prediction_score")),
      ("p50", quantile(0.5, "tlserve_prediction_score"))], "timeseries"),
    ("Unconfident images (share of predictions)", "percentunit",
     [("{{model}}", f"sum by (model) (rate(tlserve_unconfident_total{{{SEL}}}[{RATE}])) / "
                    f"sum by (model) (rate(tlserve_prediction_score_count{{{SEL}}}[{RATE}]))")], "timeseries"),
]


def panel(i: int, title: str, unit: str, queries: list[tuple[str, str]], kind: str) -> dict:
    ds = {"type": "prometheus", "uid": "${datasource}"}
    targets = [{"datasource": ds, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + n),
                **({"format": "table", "instant": True} if kind == "table" else {})}
               for n, (legend, expr) in enumerate(queries)]
    return {
        "id": i + 1, "type": kind, "title": title, "datasource": ds, "targets": targets,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
    }


def dashboard() -> dict:
    return {
        "title": "tlserve",
        "uid": "tlserve",
        "description": "tlserve model server: traffic, latency, batching, queues, errors, model state, predictions "
                       "and drift",
        "tags": ["tlserve", "model-serving"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
            {"name": "model", "label": "Model", "type": "query", "datasource": {"type": "prometheus",
                                                                              "uid": "${datasource}"},
             "query": {"query": "label_values(tlserve_model_state, model)", "refId": "models"},
             "definition": "label_values(tlserve_model_state, model)",
             "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
             "current": {"text": "All", "value": "$__all"}},
        ]},
        "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        sys.exit(0 if OUT.read_text() == render() else "tlserve-dashboard.json is out of date: run make_dashboard.py")
    OUT.write_text(render())
    print(f"wrote {OUT}")
