"""Leaderboard plots as inline SVG text (matplotlib, Agg backend; no files, no network).

One figure per corpus and question, with one panel per track (word track: perplexity, log
scale; open track: bits per byte), lower is better on every y axis:

- quality against parameters, and against training time (both log x); a run at x = 0 (a
  model fitted in under the timer's resolution) is drawn at a floor below the smallest positive
  x as a hollow triangle, and the figure's caption names it;
- the throughput-quality Pareto front, the non-dominated runs joined (no other run is both
  faster and better): x = the table's ``score tok/s`` on the word track (every row there has
  the same word tokens), scored bytes per second on the open track (tokens of different
  tokenizers do not compare; the HTML table shows that column beside ``score tok/s``);
- training curves: validation loss (nats per token) against training seconds, from each
  record's ``train_log["curve"]`` (training loss, dashed, where no validation loss was taken).

Published references are drawn as dashed horizontal lines (the best figure of each source),
never as points. Pseudo-likelihood rows are left out: they share no scale with the others.
Point labels are placed by a greedy pass in display coordinates (``_place_labels``): each label
takes the first of a few positions around its point whose box overlaps no label, point,
reference caption or legend placed before it and stays inside the axes (else the position
that overlaps least).
SVG ids are salted per figure so several figures can sit in one HTML page, and the date is
left out so the same records give the same bytes.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pandas as pd

from lmbench.core.results import RunResult
from lmbench.reports.tables import OPEN, WORD

QUALITY = {WORD: ("perplexity", "test perplexity (lower is better)"),
           OPEN: ("bits/byte", "bits per byte (lower is better)")}
TRACK_LABELS = {WORD: "word track (closed vocabulary)", OPEN: "open-vocabulary track"}
# The Pareto front's x per track: (table column, axis label).
PARETO_AXES = {WORD: ("score tok/s", "scored tokens (words) per second: score tok/s"),
               OPEN: ("scored bytes/s", "scored bytes per second: scored bytes/s")}
ZERO_MARKER = "<"  # a run at x = 0, drawn at the floor of a log x axis


def corpus_figures(table: pd.DataFrame, published: pd.DataFrame, records: list[RunResult],
                   corpus: str) -> list[tuple[str, str]]:
    """(caption, svg) pairs for one corpus; figures with nothing to plot are left out."""
    rows = table[(table["corpus"] == corpus)] if not table.empty else table
    refs = published[published["corpus"] == corpus] if not published.empty else published
    tracks = [t for t in (WORD, OPEN) if not rows.empty and (rows["track"] == t).any()]
    figures = []
    for caption, x, xlabel in (("quality against parameters", "params", "parameters"),
                               ("quality against training time", "train s", "training seconds")):
        svg, note = _scatter(rows, refs, tracks, {t: (x, xlabel) for t in tracks},
                             f"{corpus}-{x}")
        if svg:
            figures.append((f"{corpus}: {caption}{note}", svg))
    svg, note = _scatter(rows, refs, tracks, PARETO_AXES, f"{corpus}-pareto", pareto=True)
    if svg:
        figures.append((f"{corpus}: throughput-quality Pareto front{note}", svg))
    svg = _curves([r for r in records if r.corpus == corpus], f"{corpus}-curves")
    if svg:
        figures.append((f"{corpus}: training curves", svg))
    return figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _scatter(rows, refs, tracks, axes_of: dict[str, tuple[str, str]], salt: str,
             pareto: bool = False) -> tuple[str, str]:
    """The figure's SVG ("" when nothing has both numbers) and a caption note naming the runs
    at x = 0, drawn at the floor of the log x axis."""
    panels, at_zero = [], []
    for track in tracks:
        x, y = axes_of[track][0], QUALITY[track][0]
        points = rows[(rows["track"] == track) & rows[x].notna() & rows[y].notna()]
        values = points[[x, y]].astype(float)
        finite = values.map(math.isfinite).all(axis=1)
        points = points[finite & (values[x] >= 0) & (values[y] > 0)]
        zero = points[x].astype(float) == 0
        if not points.empty:
            panels.append((track, points[~zero], points[zero]))
            at_zero += [str(m) for m in points[zero]["model"]]
    if not panels:
        return "", ""
    plt = _pyplot()
    with plt.rc_context({"svg.hashsalt": salt, "font.size": 8}):
        fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), squeeze=False)
        labelled = []
        for ax, (track, points, zeros) in zip(axes[0], panels, strict=True):
            (x, xlabel), (y, ylabel) = axes_of[track], QUALITY[track]
            ax.scatter(points[x], points[y], s=22, color="#1f77b4", zorder=3)
            floor = _floor(points[x])
            if not zeros.empty:
                ax.scatter([floor] * len(zeros), zeros[y], s=40, marker=ZERO_MARKER,
                           facecolors="none", edgecolors="#1f77b4", zorder=3,
                           label=f"{xlabel} = 0, drawn at {floor:.2g}")
            names = [str(m) for m in points["model"]] + [f"{m} (0)" for m in zeros["model"]]
            xs = [*points[x].astype(float), *[floor] * len(zeros)]
            labelled.append((ax, xs, [*points[y].astype(float), *zeros[y].astype(float)], names))
            if pareto:
                front = _pareto_front(points, x, y)
                ax.step(front[x], front[y], where="post", color="#d62728", lw=1.2, zorder=2)
                ax.scatter(front[x], front[y], s=70, facecolors="none", edgecolors="#d62728",
                           label="Pareto front (no run both faster and better)", zorder=4)
            if pareto or not zeros.empty:
                ax.legend(loc="best", fontsize=7)  # where it hides the fewest points
            _reference_lines(ax, refs, track, y)
            ax.set_xscale("log")
            if track == WORD:
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(TRACK_LABELS[track], fontsize=8)
            ax.grid(True, which="both", alpha=0.25)
        fig.tight_layout()
        fig.canvas.draw()  # fixes the limits and layout the labels are placed against
        for ax, xs, ys, names in labelled:
            _place_labels(fig, ax, xs, ys, names)
        note = (f" (x = 0, drawn at the left edge as a hollow triangle: {', '.join(at_zero)})"
                if at_zero else "")
        return _to_svg(plt, fig, layout=False), note


def _floor(values: pd.Series) -> float:
    """Where a log axis draws x = 0: a third of the smallest positive x (0.1 if none)."""
    positive = values.astype(float)[values.astype(float) > 0]
    return float(positive.min()) / 3 if not positive.empty else 0.1


# Label positions tried around a point, nearest first: (dx, dy) in points and the alignment.
_LABEL_SPOTS = [(4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
                (-4, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top"),
                (9, 9, "left", "bottom"), (9, -9, "left", "top"), (-9, 9, "right", "bottom"),
                (-9, -9, "right", "top"), (0, 14, "center", "bottom"),
                (0, -14, "center", "top"), (14, 0, "left", "center"),
                (-14, 0, "right", "center"), (16, 18, "left", "bottom"),
                (16, -18, "left", "top"), (-16, 18, "right", "bottom"), (-16, -18, "right", "top"),
                (0, 24, "center", "bottom"), (0, -24, "center", "top"), (26, 0, "left", "center"),
                (-26, 0, "right", "center"), (24, 28, "left", "bottom"),
                (24, -28, "left", "top"), (-24, 28, "right", "bottom"), (-24, -28, "right", "top")]


def _place_labels(fig, ax, xs: list[float], ys: list[float], names: list[str]) -> None:
    """Annotate point i with ``names[i]``, each label at the first spot of ``_LABEL_SPOTS``
    whose box (display pixels) overlaps no label placed before it, no other point and no other
    text of the axes (reference captions, the legend), and stays inside the axes; where every
    spot overlaps, the one overlapping least. A label two spots out gets a thin leader line."""
    if not names:
        return
    renderer = fig.canvas.get_renderer()
    frame = _extent(ax.get_window_extent(renderer))
    radius = 3.0 * fig.dpi / 72  # a point's marker, in pixels
    centres = ax.transData.transform(np.column_stack([xs, ys]))  # (N, 2) pixels
    markers = [(cx - radius, cy - radius, cx + radius, cy + radius) for cx, cy in centres]
    taken = []
    if ax.get_legend() is not None:
        taken.append(_extent(ax.get_legend().get_window_extent(renderer)))
    for caption in ax.texts:  # the reference lines' captions: the corner freest of points
        best = None
        for spot in _CAPTION_SPOTS:
            _move_caption(caption, spot)
            box = _extent(caption.get_window_extent(renderer))
            cost = sum(_overlap(box, other) for other in taken + markers)
            if best is None or cost < best[0]:
                best = (cost, spot, box)
            if cost <= 0:
                break
        _move_caption(caption, best[1])
        taken.append(best[2])
    for i in sorted(range(len(names)), key=lambda i: tuple(centres[i])):
        obstacles = taken + markers[:i] + markers[i + 1:]
        best = None  # (cost, spot, box)
        for spot in _LABEL_SPOTS:
            dx, dy, ha, va = spot
            text = ax.annotate(names[i], (xs[i], ys[i]), textcoords="offset points",
                               xytext=(dx, dy), ha=ha, va=va, fontsize=6.5)
            box = _extent(text.get_window_extent(renderer))
            text.remove()
            outside = _area(box) - _overlap(box, frame)
            cost = outside + sum(_overlap(box, other) for other in obstacles)
            if best is None or cost < best[0]:
                best = (cost, spot, box)
            if cost <= 0:
                break
        _, (dx, dy, ha, va), box = best
        far = abs(dx) + abs(dy) > 20
        ax.annotate(names[i], (xs[i], ys[i]), textcoords="offset points", xytext=(dx, dy),
                    ha=ha, va=va, fontsize=6.5, zorder=5,
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#888888",
                                "shrinkA": 0, "shrinkB": 2} if far else None)
        taken.append(box)


# A reference caption's places along its line: (x in axes fraction, alignment, dy in points).
_CAPTION_SPOTS = [(0.01, "left", 2, "bottom"), (0.99, "right", 2, "bottom"),
                  (0.01, "left", -2, "top"), (0.99, "right", -2, "top"),
                  (0.5, "center", 2, "bottom"), (0.5, "center", -2, "top")]


def _move_caption(caption, spot: tuple[float, str, float, str]) -> None:
    x, ha, dy, va = spot
    caption.xy = (x, caption.xy[1])
    caption.xyann = (0, dy)
    caption.set_ha(ha)
    caption.set_va(va)


def _extent(bbox) -> tuple[float, float, float, float]:
    return (bbox.x0, bbox.y0, bbox.x1, bbox.y1)


def _area(box: tuple[float, float, float, float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]
             ) -> float:
    """The area (pixels) two (x0, y0, x1, y1) boxes share."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0


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
    """Training curves of the leaderboard's rows: a sweep's trials are drawn by their selected
    trial alone, as the table lists them (a ladder holds a hundred trials)."""
    runs = [r for r in records if r.train_log and r.train_log.get("curve")
            and (r.sweep is None or r.sweep.selected)]
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


def _to_svg(plt, fig, layout: bool = True) -> str:
    if layout:
        fig.tight_layout()
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):  # labels as <text>, not glyph outlines
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)  # creator RDF
    return text[text.index("<svg"):]  # drop the XML declaration and DOCTYPE
