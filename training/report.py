"""Evaluation report of a trained image classifier: metrics, plots and a JSON / Markdown / HTML write-up."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from training import calibration as calib

GALLERY_FILE = "misclassified.png"
RELIABILITY_FILE = "reliability.png"
GALLERY_MAX = 36
MARKDOWN_MISCLASSIFIED_MAX = 50
# Beyond this many classes the per-cell counts in the confusion matrix plot become unreadable.
ANNOTATE_MAX_CLASSES = 30
CURVE_METRICS = ("loss", "accuracy")


@dataclass
class EvaluationInput:
    """Everything the report needs: ground truth, model scores and the test images in the same order."""

    classes: list[str]
    y_true: np.ndarray
    scores: np.ndarray
    images: Sequence[bytes]  # a list, or ImageFiles (read from disk when asked)
    sources: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    histories: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    # Trust (all optional): ``scores`` are then the calibrated ones, ``uncalibrated_scores`` the softmax before
    # the temperature; ``calibration`` and ``unknown`` are the metadata's objects; ``unknown_scores`` one per image.
    uncalibrated_scores: np.ndarray | None = None
    calibration: dict | None = None
    unknown: dict | None = None
    unknown_scores: np.ndarray | None = None
    # A retrained model (training.retrain): the version it started from, scored on the same test images.
    comparison: dict | None = None


def _validated(ev: EvaluationInput) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, scores)`` as arrays, or ValueError naming what does not fit."""
    y_true = np.asarray(ev.y_true)
    scores = np.asarray(ev.scores, dtype=float)
    n_classes = len(ev.classes)
    if n_classes == 0:
        raise ValueError("classes must name at least one class")
    # Checked before the shapes: empty input often arrives as plain [] rather than a [0, C] array.
    if scores.size == 0 and y_true.size == 0:
        raise ValueError("no test images to evaluate")
    if scores.ndim != 2 or scores.shape[1] != n_classes:
        raise ValueError(f"scores must have shape [n, {n_classes}] (one column per class), got {list(scores.shape)}")
    n = scores.shape[0]
    if y_true.ndim != 1 or len(y_true) != n:
        raise ValueError(f"y_true must have shape [{n}] to match scores, got {list(y_true.shape)}")
    if not np.issubdtype(y_true.dtype, np.integer) or y_true.min() < 0 or y_true.max() >= n_classes:
        raise ValueError(f"y_true must hold class indices in [0, {n_classes}), got {y_true.dtype} "
                         f"in [{y_true.min()}, {y_true.max()}]")
    for name, items in (("images", ev.images), ("sources", ev.sources)):
        if len(items) != n:
            raise ValueError(f"{name} must have one entry per scored image ({n}), got {len(items)}")
    return y_true, scores


def _plain(value):
    # numpy scalars and paths are common in ``info``; anything else unknown is recorded by its text.
    return value.item() if isinstance(value, np.generic) else str(value)


def build_report(ev: EvaluationInput) -> dict:
    """Compute the report of ``ev`` (no files written) as a JSON-serialisable dict.

    Keys: ``classes, n, accuracy, macro_f1, per_class`` (label, precision, recall, f1, support, predicted),
    ``confusion_matrix`` (rows = true class, columns = predicted, every class present even if absent from the
    data), ``misclassified`` (index into the test images, source, true, predicted, score of the predicted
    class; most confident first), ``skipped`` (source, reason), ``info`` and ``histories``; with the trust inputs
    also ``calibration`` and ``unknown`` (see :func:`_trust`).  ``macro_f1``
    averages over the classes that occur in the truth or the predictions, as sklearn does by default, so that
    evaluating on data holding only some of the model's classes is not penalised for the others.
    Raises ValueError for inconsistent input.
    """
    y_true, scores = _validated(ev)
    classes = [str(c) for c in ev.classes]
    labels = list(range(len(classes)))
    y_pred = scores.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    predicted = matrix.sum(axis=0)
    per_class = [
        {"label": classes[i], "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
         "support": int(support[i]), "predicted": int(predicted[i])}
        for i in labels
    ]
    occurring = (support > 0) | (predicted > 0)
    wrong = sorted(np.flatnonzero(y_pred != y_true), key=lambda i: -scores[i, y_pred[i]])
    trust = _trust(ev, y_true, scores)
    if ev.comparison:
        trust["comparison"] = json.loads(json.dumps(ev.comparison, default=_plain))
    return {**trust,
        "classes": classes,
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)),
        "macro_f1": float(np.mean(f1[occurring])),
        "per_class": per_class,
        "confusion_matrix": matrix.astype(int).tolist(),
        "misclassified": [
            {"index": int(i), "source": str(ev.sources[i]), "true": classes[y_true[i]],
             "predicted": classes[y_pred[i]], "score": float(scores[i, y_pred[i]])}
            for i in wrong
        ],
        "skipped": [{"source": str(source), "reason": str(reason)} for source, reason in ev.skipped],
        "info": json.loads(json.dumps(ev.info, default=_plain)),
        "histories": {str(phase): {str(k): [float(v) for v in values] for k, values in history.items()}
                      for phase, history in ev.histories.items()},
    }


