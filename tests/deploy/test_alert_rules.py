"""The example Prometheus alert rule (deploy/prometheus): valid for promtool, its unit tests pass, and it watches
a metric and labels the server exports."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from service.observability.drift import Reference
from service.observability.metrics import Metrics
from service.observability.predictions import PredictionMonitor
from tests.deploy.conftest import REPO

RULES = REPO / "deploy" / "prometheus"


def test_promtool_checks_the_rules(tool):
    result = subprocess.run([tool("promtool"), "check", "rules", "tlserve-alerts.yml"], cwd=RULES,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass(tool):
    result = subprocess.run([tool("promtool"), "test", "rules", "tlserve-alerts.test.yml"], cwd=RULES,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_watches_what_the_server_exports():
    registry = CollectorRegistry()
    reference = Reference(10, (0.5, 0.5), None, (0.1,) * 10)
    PredictionMonitor(Metrics(registry), window=10).observe("m", 1, ["a", "b"], reference, np.eye(2)[[0] * 10])
    exported = generate_latest(registry).decode()
    (rule,) = yaml.safe_load((RULES / "tlserve-alerts.yml").read_text())["groups"][0]["rules"]
    assert rule["for"] == "10m" and rule["expr"].endswith("> 0.2")
    assert re.search(r'^tlserve_prediction_drift\{(?=.*kind="class")(?=.*model="m")(?=.*version="1")', exported,
                     re.MULTILINE), exported
