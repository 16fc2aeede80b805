"""Leaderboard plots: labels that do not collide, runs at x = 0 kept, axes named as the table."""

from __future__ import annotations

import itertools
from dataclasses import replace

from matplotlib.text import Text
from run_factory import fake_run

from lmbench.core.results import SweepResult
from lmbench.reports.html import render_html
from lmbench.reports.plots import (
    _curves,
    _overlap,
    _place_labels,
    _pyplot,
    _reference_lines,
    corpus_figures,
)
from lmbench.reports.published import load_references
from lmbench.reports.tables import WORD, leaderboard_table, published_table

CROWD = [(1.0, 150.0), (1.1, 152.0), (1.2, 149.0), (1.3, 151.0), (1.25, 147.0), (2.0, 150.0),
         (2.1, 146.5), (2.2, 148.0), (5.0, 160.0), (5.2, 158.0), (30.0, 146.8), (32.0, 147.2)]


def _boxes(fig, texts):
    """(text, pixel box of the text alone: a far label's leader line left out) per text."""
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), tuple(Text.get_window_extent(t, renderer).extents)) for t in texts]


def _crowded_axes():
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))  # one panel of the leaderboard's figures
    xs, ys = [x for x, _ in CROWD], [y for _, y in CROWD]
    ax.scatter(xs, ys, s=22)
    refs = published_table(load_references(), ["brown"])
    _reference_lines(ax, refs[refs["corpus"] == "brown"], WORD, "perplexity")
    ax.set_xscale("log")
    ax.set_yscale("log")
    fig.tight_layout()
    fig.canvas.draw()
    return plt, fig, ax, xs, ys


def test_labels_overlap_neither_each_other_nor_the_reference_captions():
    plt, fig, ax, xs, ys = _crowded_axes()
    names = [f"model {i}" for i in range(len(xs))]
    captions = list(ax.texts)
    assert any("KenLM" in c.get_text() for c in captions)
    _place_labels(fig, ax, xs, ys, names)
    fig.canvas.draw()
    labels = [t for t in ax.texts if t not in captions]
    assert sorted(t.get_text() for t in labels) == sorted(names)
    boxes = _boxes(fig, ax.texts)
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert _overlap(box_a, box_b) == 0, (a, b)
    frame = tuple(ax.get_window_extent(fig.canvas.get_renderer()).extents)
    for name, box in boxes:
        assert _overlap(box, frame) == (box[2] - box[0]) * (box[3] - box[1]), name  # inside
    plt.close(fig)

    # the fixed offset used before collides on the same points
    plt, fig, ax, xs, ys = _crowded_axes()
    for x, y, name in zip(xs, ys, names):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6.5)
    fig.canvas.draw()
    fixed = _boxes(fig, ax.texts)
    assert any(_overlap(a, b) > 0 for (_, a), (_, b) in itertools.combinations(fixed, 2))
    plt.close(fig)


def _records():
    return [fake_run("brown-kn5", model="kn5", corpus="brown", fit_s=0.0, n_params=10**7),
            fake_run("brown-kn3", model="kn3", corpus="brown", fit_s=2.0, n_params=10**6,
                     nats_per_token=5.1),
            fake_run("brown-lstm", model="lstm", corpus="brown", fit_s=900.0, n_params=10**7,
                     nats_per_token=4.6),
            fake_run("brown-gpt-char", model="gpt char", corpus="brown", tokenizer="char",
                     nats_per_token=1.2, unk_rate=0, fit_s=300.0)]


def test_a_run_fitted_in_zero_seconds_stays_on_the_time_plot():
    records = _records()
    figures = dict(corpus_figures(leaderboard_table(records), published_table([], []), records,
                                  "brown"))
    caption = next(c for c in figures if "training time" in c)
    assert "x = 0" in caption and "kn5" in caption
    assert ">kn5 (0)<" in figures[caption] and ">kn3<" in figures[caption]
    parameters = next(c for c in figures if "parameters" in c)
    assert "x = 0" not in parameters and ">kn5<" in figures[parameters]


def test_the_pareto_axes_are_the_tables_columns():
    records = _records()
    figures = dict(corpus_figures(leaderboard_table(records), published_table([], []), records,
                                  "brown"))
    pareto = next(svg for c, svg in figures.items() if "Pareto" in c)
    assert "scored tokens (words) per second: score tok/s" in pareto  # word track
    assert "scored bytes per second: scored bytes/s" in pareto  # open track
    page = render_html(records, [], [])
    word, open_track = page.split("open-vocabulary track, ranked")[0:2]
    assert ">score tok/s</th>" in word and ">scored bytes/s</th>" not in word.split("<svg")[0]
    assert ">scored bytes/s</th>" in open_track.split("<svg")[0]


def test_training_curves_draw_a_sweep_by_its_selected_trial():
    curve = {"curve": [{"step": 1, "seconds": 1.0, "train_loss": 5.0, "valid_loss": 5.5},
                       {"step": 2, "seconds": 2.0, "train_loss": 4.0, "valid_loss": 4.5}]}

    def run(label, trial, selected):
        sweep = SweepResult(label="gpt-60s", trial=trial, n_trials=2, params={}, selected=selected)
        return replace(fake_run(label, model=label), train_log=curve, sweep=sweep)

    svg = _curves([run("gpt-60s-trial-0", 0, False), run("gpt-60s-trial-1", 1, False),
                   run("gpt-60s", 1, True), replace(fake_run("kn5", model="kn5"), train_log=curve)],
                  "salt")
    assert "gpt-60s (" in svg and "kn5 (" in svg and "trial" not in svg
