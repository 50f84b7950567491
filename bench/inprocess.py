"""The limit: the SavedModel's ``serving_default`` (decode + model, the same work as every server) called
back to back in this process on batches of the same JPEG, no serving at all. Prints one JSON object per
batch size: its repeats, each with throughput (images/s), per-call latencies and CPU seconds.

    python -m bench.inprocess VERSION_DIR IMAGE_FILE --batch 1 32 --seconds 5 --warmup 1 --repeats 3

By default TensorFlow's own threading and one caller: the limit as the issue defines it. ``--intra-op-threads 1
--callers 2`` runs it as tlserve runs the model on 2 cores (two batches at once, each with its share of the
cores): the limit for tlserve's own settings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("version_dir")
    parser.add_argument("image_file")
    parser.add_argument("--batch", type=int, nargs="+", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--intra-op-threads", type=int, default=0, help="0: TensorFlow's choice")
    parser.add_argument("--callers", type=int, default=1, help="threads calling the model at once")
    args = parser.parse_args()

    import tensorflow as tf

    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)

    loaded = tf.saved_model.load(args.version_dir)
    serve = loaded.signatures["serving_default"]
    image = open(args.image_file, "rb").read()
    for batch in args.batch:
        images = tf.constant([image] * batch)

        def call(images=images) -> None:
            serve(images=images)["scores"].numpy()

        def calls(until: float, latencies: list[float]) -> None:
            while time.monotonic() < until:
                t = time.monotonic()
                call()
                latencies.append(time.monotonic() - t)

        def run(seconds: float) -> list[float]:
            """Every caller calling back to back for ``seconds``; the latencies of all their calls."""
            latencies: list[float] = []
            until = time.monotonic() + seconds
            callers = [threading.Thread(target=calls, args=(until, latencies)) for _ in range(args.callers)]
            for caller in callers:
                caller.start()
            for caller in callers:
                caller.join()
            return latencies

        run(args.warmup)
        repeats = []
        for _ in range(args.repeats):
            cpu0, started = time.process_time(), time.monotonic()
            latencies = run(args.seconds)
            elapsed = time.monotonic() - started
            repeats.append({"throughput": batch * len(latencies) / elapsed, "latencies_s": latencies,
                            "cpu_s": time.process_time() - cpu0})
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"batch": batch, "repeats": repeats, "rss_mb": rss_mb}), flush=True)


if __name__ == "__main__":
    main()