def _trust(ev: EvaluationInput, y_true: np.ndarray, scores: np.ndarray) -> dict:
    """``calibration`` (the metadata's object plus the reliability bins before and after, 15 equal-width bins, on
    these images) when uncalibrated scores are given, and ``unknown`` (the metadata's object plus the fraction
    of these images called unknown at its threshold) when unknown scores are given."""
    out: dict = {}
    if ev.uncalibrated_scores is not None:
        before = np.asarray(ev.uncalibrated_scores, dtype=float)
        if before.shape != scores.shape:
            raise ValueError(f"uncalibrated_scores must have the shape of scores {list(scores.shape)}, "
                             f"got {list(before.shape)}")
        if not np.array_equal(before.argmax(axis=1), scores.argmax(axis=1)):
            raise ValueError("calibration changed the top class of some image: a temperature cannot do that")
        out["calibration"] = {**json.loads(json.dumps(ev.calibration or {}, default=_plain)),
                              "reliability_before": calib.reliability(before, y_true),
                              "reliability_after": calib.reliability(scores, y_true),
                              "nll_of_scores_before": calib.nll_of_scores(before, y_true),
                              "nll_of_scores_after": calib.nll_of_scores(scores, y_true)}
    if ev.unknown is not None and ev.unknown_scores is not None:
        unknown = np.asarray(ev.unknown_scores, dtype=float)
        if unknown.shape != (len(y_true),):
            raise ValueError(f"unknown_scores must have shape [{len(y_true)}], got {list(unknown.shape)}")
        threshold = float(ev.unknown["threshold"])
        out["unknown"] = {**json.loads(json.dumps(ev.unknown, default=_plain)),
                          "rejected": int(np.sum(unknown > threshold)), "n": len(unknown),
                          "rejection_rate": float(np.mean(unknown > threshold))}
    return out


def _save(fig: Figure, path: Path) -> None:
    # An explicit Agg canvas instead of pyplot: no display, no global figure state, safe inside a server.
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def _plot_confusion(report: dict, path: Path) -> None:
    _save(confusion_figure(np.array(report["confusion_matrix"]), report["classes"],
                           f"Confusion matrix (accuracy {report['accuracy']:.3f})"), path)


def confusion_figure(matrix: np.ndarray, classes: list[str], title: str) -> Figure:
    """A confusion matrix (rows true, columns predicted), counts written in the cells for up to 30 classes; the
    report's PNG and the TensorBoard image (training/logs.py) are both this figure."""
    side = min(4 + 0.4 * len(classes), 20)
    fig = Figure(figsize=(side + 1, side))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(len(classes))
    # parse_math=False: a '$' in a class name must not be read as matplotlib mathtext.
    ax.set_xticks(ticks, classes, rotation=90, parse_math=False)
    ax.set_yticks(ticks, classes, parse_math=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, parse_math=False)
    if len(classes) <= ANNOTATE_MAX_CLASSES:
        threshold = matrix.max() / 2
        for (row, col), count in np.ndenumerate(matrix):
            ax.text(col, row, str(count), ha="center", va="center",
                    color="white" if count > threshold else "black", fontsize=8)
    return fig


