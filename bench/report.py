"""The results as people read them: ratios, a Markdown table and PNG plots, all from the rows alone."""

from __future__ import annotations

from pathlib import Path

TLSERVE = ("tlserve-http", "tlserve-grpc")
IN_PROCESS = ("inprocess", "inprocess-tuned")  # the limits, not peers


def label(row: dict) -> str:
    return f"{row['system']} ({row['api']})" if row.get("api") else row["system"]


def _closed(rows: list[dict], model: str) -> list[dict]:
    return [r for r in rows if r["model"] == model and r.get("mode", "closed") == "closed" and not r.get("scenario")]


def ratios(rows: list[dict]) -> dict:
    """Per model: tlserve's best throughput over the in-process limit, and at each concurrency tlserve's best
    endpoint over each peer's (throughput ratio, and both p99s so 'at equal or better p99' can be read)."""
    out = {}
    for model in sorted({r["model"] for r in rows}):
        closed = _closed(rows, model)
        limit = max((r["throughput"] for r in closed if r["system"] == "inprocess"), default=None)
        tuned = max((r["throughput"] for r in closed if r["system"] == "inprocess-tuned"), default=None)
        ours = [r for r in closed if r["system"] in TLSERVE]
        best = max(ours, key=lambda r: r["throughput"], default=None)
        entry: dict = {"inprocess_best": limit, "tlserve_best": best and best["throughput"],
                       "tlserve_best_at": best and {"endpoint": label(best), "concurrency": best["concurrency"]},
                       "tlserve_over_inprocess": (best["throughput"] / limit) if best and limit else None,
                       "inprocess_tuned_best": tuned,
                       "tlserve_over_inprocess_tuned": (best["throughput"] / tuned) if best and tuned else None,
                       "vs_peers": []}
        for peer in (r for r in closed if r["system"] not in TLSERVE + IN_PROCESS):
            same = [r for r in ours if r["concurrency"] == peer["concurrency"]]
            if not same or not peer["throughput"]:
                continue
            mine = max(same, key=lambda r: r["throughput"])
            entry["vs_peers"].append({"peer": label(peer), "concurrency": peer["concurrency"],
                                      "tlserve": label(mine), "throughput_ratio": mine["throughput"] / peer["throughput"],
                                      "tlserve_p99_ms": mine["p99_ms"], "peer_p99_ms": peer["p99_ms"]})
        out[model] = entry
    return out


