"""Evaluates every query of the Grafana dashboard in a real Prometheus scraping a real tlserve: `make dashboard-check`.

Starts `tlserve serve` on models/ (127.0.0.1, free ports), sends a few predictions over HTTP and gRPC,
starts Debian's Prometheus scraping /metrics every second, then runs each panel's query through
Prometheus' HTTP API (Grafana's $model as .*, $__rate_interval as 1m) and prints how many series each
returned. A query that Prometheus rejects fails the check, and so does an empty answer, except for the
errors panel (no error was caused).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "deploy" / "podman"))
from podman_util import free_port, sample_digit, wait_status  # noqa: E402

MAY_BE_EMPTY = ("Errors per second by code",)


def queries() -> list[tuple[str, str]]:
    dashboard = json.loads((HERE / "tlserve-dashboard.json").read_text())
    return [(p["title"], t["expr"].replace('"$model"', '".*"').replace("$__rate_interval", "1m"))
            for p in dashboard["panels"] for t in p["targets"]]


def main() -> int:
    from service.client import GrpcClient, HttpClient

    http_port, grpc_port, prom_port = free_port(), free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="tlserve-dashboard-"))
    server = subprocess.Popen([str(REPO / ".venv" / "bin" / "tlserve"), "serve", "--model-repo", str(REPO / "models"),
                              "--host", "127.0.0.1", "--http-port", str(http_port), "--grpc-port", str(grpc_port),
                              # a window the 60 images below fill, so that the drift panel has a series
                              "--drift-window", "20"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: tlserve, static_configs: [{{targets: ['127.0.0.1:{http_port}']}}]}}]\n")
    prometheus = None
    failed = []
    try:
        wait_status(f"http://127.0.0.1:{http_port}/readyz", timeout_s=300)
        prometheus = subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={work / 'data'}",
                                       f"--web.listen-address=127.0.0.1:{prom_port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_status(f"http://127.0.0.1:{prom_port}/-/ready", timeout_s=60)
        image, _ = sample_digit()
        http, grpc_client = HttpClient(f"http://127.0.0.1:{http_port}"), GrpcClient(f"127.0.0.1:{grpc_port}")
        for _ in range(20):  # traffic spread over a few scrapes, so that rate() has two points
            http.classify([image] * 2, model="digits")
            grpc_client.classify([image], model="digits")
            time.sleep(0.5)
        time.sleep(3)
        for title, expr in queries():
            answer = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": expr}, timeout=10).json()
            if answer.get("status") != "success":
                failed.append(title)
                print(f"REJECTED {title}: {answer.get('error')}")
                continue
            n = len(answer["data"]["result"])
            if n == 0 and title not in MAY_BE_EMPTY:
                failed.append(title)
            print(f"{n:3d} series  {title}: {expr}")
    finally:
        for process in (prometheus, server):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM) if process is server else process.terminate()
                process.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"dashboard check FAILED: {failed}", file=sys.stderr)
        return 1
    print(f"dashboard check passed: {len(queries())} queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