def _plot_curves(phase: str, history: dict[str, list[float]], path: Path) -> None:
    fig = Figure(figsize=(10, 4))
    fig.suptitle(phase, parse_math=False)
    for ax, metric in zip(fig.subplots(1, 2), CURVE_METRICS, strict=True):
        for key, name in ((metric, "train"), (f"val_{metric}", "val")):
            values = history.get(key)
            if values:
                # Markers keep a one-epoch phase visible as a point rather than an invisible line.
                ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.has_data():
            ax.legend()
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    _save(fig, path)


def _plot_reliability(cal: dict, path: Path) -> None:
    fig = Figure(figsize=(10, 4.5))
    for ax, key, title in zip(fig.subplots(1, 2), ("reliability_before", "reliability_after"),
                              ("before calibration", "after calibration"), strict=True):
        bins = [b for b in cal[key]["bins"] if b["count"]]
        width = 1 / len(cal[key]["bins"])
        ax.bar([b["lo"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge",
               edgecolor="black", color="#4c72b0", label="accuracy")
        ax.plot([b["confidence"] for b in bins], [b["confidence"] for b in bins], "o", color="#dd8452",
                label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top score)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}: ECE {cal[key]['ece']:.4f}")
        ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def _decoded(data: bytes) -> np.ndarray | None:
    """RGB pixels of encoded image bytes, or None if they do not decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _plot_gallery(misclassified: list[dict], images: Sequence[bytes], path: Path) -> None:
    shown = misclassified[:GALLERY_MAX]
    cols = min(6, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig = Figure(figsize=(2 * cols, 2.2 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, item in zip(axes, shown, strict=False):  # the grid may have spare tiles
        pixels = _decoded(images[item["index"]])
        # A blank grey tile keeps the title of an undecodable image visible instead of failing the whole report.
        ax.imshow(pixels if pixels is not None else np.full((8, 8, 3), 220, np.uint8), interpolation="nearest")
        ax.set_title(f"{item['true']} -> {item['predicted']} ({item['score']:.2f})", fontsize=8, parse_math=False)
    _save(fig, path)


def _md(value) -> str:
    # A '|' or a line break inside a cell would split or end the Markdown table row.
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]


def _class_rows(report: dict) -> list[list]:
    return [[c["label"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
            for c in report["per_class"]]


def _trust_tables(report: dict) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) of the calibration and unknown-score tables, for the reports that have them."""
    tables = []
    cal = report.get("calibration")
    if cal:
        rows = [["expected calibration error (15 bins)", f"{cal['reliability_before']['ece']:.4f}",
                 f"{cal['reliability_after']['ece']:.4f}"],
                ["negative log-likelihood", f"{cal.get('nll_before', cal['nll_of_scores_before']):.4f}",
                 f"{cal.get('nll_after', cal['nll_of_scores_after']):.4f}"]]
        if "temperature" in cal:
            rows.append(["temperature (fitted on the validation split)", "1", f"{cal['temperature']:.4f}"])
        if "ece_floor" in cal:  # an ECE near it is as low as these images can show (calibration.ece_floor)
            rows.append(["ECE that sampling alone gives the calibrated scores", "", f"{cal['ece_floor']:.4f}"])
        tables.append(("Calibration", ["", "before", "after"], rows))
    unknown = report.get("unknown")
    if unknown:
        rejected = f"{unknown['rejected']} of {unknown['n']} ({unknown['rejection_rate']:.4f})"
        threshold = f"{unknown['threshold']:.6g}"
        rows = [["score", unknown["score"]], ["threshold (fitted on the validation split)", threshold],
                ["false-rejection target", f"{unknown['false_rejection_target']:.4f}"],
                ["known images called unknown here", rejected]]
        tables.append(("Unknown images", ["", "value"], rows))
    return tables


def _comparison_tables(report: dict) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) of a retrained model's comparison with the version it started from, if any."""
    comparison = report.get("comparison")
    if not comparison:
        return []
    title = f"Against {comparison['model']}, the version it started from (same test images)"
    rows = [["accuracy", f"{comparison['old_accuracy']:.4f}", f"{comparison['new_accuracy']:.4f}",
             f"{comparison['new_accuracy'] - comparison['old_accuracy']:+.4f}", comparison["test_images"]]]
    rows += [[f"recall of {c['label']}" + (" (new class)" if c["label"] in comparison["added_classes"] else ""),
              f"{c['old_recall']:.3f}", f"{c['new_recall']:.3f}", f"{c['change']:+.3f}", c["support"]]
             for c in comparison["per_class"]]
    return [(title, ["", "before", "after", "change", "test images"], rows)]


