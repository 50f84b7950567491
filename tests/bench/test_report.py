"""Ratios and the Markdown table are computed from the rows alone."""

from __future__ import annotations

import pytest

from bench.report import markdown, ratios


def _row(system, concurrency, throughput, p99, api=None, **extra):
    return {"system": system, "api": api, "model": "compute-bound", "concurrency": concurrency,
            "throughput": throughput, "p50_ms": p99 / 2, "p90_ms": p99 * 0.8, "p99_ms": p99, "errors": 0,
            "cpu_s": 1.0, "rss_mb": 100.0, "mode": "closed", **extra}


ROWS = [
    _row("inprocess", 1, 50.0, 20.0), _row("inprocess", 32, 100.0, 400.0),
    _row("tlserve-http", 1, 40.0, 30.0, "classify-json"), _row("tlserve-http", 32, 85.0, 450.0, "classify-json"),
    _row("tlserve-grpc", 32, 92.0, 420.0, "classifier"),
    _row("ray-serve", 32, 60.0, 700.0, "json"), _row("ray-serve", 8, 55.0, 200.0, "json"),
    _row("tlserve-http", 1, 45.0, 25.0, "classify-json", mode="open", rate=40.0),
]


def test_ratios_against_the_limit_and_peers_at_the_same_concurrency():
    r = ratios(ROWS)["compute-bound"]
    assert r["inprocess_best"] == 100.0
    assert r["tlserve_best"] == 92.0 and r["tlserve_best_at"] == {"endpoint": "tlserve-grpc (classifier)",
                                                                 "concurrency": 32}
    assert r["tlserve_over_inprocess"] == pytest.approx(0.92)
    (vs,) = r["vs_peers"]  # ray-serve at c=8 has no tlserve point at c=8 to compare with
    assert vs["peer"] == "ray-serve (json)" and vs["concurrency"] == 32
    assert vs["throughput_ratio"] == pytest.approx(92.0 / 60.0)
    assert (vs["tlserve_p99_ms"], vs["peer_p99_ms"]) == (420.0, 700.0)


def test_markdown_table_has_one_line_per_system_and_the_open_loop_cell():
    text = markdown({"machine": "m", "command": "c", "settings": {}, "rows": ROWS, "ratios": ratios(ROWS),
                     "cold_start": [{"system": "ray-serve", "model": "compute-bound", "seconds": 12.5}]})
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| system"))
    assert header == "| system | c=1 | c=8 | c=32 | open loop | cold start |"
    http = next(line for line in lines if line.startswith("| tlserve-http (classify-json)"))
    assert "40.0, 30 ms" in http and "85.0, 450 ms" in http and "40/s: p50 12, p99 25 ms" in http
    ray = next(line for line in lines if line.startswith("| ray-serve (json)"))
    assert "55.0, 200 ms" in ray and "12.5 s" in ray
    assert any("= 0.92 of in-process 100.0" in line for line in lines)


def test_the_tuned_in_process_limit_is_a_second_ratio_not_a_peer():
    rows = ROWS + [_row("inprocess-tuned", 32, 200.0, 300.0)]
    r = ratios(rows)["compute-bound"]
    assert r["inprocess_best"] == 100.0  # the limit as defined stays TensorFlow's threading, one caller
    assert r["tlserve_over_inprocess_tuned"] == pytest.approx(0.46)
    assert [v["peer"] for v in r["vs_peers"]] == ["ray-serve (json)"]
    text = markdown({"machine": "m", "command": "c", "settings": {}, "rows": rows, "ratios": ratios(rows),
                     "cold_start": []})
    assert "0.46 of in-process with tlserve's threading (inprocess-tuned) 200.0 img/s" in text


def test_markdown_has_the_cpu_per_image_of_every_system_and_api():
    rows = [dict(row, cpu_ms_per_image=1.5) for row in ROWS[:-1]] + [ROWS[-1]]
    text = markdown({"machine": "m", "command": "c", "settings": {}, "rows": rows, "ratios": ratios(rows),
                     "cold_start": []})
    cpu = text.split("Server CPU per answered image")[1].split("## ")[0]
    grpc = next(line for line in cpu.splitlines() if line.startswith("| tlserve-grpc (classifier)"))
    assert grpc == "| tlserve-grpc (classifier) |  |  | 1.50 |"


def test_the_cold_starts_are_the_median_of_their_rounds_with_every_sample_listed():
    text = markdown({"machine": "m", "command": "c", "settings": {}, "rows": ROWS, "ratios": ratios(ROWS),
                     "cold_start": [{"system": "ray-serve", "model": "compute-bound", "seconds": 12.5,
                                     "samples": [13.1, 12.5, 11.9]}]})
    ray = next(line for line in text.splitlines() if line.startswith("| ray-serve (json)"))
    assert ray.endswith("| 12.5 s |")
    assert "| ray-serve | 12.5 s | 13.1, 12.5, 11.9 |" in text.splitlines()
