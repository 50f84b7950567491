"""The limit: the SavedModel's ``serving_default`` (decode + model, the same work as every server) called
back to back in this process on batches of the same JPEG, no serving at all. Prints one JSON object per
batch size: its repeats, each with throughput (images/s), per-call latencies and CPU seconds.

    python -m bench.inprocess VERSION_DIR IMAGE_FILE --batch 1 32 --seconds 5 --warmup 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
    args = parser.parse_args()

    import tensorflow as tf

    loaded = tf.saved_model.load(args.version_dir)
    serve = loaded.signatures["serving_default"]
    image = open(args.image_file, "rb").read()
    for batch in args.batch:
        images = tf.constant([image] * batch)

        def call() -> None:
            serve(images=images)["scores"].numpy()

        until = time.monotonic() + args.warmup
        while time.monotonic() < until:
            call()
        repeats = []
        for _ in range(args.repeats):
            latencies, cpu0, started = [], time.process_time(), time.monotonic()
            while time.monotonic() - started < args.seconds:
                t = time.monotonic()
                call()
                latencies.append(time.monotonic() - t)
            elapsed = time.monotonic() - started
            repeats.append({"throughput": batch * len(latencies) / elapsed, "latencies_s": latencies,
                            "cpu_s": time.process_time() - cpu0})
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"batch": batch, "repeats": repeats, "rss_mb": rss_mb}), flush=True)


if __name__ == "__main__":
    main()
