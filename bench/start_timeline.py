"""One cold start, step by step: every line the server prints, stamped with the seconds since its process
started, each process of its tree as it appears, and the first answer (the same request as ``bench.run``'s).

    .venv/bin/python -m bench.start_timeline overhead-bound tlserve
    .venv/bin/python -m bench.start_timeline overhead-bound bentoml

In a BentoML server the worker's appearance ends the arbiter's part; TensorFlow prints its first lines when its
library has loaded, and cuInit's failure (no GPU) once its import is done.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import threading
import time

import psutil

from bench import models, systems
from bench.servers import ROOT


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.start_timeline", description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=list(models.MODELS))
    parser.add_argument("system", choices=list(systems.SERVER_SYSTEMS))
    args = parser.parse_args()
    version_dir, image = models.version_dir(args.model), models.payload(args.model)
    argv, env, endpoints = systems.command(args.system, args.model, version_dir, image, systems.Limits())
    started = time.monotonic()
    stamp = lambda: f"{time.monotonic() - started:6.2f}"  # noqa: E731
    process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def lines() -> None:
        for line in process.stdout or ():
            print(stamp(), line.rstrip()[:160], flush=True)

    def children() -> None:
        seen: set[int] = set()
        while process.poll() is None:
            try:
                for child in psutil.Process(process.pid).children(recursive=True):
                    if child.pid not in seen:
                        seen.add(child.pid)
                        print(stamp(), "process", child.pid, " ".join(child.cmdline())[:120], flush=True)
            except psutil.Error:
                pass
            time.sleep(0.02)

    for watch in (lines, children):
        threading.Thread(target=watch, daemon=True).start()
    try:
        while not _answers(endpoints[0]):
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode}")
            time.sleep(0.05)
        print(stamp(), "first answer", flush=True)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def _answers(endpoint) -> bool:
    try:
        return systems.answers(endpoint)
    except Exception:  # noqa: BLE001 - not up yet
        return False


if __name__ == "__main__":
    main()