def comparison_lines(comparison: dict) -> list[str]:
    """Console lines of a retrained model against the version it started from: accuracy, then every class's
    recall gain or loss (largest losses first)."""
    lines = [f"against {comparison['model']} on the same {comparison['test_images']} test images: accuracy "
             f"{comparison['old_accuracy']:.4f} -> {comparison['new_accuracy']:.4f} "
             f"({comparison['new_accuracy'] - comparison['old_accuracy']:+.4f})"]
    for c in sorted(comparison["per_class"], key=lambda c: c["change"]):
        kind = "gain" if c["change"] > 0 else "loss" if c["change"] < 0 else "same"
        new = " (new class)" if c["label"] in comparison["added_classes"] else ""
        lines.append(f"  {kind:<4} {c['label']}{new}: recall {c['old_recall']:.3f} -> {c['new_recall']:.3f} "
                     f"({c['change']:+.3f}, {c['support']} images)")
    return lines


def _misclassified_rows(report: dict) -> list[list]:
    return [[m["source"], m["true"], m["predicted"], f"{m['score']:.3f}"]
            for m in report["misclassified"][:MARKDOWN_MISCLASSIFIED_MAX]]


def _more_misclassified(report: dict) -> str:
    hidden = len(report["misclassified"]) - MARKDOWN_MISCLASSIFIED_MAX
    return f"... and {hidden} more (all are listed in report.json)" if hidden > 0 else ""


def _markdown(report: dict, plots: list[tuple[str, str]]) -> str:
    """``plots`` are the (title, file name) of the figures shown before the lists; the gallery goes with its list."""
    lines = ["# Evaluation report", ""]
    if report["info"]:
        lines += _md_table(["", "value"], [[key, value] for key, value in report["info"].items()]) + [""]
    lines += [f"**Accuracy** {report['accuracy']:.4f} &nbsp; **Macro F1** {report['macro_f1']:.4f} "
              f"&nbsp; **Test images** {report['n']}", "", "## Per class", ""]
    lines += _md_table(["class", "precision", "recall", "F1", "support"], _class_rows(report)) + [""]
    for title, header, rows in [*_comparison_tables(report), *_trust_tables(report)]:
        lines += [f"## {title}", ""] + _md_table(header, rows) + [""]
    for title, name in plots:
        lines += [f"## {_md(title)}", "", f"![{_md(title)}]({name})", ""]
    lines += [f"## Misclassified ({len(report['misclassified'])})", ""]
    if report["misclassified"]:
        lines += [f"![Misclassified test images]({GALLERY_FILE})", ""]
        lines += _md_table(["source", "true", "predicted", "score"], _misclassified_rows(report))
        more = _more_misclassified(report)
        lines += ["", more, ""] if more else [""]
    else:
        lines += ["No test image was misclassified.", ""]
    lines += [f"## Skipped images ({len(report['skipped'])})", ""]
    if report["skipped"]:
        lines += _md_table(["source", "reason"], [[s["source"], s["reason"]] for s in report["skipped"]]) + [""]
    else:
        lines += ["No input image was skipped.", ""]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f0f0f0}img{max-width:100%}.metrics{font-size:1.2em}"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _html(report: dict, plots: list[tuple[str, str]], pngs: dict[str, bytes]) -> str:
    """One self-contained page (to open anywhere or mail): every figure is embedded from ``pngs`` (name -> bytes)."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>Evaluation report</title>',
             f"<style>{_CSS}</style></head><body>", "<h1>Evaluation report</h1>"]
    if report["info"]:
        parts.append(_html_table(["", "value"], [[key, value] for key, value in report["info"].items()]))
    parts += [f'<p class="metrics"><strong>Accuracy</strong> {report["accuracy"]:.4f} &nbsp; '
              f'<strong>Macro F1</strong> {report["macro_f1"]:.4f} &nbsp; '
              f'<strong>Test images</strong> {report["n"]}</p>',
              "<h2>Per class</h2>", _html_table(["class", "precision", "recall", "F1", "support"], _class_rows(report))]
    for title, header, rows in [*_comparison_tables(report), *_trust_tables(report)]:
        parts += [f"<h2>{e(title)}</h2>", _html_table(header, rows)]
    for title, name in plots:
        parts += [f"<h2>{e(title)}</h2>", f'<img src="{_data_uri(pngs[name])}" alt="{e(title)}">']
    parts.append(f"<h2>Misclassified ({len(report['misclassified'])})</h2>")
    if report["misclassified"]:
        parts.append(f'<img src="{_data_uri(pngs[GALLERY_FILE])}" alt="Misclassified test images">')
        parts.append(_html_table(["source", "true", "predicted", "score"], _misclassified_rows(report)))
        more = _more_misclassified(report)
        if more:
            parts.append(f"<p>{e(more)}</p>")
    else:
        parts.append("<p>No test image was misclassified.</p>")
    parts.append(f"<h2>Skipped images ({len(report['skipped'])})</h2>")
    if report["skipped"]:
        parts.append(_html_table(["source", "reason"], [[s["source"], s["reason"]] for s in report["skipped"]]))
    else:
        parts.append("<p>No input image was skipped.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _plot_names(report: dict) -> list[tuple[str, str]]:
    """(title, file name) of the figures shown before the lists: the confusion matrix, then each phase's curves."""
    reliability = [("Reliability diagram", RELIABILITY_FILE)] if report.get("calibration") else []
    return [("Confusion matrix", "confusion_matrix.png")] + reliability + [
        (f"Training curves: {phase}", f"curves_{_file_safe(phase)}.png") for phase in report["histories"]]


