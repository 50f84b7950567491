"""Training under tf.distribute, run for real on this machine: two `tlserve train` worker processes on 127.0.0.1
under MultiWorkerMirroredStrategy, and MirroredStrategy over two logical CPU devices.

Each runs in processes of its own: collective ops and logical devices must be configured before TensorFlow's
context starts, which the pytest process has long done. The GPU path (MirroredStrategy over GPUs with mixed
precision) cannot run here (no GPU); only its choice is unit-tested (tests/training/test_train.py)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = ["--data", "builtin:shapes", "--image-size", "32", "--head-epochs", "1", "--fine-tune-epochs", "1",
        "--fine-tune-layers", "10", "--batch-size", "16", "--quiet"]
DIGEST = re.compile(r"^weights sha256 ([0-9a-f]{64})$", re.M)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


def _wait(procs, timeout: float) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + timeout
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


def test_two_workers_train_together_and_only_the_chief_exports(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    models = tmp_path / "models"  # one model repository, as on a shared volume
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tlserve.cli", "train", "--name", "shapes", "--out", str(models), *TINY],
            env=_env(TF_CONFIG=tf_config), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = _wait(procs, timeout=420)
    for code, out, err in results:
        assert code == 0, f"exit {code}\nstdout:\n{out}\nstderr:\n{err[-4000:]}"
    (chief_out, worker_out) = (results[0][1], results[1][1])
    assert f"exported {models / 'shapes' / '1'}" in chief_out
    assert "exported" not in worker_out and "not exporting" in worker_out
    # one export, nothing left behind by the other worker (its temporary export is removed)
    assert sorted(p.name for p in (models / "shapes").iterdir()) == ["1"]
    assert sorted(p.name for p in models.iterdir()) == ["shapes"]
    digests = [DIGEST.search(out).group(1) for _, out, _ in results]
    assert digests[0] == digests[1], "the workers ended with different weights"
    meta = json.loads((models / "shapes" / "1" / "assets.extra" / "metadata.json").read_text())
    assert meta["training"]["weights_sha256"] == digests[0]
    assert meta["training"]["distribution"] == {"strategy": "multi_worker_mirrored", "workers": 2, "replicas": 2}
    # each worker read only its shard of the training split
    shards = [json.loads(re.search(r"^training shard (.*)$", out, re.M).group(1)) for _, out, _ in results]
    assert [s["worker"] for s in shards] == [0, 1] and len({s["images"] for s in shards}) <= 2
    assert sum(s["images"] for s in shards) == meta["split"]["sizes"]["train"]


MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from training.evaluate import export_trained
    from training.train import TrainConfig, train
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    cfg = TrainConfig(data="builtin:shapes", name="shapes", image_size=32, head_epochs=1, fine_tune_epochs=1,
                      fine_tune_layers=10, batch_size=16, verbose=0)
    trained = train(cfg, strategy=strategy)
    replicas = lambda v: strategy.experimental_local_results(v.value)  # a Keras variable wraps TF's
    same = all(all(bool(tf.reduce_all(r == replicas(v)[0])) for r in replicas(v)) for v in trained.model.weights)
    kernel = trained.model.get_layer("logits").kernel
    path, report = export_trained(trained, sys.argv[1])
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "same": same, "path": str(path),
                      "kernel_devices": sorted({r.device for r in replicas(kernel)}),
                      "accuracy": report["accuracy"], "info": trained.info["distribution"]}))
""")


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", MIRRORED, str(tmp_path / "models")], env=_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    [(code, out, err)] = _wait([proc], timeout=300)
    assert code == 0, f"exit {code}\nstdout:\n{out}\nstderr:\n{err[-4000:]}"
    result = json.loads(out.strip().splitlines()[-1])
    assert result["replicas"] == 2 and len(result["kernel_devices"]) == 2, result
    assert result["same"], "the two replicas' weights differ"
    assert result["info"] == {"strategy": "mirrored", "workers": 1, "replicas": 2}
    assert Path(result["path"], "saved_model.pb").is_file()
    assert 0 <= result["accuracy"] <= 1
