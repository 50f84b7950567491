"""Starting, watching and stopping a system under test: its whole process tree (Ray and Triton start
helpers of their own), its CPU time and resident memory, and its cold start (process start -> first answer)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port(span: int = 1) -> int:
    """A free TCP port on 127.0.0.1 whose next ``span - 1`` ports are free too (PyTriton takes three)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + span < 65536 and all(_free(port + k) for k in range(1, span)):
            return port
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Server:
    """A server process started in its own session; ``known`` keeps every descendant ever seen, so that
    helpers which leave the process group are stopped too."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path):
        self.name = name
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.root = psutil.Process(self.process.pid)
        self.known: dict[int, psutil.Process] = {self.root.pid: self.root}
        self.log_path = log

    def tree(self) -> list[psutil.Process]:
        try:
            for child in self.root.children(recursive=True):
                self.known.setdefault(child.pid, child)
        except psutil.Error:
            pass
        return [p for p in self.known.values() if _alive(p)]

    def cpu_s(self) -> float:
        """CPU seconds of the whole tree so far (live processes and the children they reaped)."""
        total = 0.0
        for p in self.tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        return total

    def rss_mb(self) -> float:
        total = 0
        for p in self.tree():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def wait_ready(self, answers: Callable[[], bool], timeout_s: float) -> float:
        """Seconds from process start until ``answers()`` (a real inference request) first succeeds."""
        deadline = self.started + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            try:
                if answers():
                    return time.monotonic() - self.started
            except Exception:  # noqa: BLE001 - not up yet: connection refused, 404 until the model loads, ...
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s; see {self.log_path}")

    def stop(self, grace_s: float = 10) -> None:
        self.tree()
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
        for p in self.known.values():  # descendants that outlived their parent, e.g. tritonserver, raylet
            if _alive(p):
                try:
                    p.terminate()
                except psutil.Error:
                    pass
        gone, alive = psutil.wait_procs([p for p in self.known.values() if _alive(p)], timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Sampler:
    """Peak resident memory of a server's tree, sampled every ``period_s`` while a load runs."""

    def __init__(self, server: Server, period_s: float = 0.5):
        self._server, self._period = server, period_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, self._server.rss_mb())
            if self._stop.wait(self._period):
                return