def write_html(report: dict, out_dir: str | Path) -> None:
    """(Re)write ``report.html`` in ``out_dir`` from ``report`` (:func:`build_report`'s dict, or report.json read
    back) with the PNGs already in ``out_dir`` embedded; a missing PNG is an OSError."""
    out = Path(out_dir)
    plots = _plot_names(report)
    names = [name for _, name in plots] + ([GALLERY_FILE] if report["misclassified"] else [])
    pngs = {name: (out / name).read_bytes() for name in names}
    (out / "report.html").write_text(_html(report, plots, pngs), encoding="utf-8")


def write_report(ev: EvaluationInput, out_dir: str | Path) -> dict:
    """Write the report of ``ev`` into ``out_dir`` (created with its parents) and return it.

    Files: ``report.json``, ``report.md``, ``report.html`` (self-contained: the PNGs embedded as data: URIs),
    ``confusion_matrix.png``, ``curves_<phase>.png`` per training phase in ``ev.histories`` and, if any image was
    misclassified, ``misclassified.png`` (up to 36 of the most confident mistakes).  The returned dict is
    :func:`build_report`'s plus ``files``, the names written.
    """
    report = build_report(ev)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plot_names(report)
    _plot_confusion(report, out / "confusion_matrix.png")
    if report.get("calibration"):
        _plot_reliability(report["calibration"], out / RELIABILITY_FILE)
    curves = [name for _, name in plots if name.startswith("curves_")]
    for name, (phase, history) in zip(curves, report["histories"].items(), strict=True):
        _plot_curves(phase, history, out / name)
    files = ["report.json", "report.md", "report.html"] + [name for _, name in plots]
    if report["misclassified"]:
        _plot_gallery(report["misclassified"], ev.images, out / GALLERY_FILE)
        files.append(GALLERY_FILE)
    (out / "report.md").write_text(_markdown(report, plots), encoding="utf-8")
    write_html(report, out)
    report["files"] = files
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def summary_lines(report: dict) -> list[str]:
    """A few console lines: headline metrics, misclassified and skipped counts (skipped listed with reasons),
    and up to 5 of the weakest classes by F1 among those that occur in the truth or the predictions."""
    lines = [f"accuracy {report['accuracy']:.4f}   macro F1 {report['macro_f1']:.4f}   test images {report['n']}",
             f"misclassified {len(report['misclassified'])}", f"skipped {len(report['skipped'])}"]
    lines += [f"  {s['source']}: {s['reason']}" for s in report["skipped"]]
    occurring = [c for c in report["per_class"] if c["support"] or c["predicted"]]
    weakest = sorted(occurring, key=lambda c: c["f1"])[:5]
    lines.append("weakest classes by F1: " + ", ".join(f"{c['label']} {c['f1']:.3f}" for c in weakest))
    return lines