def markdown(result: dict) -> str:
    rows = result["rows"]
    lines = ["# Serving benchmark" + (" (--quick: a validation run, not figures to quote)"
                                      if result["settings"].get("quick") else ""), "",
             f"Machine: {result['machine']}  ", f"Command: `{result['command']}`  ",
             f"Started: {result.get('started')}, took {result.get('seconds', '?')} s  ",
             f"Settings: {result['settings']}", ""]
    for model in sorted({r["model"] for r in rows}):
        closed = _closed(rows, model)
        concurrencies = sorted({r["concurrency"] for r in closed})
        lines += [f"## {model}", "", "Closed loop: images/s, p99 ms (errors). In-process: concurrency = batch size.", "",
                  "| system | " + " | ".join(f"c={c}" for c in concurrencies) + " | open loop | cold start |",
                  "|---" * (len(concurrencies) + 3) + "|"]
        for name in _labels(closed):
            cells = []
            for c in concurrencies:
                row = next((r for r in closed if label(r) == name and r["concurrency"] == c), None)
                cells.append(_cell(row))
            open_row = next((r for r in rows if r["model"] == model and r.get("mode") == "open" and label(r) == name), None)
            cold = next((c["seconds"] for c in result.get("cold_start", []) if c["model"] == model
                         and name.split(" ")[0] in (c["system"], c["system"] + "-http", c["system"] + "-grpc")), None)
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {_open_cell(open_row)} | "
                         + (f"{cold:.1f} s" if cold is not None else "") + " |")
        starts = [c for c in result.get("cold_start", []) if c["model"] == model and c.get("samples")]
        if starts:
            lines += ["", "Cold start, process start to the first answer: the median of the starts, each round in "
                      "a rotated order, apart from the load phases:", "",
                      "| system | median | starts |", "|---|---|---|"]
            lines += [f"| {c['system']} | {c['seconds']:.1f} s | {', '.join(f'{s:.1f}' for s in c['samples'])} |"
                      for c in starts]
        lines += ["", "Server CPU per answered image, ms (the server's whole process tree, or the in-process "
                  "benchmark's process, over the measured window):", "",
                  "| system | " + " | ".join(f"c={c}" for c in concurrencies) + " |",
                  "|---" * (len(concurrencies) + 1) + "|"]
        for name in _labels(closed):
            cpu = [next((f"{r['cpu_ms_per_image']:.2f}" for r in closed if label(r) == name and r["concurrency"] == c
                         and r.get("cpu_ms_per_image") is not None), "") for c in concurrencies]
            lines.append(f"| {name} | " + " | ".join(cpu) + " |")
        lines.append("")
        swaps = [r for r in rows if r["model"] == model and r.get("scenario") == "hot-swap"]
        for r in swaps:
            lines.append(f"Hot version swap under load ({label(r)}, c={r['concurrency']}): {r['throughput']:.1f} img/s, "
                         f"p99 {r['p99_ms']:.1f} ms, errors {r['errors']}; version 2 serving {r.get('swap_s')} s after it was "
                         f"published (versions at the end: {r.get('versions')})")
        lines.append("")
    lines += ["## Ratios", ""]
    for model, entry in result.get("ratios", {}).items():
        if entry["tlserve_over_inprocess"] is not None:
            lines.append(f"- {model}: tlserve best {entry['tlserve_best']:.1f} img/s ({entry['tlserve_best_at']['endpoint']}, "
                         f"c={entry['tlserve_best_at']['concurrency']}) = {entry['tlserve_over_inprocess']:.2f} of "
                         f"in-process {entry['inprocess_best']:.1f} img/s")
        if entry.get("tlserve_over_inprocess_tuned") is not None:
            lines.append(f"  - and {entry['tlserve_over_inprocess_tuned']:.2f} of in-process with tlserve's threading "
                         f"(inprocess-tuned) {entry['inprocess_tuned_best']:.1f} img/s")
        for v in entry["vs_peers"]:
            lines.append(f"  - c={v['concurrency']}: {v['tlserve']} / {v['peer']} = {v['throughput_ratio']:.2f} "
                         f"(p99 {v['tlserve_p99_ms']:.0f} vs {v['peer_p99_ms']:.0f} ms)")
    return "\n".join(lines) + "\n"


def _labels(rows: list[dict]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        if label(r) not in seen:
            seen.append(label(r))
    return seen


def _cell(row: dict | None) -> str:
    if row is None:
        return ""
    errors = f" ({row['errors']} err)" if row["errors"] else ""
    return f"{row['throughput']:.1f}, {row['p99_ms']:.0f} ms{errors}"


def _open_cell(row: dict | None) -> str:
    if row is None:
        return ""
    return f"{row['rate']:g}/s: p50 {row['p50_ms']:.0f}, p99 {row['p99_ms']:.0f} ms" + (
        f" ({row['errors']} err)" if row["errors"] else "")


def plots(result: dict, out_dir: Path) -> list[Path]:
    """Per model: throughput against concurrency, and the latency CDF at the highest concurrency run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, written = result["rows"], []
    for model in sorted({r["model"] for r in rows}):
        closed = _closed(rows, model)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name in _labels(closed):
            series = sorted((r for r in closed if label(r) == name), key=lambda r: r["concurrency"])
            if series[0]["system"] in IN_PROCESS:
                best = max(r["throughput"] for r in series)
                ax.axhline(best, color="black", linestyle="--", label=f"in-process limit ({best:.0f})")
                continue
            ax.plot([r["concurrency"] for r in series], [r["throughput"] for r in series], marker="o", label=name)
        ax.set(xscale="log", xlabel="concurrent clients (closed loop)", ylabel="images / s", title=f"{model}: throughput")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"throughput-{model}.png"))

        served = [r for r in closed if r["system"] not in IN_PROCESS and r.get("cdf_ms")]
        if served:
            top = max(r["concurrency"] for r in served)
            pick = 32 if any(r["concurrency"] == 32 for r in served) else top
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for r in (r for r in served if r["concurrency"] == pick):
                ax.plot(r["cdf_ms"], [q / 100 for q in range(len(r["cdf_ms"]))], label=label(r))
            ax.set(xscale="log", xlabel="latency (ms)", ylabel="fraction of requests",
                   title=f"{model}: latency CDF at {pick} concurrent clients")
            ax.legend(fontsize=7)
            fig.tight_layout()
            written.append(_save(fig, out_dir / f"latency-cdf-{model}.png"))
        plt.close("all")
    return written


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
