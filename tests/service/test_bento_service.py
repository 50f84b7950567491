"""The BentoML service's own configuration (service/bento_service.py), read in a fresh interpreter: importing
the service registers it with BentoML, which the rest of the test session should not inherit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_access_log_line_per_request_is_tlserves():
    probe = "from service.bento_service import bento; print(bento.config['logging']['access']['enabled'])"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"  # tlserve.access writes the line, with the request id


TRACING_PROBE = "import json; from service.bento_service import bento; print(json.dumps(bento.config.get('tracing')))"


def _tracing(env: dict[str, str]) -> object:
    import json
    import os

    out = subprocess.run([sys.executable, "-c", TRACING_PROBE], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_with_no_trace_exporter_bentoml_makes_no_spans():
    """BentoML's OpenTelemetry middleware opens spans for every request even when no exporter is configured and
    they go nowhere: 130-149 us of CPU a request, measured alone. With none configured, every URL is excluded."""
    assert _tracing({"BENTOML_CONFIG_OPTIONS": ""}) == {"excluded_urls": [".*"]}


def test_a_configured_trace_exporter_keeps_bentomls_tracing(tmp_path):
    config = tmp_path / "bentoml.yaml"
    config.write_text("tracing:\n  exporter_type: otlp\n  sample_rate: 1.0\n  otlp:\n    protocol: http\n"
                      "    endpoint: http://127.0.0.1:4318/v1/traces\n")
    assert _tracing({"BENTOML_CONFIG": str(config)}) is None
    assert _tracing({"BENTOML_CONFIG_OPTIONS": "tracing.exporter_type=zipkin"}) is None
