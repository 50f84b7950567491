"""Cost of the one JSON loader against a plain ``json.loads`` (what the three loaders it replaced did).

    PYTHONPATH=. .venv/bin/python -m bench.json_loader

Bodies of about 1 MB of ordinary numbers: TF Serving row format [rows, 50] floats, and uint8 pixels
[7, 100, 100, 3] (about the most brackets per byte a real request has). Interleaved runs, so that a busy machine
slows both alike; the fastest run of each (the least disturbed) and the medians.
"""

from __future__ import annotations

import json
import random
import statistics
import time

from service.codec.json_body import load_json, nesting_depth


def bodies() -> dict[str, bytes]:
    rng = random.Random(0)
    floats = json.dumps({"instances": [[round(rng.uniform(-1, 1), 6) for _ in range(50)]
                                       for _ in range(2000)]}).encode()
    pixels = json.dumps({"instances": [[[[rng.randrange(256)] * 3 for _ in range(100)] for _ in range(100)]
                                       for _ in range(7)]}).encode()
    return {"floats [rows, 50]": floats, "pixels [7, 100, 100, 3]": pixels}


def plain(body: bytes):
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError
    return doc


def main(rounds: int = 60) -> None:
    for name, body in bodies().items():
        times = {"json.loads": [], "load_json": [], "depth scan": []}
        for _ in range(rounds):
            for label, fn in (("json.loads", plain), ("load_json", load_json), ("depth scan", nesting_depth)):
                started = time.perf_counter()
                fn(body)
                times[label].append(time.perf_counter() - started)
        for how, pick in (("fastest", min), ("median", statistics.median)):
            old, new, scan = (pick(times[k]) * 1e3 for k in times)
            print(f"{name}, {len(body) / 2**20:.2f} MiB, {how}: json.loads {old:.2f} ms, load_json {new:.2f} ms "
                  f"({100 * (new - old) / old:+.1f}%), depth scan alone {scan:.2f} ms")


if __name__ == "__main__":
    main()
