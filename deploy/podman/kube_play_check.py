"""Run the rendered CPU Deployment with `podman kube play` and curl its probe paths: `make kube-play-check`.

Renders deploy/k8s/overlays/podman-local (the CPU overlay with the locally built image and a hostPath
model volume), points the hostPath at the model repository and publishes the container ports on free
127.0.0.1 ports, keeps the kinds podman runs (Deployment, ConfigMap), plays it, then asks every probe of
the container for its answer: podman does not run Kubernetes probes itself. Ends with `podman kube down`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from podman_util import REPO, CheckFailed, free_port, grpc_health, podman, wait_status

OVERLAY = REPO / "deploy" / "k8s" / "overlays" / "podman-local"
PLAYED_KINDS = ("ConfigMap", "Deployment")


def render(overlay: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], check=True, text=True, capture_output=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def localise(docs: list[dict], model_repo: Path) -> tuple[list[dict], dict]:
    """The documents podman should play, with the model hostPath and host ports set; and the container."""
    played = [d for d in docs if d["kind"] in PLAYED_KINDS]
    deployment = next(d for d in played if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    host_paths = [v for v in pod["volumes"] if "hostPath" in v]
    if len(host_paths) != 1:
        raise CheckFailed(f"expected one hostPath volume in {OVERLAY}, found {len(host_paths)}")
    host_paths[0]["hostPath"]["path"] = str(model_repo.resolve())
    container = pod["containers"][0]
    for port in container["ports"]:
        port["hostIP"], port["hostPort"] = "127.0.0.1", free_port()
    return played, container


def probe(container: dict, kind: str) -> str:
    """Ask ``kind`` (e.g. readinessProbe) what Kubernetes would ask; raise CheckFailed unless it passes."""
    spec = container[kind]
    ports = {p.get("name"): p["hostPort"] for p in container["ports"]} | {p["containerPort"]: p["hostPort"]
                                                                          for p in container["ports"]}
    if "httpGet" in spec:
        get = spec["httpGet"]
        url = f"http://127.0.0.1:{ports[get['port']]}{get.get('path', '/')}"
        wait_status(url, timeout_s=spec.get("periodSeconds", 10) * spec.get("failureThreshold", 3))
        return f"GET {get.get('path', '/')} 200"
    if "grpc" in spec:
        status = grpc_health(f"127.0.0.1:{ports[spec['grpc']['port']]}", spec["grpc"].get("service", ""))
        if status != "SERVING":
            raise CheckFailed(f"{kind}: gRPC health {status}")
        return "gRPC health SERVING"
    raise CheckFailed(f"{kind}: handler {sorted(spec)} is not checked here")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repo", type=Path, default=REPO / "models")
    args = parser.parse_args()
    start = time.monotonic()
    played, container = localise(render(OVERLAY), args.model_repo)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="tlserve-kube-") as f:
        yaml.safe_dump_all(played, f)
        f.flush()
        try:
            podman("kube", "play", f.name)
            print(f"podman kube play: {', '.join(d['kind'] + '/' + d['metadata']['name'] for d in played)}")
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind in container:
                    print(f"{kind}: {probe(container, kind)}")
            grpc_port = next(p["hostPort"] for p in container["ports"] if p["containerPort"] == 8500)
            print(f"gRPC health on the grpc port: {grpc_health(f'127.0.0.1:{grpc_port}')}")
        except CheckFailed as exc:
            print(f"kube play check FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            podman("kube", "down", f.name, check=False)
    print(f"kube play check passed in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
