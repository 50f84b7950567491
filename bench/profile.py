"""Where a tlserve worker's CPU goes under load: py-spy samples the serving process while h2load loads one API.

    .venv/bin/python -m bench.profile --api classify-json --concurrency 32 --seconds 20

It starts ``tlserve serve`` on a benchmark model (bench/models.py), loads one endpoint closed-loop (bench/loadgen.py)
and records the worker (BentoML's one worker: the process that owns the models) with ``py-spy record`` at 100 Hz,
idle threads left out. It writes a flame graph (SVG) and the collapsed stacks under ``--out`` and prints the share
of samples by the layer their innermost frame belongs to (TensorFlow, the event loop, BentoML, Starlette, grpc,
tlserve, ...): issue 14's "profile before optimising". The shares hold on a busy machine; absolute rates do not.

``--threads`` records no stacks: it reads the worker's threads' CPU from /proc over a window of the same load and
prints CPU milliseconds per answered image by thread: the event loop (the main thread: HTTP, gRPC, the data
plane), the Python worker threads (batches, header checks), TensorFlow's own pool, gRPC's. py-spy sees only
Python threads and samples them while they wait for the GIL; this is where the CPU went.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import models
from bench.loadgen import closed_loop
from bench.servers import ROOT
from bench.systems import Limits, start

# The innermost frame's file decides a sample's layer: the first pattern it contains wins.
LAYERS = (
    ("tensorflow", ("/tensorflow/", "/tf_keras/", "/keras/")),
    ("numpy", ("/numpy/",)),
    ("grpc", ("/grpc/", "grpc/_cython", "cygrpc")),
    ("bentoml", ("/bentoml/", "/_bentoml_impl/", "/_bentoml_sdk/")),
    ("opentelemetry", ("/opentelemetry/",)),
    ("prometheus_client", ("/prometheus_client/",)),
    ("uvicorn/h11/httptools", ("/uvicorn/", "/h11/", "/httptools/")),
    ("starlette/fastapi", ("/starlette/", "/fastapi/", "/pydantic")),
    ("asyncio/threads", ("/asyncio/", "/concurrent/", "threading.py", "selectors.py", "uvloop")),
    ("json/base64/protobuf", ("/json/", "base64.py", "/google/protobuf/")),
    ("tlserve", ("/service/", "/tlserve/")),
)


_FILE = re.compile(r"\((.*):\d+\)$")  # py-spy's frame: "function (path/to/file.py:line)"


def layer(frame: str) -> str:
    match = _FILE.search(frame)
    path = "/" + match.group(1) if match else frame  # py-spy shortens paths to the package: "starlette/routing.py"
    for name, patterns in LAYERS:
        if any(p in path for p in patterns):
            return name
    return "other"


def summarise(collapsed: Path) -> dict[str, float]:
    """Share of samples per layer of the innermost frame, from py-spy's collapsed (``--format raw``) output."""
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[layer(stack.split(";")[-1])] += int(count)
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.most_common()}


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of ``pid``, by the name of its kind (the main thread is "event loop")."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        kind = "event loop (main thread)" if tid == str(pid) else \
            "python threads" if name == "python" else re.sub(r"[_-]?\d+$", "", name)
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def by_thread(worker_pid: int, endpoint, concurrency: int, seconds: float) -> tuple[float, dict[str, float]]:
    """(images/s answered, CPU ms per image by thread kind) over ``seconds`` of closed-loop load."""
    result: dict = {}
    load = threading.Thread(target=lambda: result.setdefault("run", closed_loop(endpoint, concurrency, seconds + 4,
                                                                                  1.0)))
    load.start()
    time.sleep(3)
    before, started = thread_cpu(worker_pid), time.time()
    time.sleep(seconds)
    after, ended = thread_cpu(worker_pid), time.time()
    load.join()
    answered = sum(1 for r in result["run"].requests if r.ok and started <= r.start_s + r.latency_s <= ended)
    cpu = {kind: after[kind] - before.get(kind, 0.0) for kind in after}
    return answered / (ended - started), {kind: 1000 * s / max(answered, 1) for kind, s in cpu.items() if s > 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="overhead-bound", choices=list(models.MODELS))
    parser.add_argument("--api", default="classify-json", help="classify-json, v2-binary, classifier, tfs-predict")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "profile")
    parser.add_argument("--threads", action="store_true", help="CPU per image by thread instead of py-spy stacks")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args.out.mkdir(parents=True, exist_ok=True)
    started = start("tlserve", args.model, models.version_dir(args.model), models.payload(args.model), Limits(),
                    args.out)
    try:
        (endpoint,) = [e for e in started.endpoints if e.api == args.api]
        worker = max(started.server.tree(), key=lambda p: p.memory_info().rss)  # the one that loaded TensorFlow
        if args.threads:
            rate, per_image = by_thread(worker.pid, endpoint, args.concurrency, args.seconds)
            print(f"{args.model} {args.api} c={args.concurrency}: {rate:.0f} img/s; worker CPU ms per image by thread")
            for kind, ms in sorted(per_image.items(), key=lambda kv: -kv[1]):
                print(f"  {kind:28s} {ms:6.3f}")
            print(f"  {'all':28s} {sum(per_image.values()):6.3f}")
            return
        load = threading.Thread(target=closed_loop, args=(endpoint, args.concurrency, args.seconds + 4, 1.0))
        load.start()
        stem = args.out / f"{args.model}-{args.api}-c{args.concurrency}"
        for fmt, suffix in (("raw", ".collapsed"), ("flamegraph", ".svg")):
            # Two recordings of half the time each: one run gives the collapsed stacks, the other the SVG.
            subprocess.run([py_spy, "record", "--pid", str(worker.pid), "--rate", "100",
                            "--duration", str(max(1, int(args.seconds / 2))), "--format", fmt,
                            "--output", str(stem.with_suffix(suffix))], check=True, capture_output=True)
        load.join()
    finally:
        started.server.stop()
    print(f"{args.model} {args.api} c={args.concurrency}: samples by layer of the innermost frame "
          f"({stem.with_suffix('.svg')})")
    for name, share in summarise(stem.with_suffix(".collapsed")).items():
        print(f"  {name:24s} {share:6.1%}")


if __name__ == "__main__":
    main()
