"""The serving benchmark: every system on the same SavedModels, side by side, in one run.

    .venv/bin/python -m bench.run            # the full run (about 30 minutes on 2 cores); `make bench`
    .venv/bin/python -m bench.run --quick    # a 4-minute check that every system starts and answers

Writes bench/results/latest.json, latest.md and the PNG plots beside them (``--out`` to change).
Systems: inprocess (the limit), tlserve-http, tlserve-grpc, naive, bentoml, ray-serve, pytriton.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bench import loadgen, models, report, stats, systems
from bench.servers import ROOT, Sampler

ALL_SYSTEMS = ("inprocess",) + systems.SERVER_SYSTEMS
OPEN_LOOP_RATES = {"compute-bound": 40.0, "overhead-bound": 100.0}  # images/s, below every system's capacity
HOT_SWAP_CONCURRENCY = 32
HOT_SWAP_MODEL = "compute-bound"  # the one where loading a version takes long enough to matter
SETTLE_S = 5.0  # idle seconds between the in-process phase and the first cold start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="c=1 and 32, 2 s points, one repeat: a validation run")
    parser.add_argument("--models", nargs="+", default=list(models.MODELS), choices=list(models.MODELS))
    parser.add_argument("--systems", nargs="+", default=list(ALL_SYSTEMS), choices=list(ALL_SYSTEMS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each point")
    parser.add_argument("--repeats", type=int, default=3, help="runs per point; the median one is kept")
    parser.add_argument("--open-seconds", type=float, default=8.0)
    parser.add_argument("--cold-start-rounds", type=int, default=3,
                        help="starts of every server per model, in a rotated order; the median is reported")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency, args.seconds, args.warmup, args.repeats, args.open_seconds = [1, 32], 2.0, 0.5, 1, 3.0
        args.cold_start_rounds = 1
    if shutil.which("h2load") is None:
        parser.error("h2load is missing: `make bench` installs it (Debian nghttp2-client)")

    limits = systems.Limits(max_batch_size=args.max_batch_size, batch_wait_ms=args.batch_wait_ms)
    work = ROOT / "build" / "bench"
    logs = work / "logs"
    result = {"machine": _machine(), "command": "python -m bench.run " + " ".join(argv or sys.argv[1:]),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "settings": {"quick": args.quick, "max_batch_size": limits.max_batch_size, "batch_wait_ms": limits.batch_wait_ms,
                           "max_queue": limits.max_queue, "seconds": args.seconds, "warmup_s": args.warmup,
                           "repeats": args.repeats, "payload": "one JPEG per request at the model's input size",
                           "closed_loop_generator": "h2load (HTTP/1.1; h2c for gRPC)",
                           "open_loop_generator": "Python asyncio (aiohttp / grpc.aio) in the harness"},
              "rows": [], "cold_start": []}
    t0 = time.monotonic()
    for model in args.models:
        version_dir, image = models.version_dir(model), models.payload(model)
        if "inprocess" in args.systems:
            result["rows"] += inprocess_rows(model, version_dir, image, work, args, limits)
        servers = [s for s in args.systems if s != "inprocess"]
        result["cold_start"] += cold_starts(servers, model, version_dir, image, logs, limits, args.cold_start_rounds)
        for system in servers:
            try:
                result["rows"] += served_rows(system, model, version_dir, image, logs, args, limits)
            except Exception as exc:  # noqa: BLE001 - one system failing must not lose the others' figures
                print(f"!! {system} {model}: {exc}", flush=True)
                result.setdefault("failures", []).append({"system": system, "model": model, "error": str(exc)})
        _write(result, args.out)  # after each model, so a stopped run keeps what it measured
    result["ratios"] = report.ratios(result["rows"])
    result["seconds"] = round(time.monotonic() - t0)
    _write(result, args.out)
    print(f"done in {result['seconds']} s: {args.out / 'latest.json'}", flush=True)
    return 1 if result.get("failures") else 0


def inprocess_rows(model, version_dir, image, work, args, limits) -> list[dict]:
    """The limit as defined (TensorFlow's threading, one caller, batch 1 and the max batch), then the limit for
    tlserve's own threading (system ``inprocess-tuned``: two callers at the max batch, the cores shared among
    them, as tlserve's defaults run two batches at once)."""
    image_file = work / f"payload-{model}.jpg"
    image_file.write_bytes(image)
    cores = len(os.sched_getaffinity(0))
    plain = _inprocess(model, version_dir, image_file, args, sorted({1, limits.max_batch_size}), "inprocess",
                       "concurrency = batch size; latency = one batch")
    tuned = _inprocess(model, version_dir, image_file, args, [limits.max_batch_size], "inprocess-tuned",
                       f"2 callers, {max(1, cores // 2)} intra-op thread(s) each: tlserve's threading",
                       "--callers", "2", "--intra-op-threads", str(max(1, cores // 2)))
    return plain + tuned


def _inprocess(model, version_dir, image_file, args, batches, system, note, *extra) -> list[dict]:
    out = subprocess.run([systems.PROJECT_PYTHON, "-m", "bench.inprocess", str(version_dir), str(image_file),
                          "--batch", *map(str, batches), "--seconds", str(args.seconds), "--warmup", str(args.warmup),
                          "--repeats", str(args.repeats), *extra], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    rows = []
    for line in out.stdout.splitlines():
        measured = json.loads(line)
        repeats = []
        for rep in measured["repeats"]:
            ms = [s * 1000 for s in rep["latencies_s"]]
            repeats.append({"system": system, "model": model, "concurrency": measured["batch"],
                            "throughput": rep["throughput"], "p50_ms": stats.percentile(ms, 50),
                            "p90_ms": stats.percentile(ms, 90), "p99_ms": stats.percentile(ms, 99), "errors": 0,
                            "cpu_s": rep["cpu_s"], "rss_mb": measured["rss_mb"], "mode": "closed",
                            "cpu_ms_per_image": _cpu_ms_per_image(rep["cpu_s"], rep["throughput"], args.seconds),
                            "note": note})
        rows.append(_log(stats.check_row(stats.median_repeat(repeats))))
    return rows


def cold_starts(servers, model, version_dir, image, logs, limits, rounds) -> list[dict]:
    """Every server started (process start to its first answer) and stopped, ``rounds`` times, a round each in
    the order of ``cold_start_orders``, after a pause: ``seconds`` is the median of a system's ``samples``.

    Measured apart from the load phases, because a start is slower after a heavy phase: the first server of the
    run, started right after the in-process phase, took 13.2-13.3 s in two full runs, against 8.4-8.6 s alone."""
    samples: dict[str, list[float]] = {system: [] for system in servers}
    time.sleep(SETTLE_S)
    for order in cold_start_orders(servers, rounds):
        for system in order:
            try:
                started = systems.start(system, model, version_dir, image, limits, logs)
            except Exception as exc:  # noqa: BLE001 - reported where its load phase fails too
                print(f"!! {system} {model}: cold start: {exc}", flush=True)
                continue
            started.server.stop()
            samples[system].append(round(started.cold_start_s, 2))
            print(f"{system} {model}: cold start {started.cold_start_s:.1f} s", flush=True)
    return [{"system": system, "model": model, "seconds": round(statistics.median(values), 2), "samples": values}
            for system, values in samples.items() if values]


def cold_start_orders(servers: list[str], rounds: int) -> list[list[str]]:
    """The order of each round: rotated by one each time, so every system takes its turn first."""
    return [servers[r % len(servers):] + servers[:r % len(servers)] for r in range(rounds)]


def served_rows(system, model, version_dir, image, logs, args, limits) -> list[dict]:
    started = systems.start(system, model, version_dir, image, limits, logs)
    print(f"{system} {model}: ready in {started.cold_start_s:.1f} s", flush=True)
    rows = []
    try:
        for endpoint in started.endpoints:
            for concurrency in args.concurrency:
                repeats = [measure_closed(started.server, endpoint, model, concurrency, args)
                           for _ in range(args.repeats)]
                rows.append(_log(stats.check_row(stats.median_repeat(repeats))))
            rows.append(_log(measure_open(started.server, endpoint, model, OPEN_LOOP_RATES[model], args)))
    finally:
        started.server.stop()
    if system == "tlserve" and model == HOT_SWAP_MODEL:
        rows.append(_log(hot_swap(model, version_dir, image, logs, args, limits)))
    return rows


def measure_closed(server, endpoint, model, concurrency, args) -> dict:
    cpu_at = {}
    timer = threading.Timer(args.warmup, lambda: cpu_at.setdefault("start", server.cpu_s()))
    with Sampler(server) as memory:
        timer.start()
        run = loadgen.closed_loop(endpoint, concurrency, args.seconds, args.warmup)
        timer.join()
        cpu = server.cpu_s() - cpu_at["start"]
    # The CPU is read from the end of the warm-up to h2load's exit, which loads for a margin past the window.
    return _row(endpoint, model, concurrency, run, args.seconds, cpu, memory.peak_mb, mode="closed",
                cpu_window_s=args.seconds + loadgen.MARGIN_S)


def measure_open(server, endpoint, model, rate, args) -> dict:
    cpu0 = server.cpu_s()
    with Sampler(server) as memory:
        run = loadgen.open_loop(endpoint, rate, args.open_seconds)
    row = _row(endpoint, model, 1, run, args.open_seconds, server.cpu_s() - cpu0, memory.peak_mb, mode="open",
               cpu_window_s=args.open_seconds)
    row["rate"] = rate
    return stats.check_row(row)


def hot_swap(model, version_dir, image, logs, args, limits) -> dict:
    """Closed-loop load on /classify while version 2 appears in the repository: the p99 across its load and
    the switch. ``swap_s`` is how long after publishing version 2 was seen serving."""
    repo = ROOT / "build" / "bench" / "swap-repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(version_dir, repo / model / "1")
    started = systems.start("tlserve", model, version_dir, image, limits, logs, repo=repo, poll_interval_s=0.5)
    endpoint = started.endpoints[0]
    status_url = endpoint.url.rsplit("/", 1)[0] + f"/v1/models/{model}"
    seconds = max(6 * args.seconds, 20.0)
    swap: dict = {}

    def publish_and_watch() -> None:  # published as deployments should: under a hidden name, then renamed
        shutil.copytree(version_dir, repo / model / ".incoming-2")
        (repo / model / ".incoming-2").rename(repo / model / "2")
        published = time.monotonic()
        while time.monotonic() - published < seconds:
            if _versions(status_url).get("2") == "AVAILABLE":
                swap["swap_s"] = round(time.monotonic() - published, 2)
                return
            time.sleep(0.25)

    try:
        watcher = threading.Timer(args.warmup + 1.0, publish_and_watch)
        cpu0 = started.server.cpu_s()
        with Sampler(started.server) as memory:
            watcher.start()
            run = loadgen.closed_loop(endpoint, HOT_SWAP_CONCURRENCY, seconds, args.warmup)
            watcher.join()
        row = _row(endpoint, model, HOT_SWAP_CONCURRENCY, run, seconds, started.server.cpu_s() - cpu0,
                   memory.peak_mb, mode="closed", cpu_window_s=args.warmup + seconds + loadgen.MARGIN_S)
        versions = _versions(status_url)
    finally:
        started.server.stop()
    row.update(scenario="hot-swap", swapped=versions.get("2") == "AVAILABLE", versions=versions,
               swap_s=swap.get("swap_s"))
    return stats.check_row(row)


def _versions(status_url: str) -> dict[str, str]:
    try:
        status = httpx.get(status_url, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return {v["version"]: v["state"] for v in status.get("model_version_status", [])}


def _row(endpoint, model, concurrency, run, seconds, cpu_s, rss_mb, *, mode, cpu_window_s) -> dict:
    w = stats.window(run.requests, run.window_start_s, seconds, by_end=run.closed)
    return {"system": endpoint.system, "api": endpoint.api, "model": model, "concurrency": concurrency,
            "throughput": round(w.throughput, 2), "p50_ms": round(w.p50_ms, 2), "p90_ms": round(w.p90_ms, 2),
            "p99_ms": round(w.p99_ms, 2), "errors": w.errors, "cpu_s": round(cpu_s, 2), "rss_mb": round(rss_mb, 1),
            "cpu_ms_per_image": _cpu_ms_per_image(cpu_s, w.throughput, cpu_window_s),
            "mode": mode, "loadgen_cpu_s": round(run.loadgen_cpu_s, 2), "cdf_ms": w.cdf_ms}


def _cpu_ms_per_image(cpu_s: float, throughput: float, window_s: float) -> float | None:
    """The server's CPU (its whole process tree) per answered image, over a window of ``window_s`` at
    ``throughput``: the same for every system, so the peers are measured as tlserve is."""
    return round(1000 * cpu_s / (throughput * window_s), 3) if throughput else None


def _log(row: dict) -> dict:
    print(f"{row['model']:15} {report.label(row):28} c={row['concurrency']:<4} {row.get('mode', ''):6} "
          f"{row['throughput']:8.1f} img/s  p50 {row['p50_ms']:7.1f}  p99 {row['p99_ms']:7.1f} ms  "
          f"err {row['errors']}  cpu {row['cpu_s']:.1f} s  gen {row.get('loadgen_cpu_s', 0):.1f} s  "
          f"rss {row['rss_mb']:.0f} MB", flush=True)
    return row


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def _write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(_strict(result), indent=1, allow_nan=False) + "\n")
    (out / "latest.md").write_text(report.markdown(result))
    report.plots(result, out)


def _strict(value):
    """NaN (the latency of a point without answers) as null: JSON has no NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
