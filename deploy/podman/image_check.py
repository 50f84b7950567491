"""Run the serving image with podman as a user would: `make image-check` (which builds it first).

Runs localhost/tlserve:latest (`make image`) with a read-only root file system, /tmp as tmpfs and the
model repository mounted read-only at /models, then checks /livez, /readyz, the web console's files,
the image's HEALTHCHECK, gRPC health, one prediction over HTTP and one over gRPC, stops it with
`podman stop` (the image's STOPSIGNAL, SIGTERM) and requires exit code 0. Prints how long each step took. Ports are published on
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from podman_util import IMAGE, REPO, CheckFailed, free_port, grpc_health, podman, sample_digit, wait_status


def run_checks(model_repo: Path, model: str) -> None:
    if not any(p.name.isdigit() for p in (model_repo / model).glob("*")):
        raise CheckFailed(f"{model_repo / model} has no version: train it first (make image-check does)")
    http_port, grpc_port = free_port(), free_port()
    name = f"tlserve-image-check-{http_port}"
    podman("run", "--detach", "--name", name, "--read-only", "--tmpfs", "/tmp:rw,size=512m",
           "--volume", f"{model_repo.resolve()}:/models:ro",
           "--publish", f"127.0.0.1:{http_port}:3000", "--publish", f"127.0.0.1:{grpc_port}:8500", IMAGE)
    try:
        def running() -> bool:
            return podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"

        base = f"http://127.0.0.1:{http_port}"
        t = wait_status(f"{base}/livez", alive=running)
        print(f"/livez 200 after {t:.1f} s")
        t = wait_status(f"{base}/readyz", alive=running)
        print(f"/readyz 200 after {t:.1f} s")
        for path in ("/ui/", "/ui/app.js", "/metrics"):  # package data (the console's files) made it in
            t = wait_status(f"{base}{path}", timeout_s=10, alive=running)
        print("/ui/, /ui/app.js, /metrics: 200")
        podman("healthcheck", "run", name)
        print("image HEALTHCHECK: healthy")
        status = grpc_health(f"127.0.0.1:{grpc_port}")
        if status != "SERVING":
            raise CheckFailed(f"gRPC health is {status}")
        print("gRPC health: SERVING")

        from service.client import GrpcClient, HttpClient

        image, label = sample_digit()
        for transport, client in (("HTTP", HttpClient(base)), ("gRPC", GrpcClient(f"127.0.0.1:{grpc_port}"))):
            top = client.classify([image], model=model, top_k=1)["predictions"][0][0]
            if top["label"] != label:
                raise CheckFailed(f"{transport} prediction {top} for a {label!r}")
            print(f"{transport} prediction: {top['label']} ({top['score']:.3f}) for a {label!r}")

        start = time.monotonic()
        podman("stop", "--time", "40", name)  # the image's STOPSIGNAL; SIGKILL only after 40 s
        stopped = time.monotonic() - start
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        if code != "0":
            raise CheckFailed(f"exit code {code} after SIGTERM ({stopped:.1f} s)")
        print(f"SIGTERM: exit code 0 after {stopped:.1f} s")
    except CheckFailed:
        print(podman("logs", "--tail", "40", name, check=False).stderr, file=sys.stderr)
        raise
    finally:
        podman("rm", "--force", name, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repo", type=Path, default=REPO / "models")
    parser.add_argument("--model", default="digits")
    args = parser.parse_args()
    start = time.monotonic()
    try:
        size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
        print(f"image size {size / 1e9:.2f} GB")
        run_checks(args.model_repo, args.model)
    except CheckFailed as exc:
        print(f"image check FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"image check passed in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
