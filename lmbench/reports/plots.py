"""Leaderboard plots as inline SVG text (matplotlib, Agg backend; no files, no network).

One figure per corpus and question, with one panel per track (word track: perplexity, log
scale; open track: bits per byte), lower is better on every y axis:

- quality against parameters, and against training time (both log x);
- the throughput-quality Pareto front: x = scored bytes per second (bytes, not tokens, so
  tokenizers compare), the non-dominated runs joined (no other run is both faster and better);
- training curves: validation loss (nats per token) against training seconds, from each
  record's ``train_log["curve"]`` (training loss, dashed, where no validation loss was taken).

Published references are drawn as dashed horizontal lines (the best figure of each source),
never as points. Pseudo-likelihood rows are left out: they share no scale with the others.
SVG ids are salted per figure so several figures can sit in one HTML page, and the date is
left out so the same records give the same bytes.
"""

from __future__ import annotations

import io
import math
import re

import pandas as pd

from lmbench.core.results import RunResult
from lmbench.reports.tables import OPEN, WORD

QUALITY = {WORD: ("perplexity", "test perplexity (lower is better)"),
           OPEN: ("bits/byte", "bits per byte (lower is better)")}
TRACK_LABELS = {WORD: "word track (closed vocabulary)", OPEN: "open-vocabulary track"}


def corpus_figures(table: pd.DataFrame, published: pd.DataFrame, records: list[RunResult],
                   corpus: str) -> list[tuple[str, str]]:
    """(caption, svg) pairs for one corpus; figures with nothing to plot are left out."""
    rows = table[(table["corpus"] == corpus)] if not table.empty else table
    refs = published[published["corpus"] == corpus] if not published.empty else published
    tracks = [t for t in (WORD, OPEN) if not rows.empty and (rows["track"] == t).any()]
    figures = []
    for caption, x, xlabel in (("quality against parameters", "params", "parameters"),
                               ("quality against training time", "train s", "training seconds")):
        svg = _scatter(rows, refs, tracks, x, xlabel, f"{corpus}-{x}")
        if svg:
            figures.append((f"{corpus}: {caption}", svg))
    svg = _scatter(rows, refs, tracks, "scored bytes/s", "scored bytes per second",
                   f"{corpus}-pareto", pareto=True)
    if svg:
        figures.append((f"{corpus}: throughput-quality Pareto front", svg))
    svg = _curves([r for r in records if r.corpus == corpus], f"{corpus}-curves")
    if svg:
        figures.append((f"{corpus}: training curves", svg))
    return figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _scatter(rows, refs, tracks, x: str, xlabel: str, salt: str, pareto: bool = False) -> str:
    panels = []
    for track in tracks:
        y = QUALITY[track][0]
        points = rows[(rows["track"] == track) & rows[x].notna() & rows[y].notna()]
        finite = points[[x, y]].astype(float).map(math.isfinite).all(axis=1)
        points = points[finite & (points[x].astype(float) > 0) & (points[y].astype(float) > 0)]
        if not points.empty:
            panels.append((track, points))
    if not panels:
        return ""
    plt = _pyplot()
    with plt.rc_context({"svg.hashsalt": salt, "font.size": 8}):
        fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
        for ax, (track, points) in zip(axes[0], panels, strict=True):
            y, ylabel = QUALITY[track]
            ax.scatter(points[x], points[y], s=22, color="#1f77b4", zorder=3)
            for _, p in points.iterrows():
                ax.annotate(str(p["model"]), (p[x], p[y]), textcoords="offset points",
                            xytext=(4, 3), fontsize=6.5)
            if pareto:
                front = _pareto_front(points, x, y)
                ax.step(front[x], front[y], where="post", color="#d62728", lw=1.2, zorder=2)
                ax.scatter(front[x], front[y], s=70, facecolors="none", edgecolors="#d62728",
                           label="Pareto front (no run both faster and better)", zorder=4)
                ax.legend(loc="upper right", fontsize=7)
            _reference_lines(ax, refs, track, y)
            ax.set_xscale("log")
            if track == WORD:
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(TRACK_LABELS[track], fontsize=8)
            ax.grid(True, which="both", alpha=0.25)
        return _to_svg(plt, fig)



def _pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Runs no other run beats on both axes (higher ``x``, lower ``y``), by increasing ``x``."""
    ordered = points.sort_values([x, y], ascending=[False, True])
    kept, best = [], math.inf
    for index, row in ordered.iterrows():
        if row[y] < best:
            kept.append(index)
            best = row[y]
    return points.loc[kept].sort_values(x)


def _reference_lines(ax, refs: pd.DataFrame, track: str, y: str) -> None:
    if refs.empty:
        return
    chosen = refs[(refs["track"] == track) & refs[y].notna()]
    chosen = chosen.sort_values(y).groupby("source", sort=False).head(1)  # best per source
    for _, ref in chosen.iterrows():
        ax.axhline(ref[y], color="#7f7f7f", ls="--", lw=0.8, zorder=1)
        ax.annotate(f"published: {ref['model']} ({ref[y]:.4g})", (0.01, ref[y]),
                    xycoords=("axes fraction", "data"), textcoords="offset points",
                    xytext=(0, 2), fontsize=6, color="#555555")


def _curves(records: list[RunResult], salt: str) -> str:
    runs = [r for r in records if r.train_log and r.train_log.get("curve")]
    if not runs:
        return ""
    plt = _pyplot()
    with plt.rc_context({"svg.hashsalt": salt, "font.size": 8}):
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for number, record in enumerate(runs):
            color = f"C{number % 10}"
            label = f"{record.model} ({record.config.get('tokenizer', '?')})"
            valid = _curve_points(record.train_log["curve"], "valid_loss")
            train = _curve_points(record.train_log["curve"], "train_loss")
            if valid[0]:
                ax.plot(*valid, color=color, lw=1.3, marker="o", ms=2.5, label=f"{label} valid")
            if train[0]:
                ax.plot(*train, color=color, lw=0.9, ls="--",
                        label=None if valid[0] else f"{label} train")
        ax.set_xlabel("training seconds")
        ax.set_ylabel("loss (nats per token of each run's tokenizer)")
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=6.5, loc="upper right")
        return _to_svg(plt, fig)


def _curve_points(curve, key: str) -> tuple[list[float], list[float]]:
    """(seconds, loss) of the curve's points that have a number under ``key`` (seconds, else
    the step); anything malformed in a record is skipped rather than breaking the page."""
    xs, ys = [], []
    for point in curve if isinstance(curve, list) else []:
        if not isinstance(point, dict):
            continue
        x, y = point.get("seconds", point.get("step")), point.get(key)
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in (x, y)):
            xs.append(float(x))
            ys.append(float(y))
    return xs, ys


def _to_svg(plt, fig) -> str:
    fig.tight_layout()
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):  # labels as <text>, not glyph outlines
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)  # creator RDF
    return text[text.index("<svg"):]  # drop the XML declaration and DOCTYPE
