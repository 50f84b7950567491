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
