"""`tlserve serve` as a real process tree for the tests: the CLI execs BentoML's arbiter, which starts a worker.

One place starts it on free 127.0.0.1 ports, waits for /readyz and stops it. Stopping sends SIGTERM first (the
arbiter passes it to its worker and both exit) and only then SIGKILLs every descendant: the worker runs in a
process group of its own, so killing the arbiter's group alone would leave a 2 GB worker behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


# A test's server stops without the drain delay (3 s of every stop by default: seconds of the suite for nothing).
# The tests of the drain give it as a flag (--drain-delay-s, TF Serving's --drain_delay_s), which decides over this.
NO_DRAIN_DELAY = {"TLSERVE_DRAIN_DELAY_S": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_processes(pid: int) -> list[str]:
    """Processes still alive in the session ``pid`` leads (the whole tree started by `tlserve serve`)."""
    return subprocess.run(["pgrep", "-s", str(pid)], capture_output=True, text=True).stdout.split()


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, whatever its process group (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # it ended while we looked
        parent = int(stat.rpartition(")")[2].split()[1])  # the name in brackets may hold spaces
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


@dataclass
class ServeProcess:
    process: subprocess.Popen
    url: str
    grpc_target: str
    log: Path

    @property
    def grpc_port(self) -> int:
        return int(self.grpc_target.rpartition(":")[2])

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, timeout_s: float = 60) -> None:
        """SIGTERM and wait; then SIGKILL whatever of the tree is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL the tree: descendants while the arbiter lives, else what is left of its session."""
        pids = [*descendants(self.process.pid), self.process.pid] if self.process.poll() is None else []
        pids += [int(pid) for pid in session_processes(self.process.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process.poll() is None:
            self.process.wait(timeout=30)


def start_serve(repo: Path, log: Path, *args: str, scheme: str = "http", verify=True) -> ServeProcess:
    """`tlserve serve --model-repo repo <args>` on free ports, returned once /readyz answers 200."""
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "tlserve.cli", "serve", "--model-repo", str(repo), "--host", "127.0.0.1",
               "--http-port", str(port), "--grpc-port", str(grpc_port), "--poll-interval-s", "0", *args]
    return start_tree(command, dict(os.environ), f"{scheme}://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", log,
                      verify=verify)


def start_bento(tag: str, repo: Path, log: Path, env: dict[str, str]) -> ServeProcess:
    """`bentoml serve <tag>`: a built Bento from the store ``env`` names (BENTOML_HOME), serving ``repo``; tlserve's
    settings reach BentoML's worker through TLSERVE_* as `tlserve serve` hands them over."""
    port, grpc_port = free_port(), free_port()
    command = [str(Path(sys.executable).with_name("bentoml")), "serve", tag, "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, **env, "TLSERVE_MODEL_REPO": str(repo), "TLSERVE_GRPC_PORT": str(grpc_port),
           "TLSERVE_POLL_INTERVAL_S": "0"}
    return start_tree(command, env, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", log)


def start_tree(command: list[str], env: dict[str, str], url: str, grpc_target: str, log: Path,
               verify=True) -> ServeProcess:
    """Start ``command`` in a session of its own and return it once ``url``/readyz answers 200."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env={**NO_DRAIN_DELAY, **env, "TF_CPP_MIN_LOG_LEVEL": "2"},
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    running = ServeProcess(process, url, grpc_target, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(running.url + "/readyz", timeout=2, verify=verify).status_code == 200:
                return running
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    running.kill()
    pytest.fail(f"{' '.join(command[:3])} did not become ready:\n{running.output()}")
