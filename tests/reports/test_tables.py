"""Leaderboards: ranking per corpus and track, published rows apart, Markdown / CSV / HTML, and
the ``leaderboard`` and ``compare`` commands."""

from __future__ import annotations

import argparse
import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pandas as pd
import pytest
from run_factory import fake_generation_report, fake_run, fake_throughput

from lmbench.cli.reports import add_commands
from lmbench.core.errors import LmbenchError
from lmbench.evaluation.generation_results import run_sidecar
from lmbench.reports.html import render_html
from lmbench.reports.published import Reference, load_references
from lmbench.reports.tables import (
    OPEN,
    WORD,
    csv_report,
    leaderboard_table,
    markdown_report,
    published_table,
)
from lmbench.storage.store import ResultStore, write_sidecar

CURVE = [{"step": s, "tokens": 100 * s, "seconds": 0.5 * s, "train_loss": 3.0 / s,
          "valid_loss": 3.2 / s} for s in (1, 2, 3)]


def _records():
    return [
        fake_run("brown-kn5", model="kn5", corpus="brown", nats_per_token=5.0, n_params=9000),
        fake_run("brown-uni", model="unigram", corpus="brown", nats_per_token=6.5, n_params=50),
        fake_run("brown-lstm", model="lstm", corpus="brown", nats_per_token=5.2, fit_s=45.0,
                 curve=CURVE),
        fake_run("brown-bert", model="bert", corpus="brown", nats_per_token=1.0, exact=False),
        fake_run("brown-char", model="char7", corpus="brown", tokenizer="char",
                 nats_per_token=1.5, n_tokens=16384, block_len=1024, n_bytes=16384, unk_rate=0),
        fake_run("brown-bpe", model="bpe4", corpus="brown", tokenizer="bpe", nats_per_token=3.0,
                 n_tokens=5000, block_len=500, n_bytes=16384, unk_rate=0),
        fake_run("shake-gpt", model="gpt <b>baby</b>", corpus="tinyshakespeare",
                 tokenizer="char", nats_per_token=1.9, unk_rate=0, curve=CURVE,
                 generation={"samples": [{"prompt": "ROMEO:", "text": "<script>alert(1)"
                                                                     "</script> & more"}],
                             "metrics": {"distinct_2": 0.7}}),
    ]


def test_each_track_is_ranked_by_its_own_measure():
    table = leaderboard_table(_records())
    word = table[(table["corpus"] == "brown") & (table["track"] == WORD)]
    assert list(word["model"]) == ["kn5", "lstm", "unigram", "bert"]
    assert list(word["rank"]) == [1, 2, 3, None]  # pseudo-likelihood: listed, not ranked
    bert = word.iloc[-1]
    assert pd.isna(bert["perplexity"]) and pd.isna(bert["bits/byte"])
    assert 2 < bert["pseudo-perplexity"] < 4 and bert["pseudo bits/byte"] > 0
    opened = table[(table["corpus"] == "brown") & (table["track"] == OPEN)]
    # by bits per byte: char7 has the lower per-token loss (1.5 < 3.0 nats), bpe4 fewer bits
    assert list(opened["model"]) == ["bpe4", "char7"]
    assert list(opened["rank"]) == [1, 2]


def test_markdown_keeps_published_rows_apart():
    records = _records()
    table = leaderboard_table(records)
    published = published_table(load_references(), sorted(set(table["corpus"])))
    text = markdown_report(table, published, ["x/bad.json: skipped"], "test")
    word_section = text.split("## brown: word track")[1].split("## brown: open")[0]
    measured, references = word_section.split("Published references")
    assert "kn5" in measured and "Bengio" not in measured and "KenLM" not in measured
    assert "Bengio MLP10" in references and "146.74" in references
    assert "Pseudo-perplexity" in word_section and "x/bad.json: skipped" in text
    assert "nanoGPT" in text.split("## tinyshakespeare")[1]


def test_csv_tells_measured_from_published():
    table = leaderboard_table(_records())
    published = published_table(load_references(), ["brown"])
    frame = pd.read_csv(io.StringIO(csv_report(table, published)))
    assert set(frame["kind"]) == {"measured", "published"}
    assert frame[frame["kind"] == "published"]["rank"].isna().all()
    assert len(frame[frame["kind"] == "measured"]) == len(_records())


def test_html_is_self_contained_and_escaped():
    references = load_references() + [Reference(corpus="tinyshakespeare", track="open",
                                                model="<img src=x onerror=alert(1)>",
                                                source="test", nats_per_token=2.0,
                                                tokens_per_byte=1.0)]
    benchmark_style = fake_run("shake-lstm", model="lstm", corpus="tinyshakespeare",
                               tokenizer="char", generation={"samples": [
                                   {"prompt": "JULIET:", "human": "O Romeo", "top-p 0.9": "<i>"}]})
    page = render_html(_records() + [benchmark_style], references, ["<bad>.json: skipped"])
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "gpt &lt;b&gt;baby&lt;/b&gt;" in page
    assert "&lt;bad&gt;.json" in page
    assert "top-p 0.9" in page and "O Romeo" in page and "<i>" not in page.split("<body>")[1]
    assert page.count("<svg") >= 5 and page.count("<table class='sortable") >= 4
    assert "published" in page and "training curves" in page
    for remote in ("http://", "https://", "src=\"//", "@import"):
        assert remote not in page.replace("http://www.w3.org", "")  # SVG namespaces only


def _cli(argv: list[str]) -> tuple[int, str, str]:
    """The subcommands as ``lmbench.cli.main.main`` runs them (exit 2 on ``LmbenchError``)."""
    parser = argparse.ArgumentParser(prog="lmbench")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            args.handler(args)
            status = 0
        except LmbenchError as error:
            print(f"lmbench: error: {error}", file=err)
            status = 2
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def results_dir(tmp_path):
    store = ResultStore(tmp_path / "runs")
    for record in _records():
        store.put(record)
    (tmp_path / "runs" / "broken.json").write_text("{")
    return tmp_path / "runs"


def test_leaderboard_command_in_every_format(results_dir, tmp_path):
    status, out, err = _cli(["leaderboard", str(results_dir)])
    assert status == 0 and "kn5" in out and "Bengio MLP10" in out
    assert "broken.json: skipped" in err
    status, out, _ = _cli(["leaderboard", str(results_dir), "--format", "csv",
                           "--no-published"])
    assert status == 0 and "published" not in set(pd.read_csv(io.StringIO(out))["kind"])
    status, _, err = _cli(["leaderboard", str(results_dir), "--out", str(tmp_path / "b.html")])
    assert status == 0 and (tmp_path / "b.html").read_text().startswith("<!DOCTYPE html>")
    status, _, err = _cli(["leaderboard", str(tmp_path / "nothing")])
    assert status == 2 and "results folder not found" in err
    bad = tmp_path / "published.toml"
    bad.write_text('[[reference]]\ncorpus = "brown"\ntrack = "word"\nmodel = "x"\n'
                   'source = "y"\nperplexitty = 3\n')
    status, _, err = _cli(["leaderboard", str(results_dir), "--published", str(bad)])
    assert status == 2 and "unknown key 'perplexitty'" in err


def test_compare_command(results_dir):
    status, out, _ = _cli(["compare", "brown-kn5", "brown-uni", "--results", str(results_dir),
                           "--n-bootstrap", "300"])
    assert status == 0 and "p-value" in out and "A is better" in out
    status, out, _ = _cli(["compare", str(results_dir / "brown-kn5"),
                           str(results_dir / "brown-uni" / "result.json"), "--json",
                           "--n-bootstrap", "300"])
    assert status == 0 and json.loads(out)["delta_perplexity"] < 0
    status, _, err = _cli(["compare", "brown-kn5", "brown-char", "--results", str(results_dir)])
    assert status == 2 and "--unpaired" in err
    status, _, err = _cli(["compare", "brown-kn5", "brown-kn6", "--results", str(results_dir)])
    assert status == 2 and "did you mean 'brown-kn5'" in err


def test_generation_results_reach_every_leaderboard_format(tmp_path):
    root = tmp_path / "runs"
    store = ResultStore(root)
    for record in _records():
        store.put(record)
    report = fake_generation_report({"brown-kn5": 0.8, "brown-lstm": 0.6}, "brown",
                                    sample='<script>alert("gen")</script> & </pre>')
    write_sidecar(root / "brown-kn5", "generation",
                  run_sidecar(report, "brown-kn5", "brown-kn5", "runs/brown_gen/kn5.npz"))
    write_sidecar(root / "brown-lstm", "generation",
                  run_sidecar(report, "brown-lstm", "brown-lstm"))
    (root / "brown-lstm" / "throughput.json").write_text(
        json.dumps(fake_throughput("brown-lstm", 1234.0)))
    (root / "brown-uni" / "generation.json").write_text("{")  # corrupt: named and skipped

    status, out, err = _cli(["leaderboard", str(root)])
    assert status == 0 and "brown-uni/generation.json: skipped" in err
    word = out.split("## brown: word track")[1].split("## brown: open")[0]
    header = word.splitlines()[2]
    for column in ("gen MAUVE", "gen judge PPL", "gen distinct-2", "gen seq-rep-4",
                   "gen decode tok/s", "decode tok/s"):
        assert f" {column} " in header
    (kn5,) = [line for line in word.splitlines() if "| kn5 " in line]
    assert all(cell in kn5 for cell in ("0.800", "34.00", "0.680", "0.020", "96"))
    (lstm,) = [line for line in word.splitlines() if "| lstm " in line]
    assert all(cell in lstm for cell in ("0.600", "38.00", "0.040", "1,234", "72"))
    assert "Generation columns:" in word
    assert "top-p 0.95, 10 prompts, judge kn5.npz (ngram): kn5" in word
    assert "top-p 0.95, 10 prompts, judge itself (ngram): lstm" in word
    assert "gen MAUVE" not in out.split("## brown: open")[1]

    status, out, _ = _cli(["leaderboard", str(root), "--format", "csv", "--no-published"])
    frame = pd.read_csv(io.StringIO(out)).set_index("run id")
    assert frame.loc["brown-kn5", "gen MAUVE"] == 0.8
    assert frame.loc["brown-kn5", "gen self_bleu_4"] == 0.3  # every metric in the CSV
    assert frame.loc["brown-kn5", "gen decoding"] == "top-p 0.95"
    assert frame.loc["brown-kn5", "gen judge"] == "kn5.npz (ngram)"
    assert frame.loc["brown-lstm", "decode tok/s"] == 1234.0
    assert pd.isna(frame.loc["brown-uni", "gen MAUVE"])

    status, _, _ = _cli(["leaderboard", str(root), "--out", str(tmp_path / "b.html")])
    page = (tmp_path / "b.html").read_text()
    assert status == 0 and ">gen MAUVE</th>" in page and ">gen judge PPL</th>" in page
    assert '<script>alert("gen")' not in page
    assert "&lt;script&gt;alert(&quot;gen&quot;)&lt;/script&gt; &amp; &lt;/pre&gt;" in page
    samples = page.split("<h3>Generation samples</h3>")[1].split("</table>")[0]
    assert ">kn5</th>" in samples and ">lstm</th>" in samples
    assert all(text in samples for text in ("the king", "said nothing", "top-p 0.95", "greedy"))


HOSTILE = ["<script>alert(1)</script>", "a|b||c", "two\nlines\r\nthree", "back\\slash|",
           "=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)", "&amp; <b>x</b>"]


def _cells(line: str) -> list[str]:
    """A Markdown table row split at its unescaped pipes (a backslash escapes the next char)."""
    cells, cell, escaped = [], "", False
    for char in line:
        if char == "|" and not escaped:
            cells.append(cell)
            cell = ""
        else:
            cell += char
        escaped = char == "\\" and not escaped
    return cells + [cell]


def _hostile_store(tmp_path):
    root = tmp_path / "runs"
    store = ResultStore(root)
    for i, label in enumerate(HOSTILE):
        store.put(fake_run(f"brown-h{i}", model=label, corpus="brown", nats_per_token=4.0 + i,
                           generation={"metrics": {"distinct_2": 0.5}}))
    store.put(fake_run("evil-1", model="kn5", corpus="ev|il<script>\ncorpus",
                       nats_per_token=-0.5))  # a negative number stays a number
    return root


def test_markdown_escapes_hostile_labels_in_every_cell(tmp_path):
    status, out, err = _cli(["leaderboard", str(_hostile_store(tmp_path)), "--no-published"])
    assert status == 0, err
    assert "<script>" not in out and "<b>" not in out
    tables, current = [], []
    for line in out.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert len(tables) == 2
    for table in tables:
        widths = {len(_cells(line)) for line in table}
        assert len(widths) == 1, table  # every row has the header's columns
    (evil,) = [line for line in out.splitlines() if line.startswith("## ev")]
    assert evil.startswith("## ev\\|il&lt;script&gt; corpus: ")
    brown = tables[0]
    models = [_cells(line)[2].strip() for line in brown[2:]]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in models and "a\\|b\\|\\|c" in models
    assert "two lines three" in models and "back\\\\slash\\|" in models
    assert "&amp;amp; &lt;b&gt;x&lt;/b&gt;" in models


def test_csv_defuses_formulas_but_keeps_numbers(tmp_path):
    status, out, _ = _cli(["leaderboard", str(_hostile_store(tmp_path)), "--format", "csv",
                           "--no-published"])
    assert status == 0
    frame = pd.read_csv(io.StringIO(out), dtype=str, keep_default_na=False)
    for value in frame.to_numpy().ravel():
        if value[:1] in ("=", "+", "-", "@"):
            float(value)  # only numbers may start so
    models = set(frame["model"])
    assert {"'=HYPERLINK(\"http://x\")", "'+1+2", "'-2+3", "'@SUM(A1)"} <= models
    assert "<script>alert(1)</script>" in models  # CSV is data: text is kept as it is
    numbers = pd.read_csv(io.StringIO(out)).set_index("run id")
    assert numbers.loc["evil-1", "bits/byte"] < 0  # negative, and still a number
    assert numbers["perplexity"].dtype == float


def _undertrained(run_id: str, model: str, steps: int):
    import dataclasses

    return dataclasses.replace(
        fake_run(run_id, model=model, corpus="brown"),
        config={"family": "lstm", "tokenizer": "word",
                "train": {"warmup_steps": 50, "max_steps": 100_000, "max_seconds": 45}},
        train_log={"steps": steps, "stopped_by": "max_seconds"})


def test_undertrained_rows_are_marked_with_a_footnote_and_csv_intervals_are_numbers():
    records = [*_records(), _undertrained("brown-lstm-x-0a1b2c", "lstm-45s", 13)]
    table = leaderboard_table(records)
    assert "lstm-45s ⚠ undertrained" in list(table["model"])
    text = markdown_report(table, published_table([]), [], "test")
    assert "lstm-45s ⚠ undertrained" in text
    assert "lstm-45s: 13 steps, fewer than its 50 warm-up steps (stopped by max_seconds)" in text
    assert text.count("⚠ undertrained:") == 1  # one footnote, under the brown word table
    frame = pd.read_csv(io.StringIO(csv_report(table, published_table([]))))
    assert "ppl 95% CI" not in frame.columns and "bpb 95% CI" not in frame.columns
    kn5 = frame[frame["model"] == "kn5"].iloc[0]
    assert kn5["ppl_ci_low"] < kn5["perplexity"] < kn5["ppl_ci_high"]
    assert frame["bpb_ci_low"].dtype.kind == "f"
    assert frame.set_index("model")["undertrained"].notna().sum() == 1


def test_rows_of_equal_labels_are_told_apart_by_their_run_id():
    records = [fake_run("brown-kn5-20261129-1-aaaaaa", model="kn5", corpus="brown"),
               fake_run("brown-kn5-20261129-2-bbbbbb", model="kn5", corpus="brown",
                        nats_per_token=2.5),
               fake_run("tiny-kn5", model="kn5")]
    labels = set(leaderboard_table(records)["model"])
    assert labels == {"kn5 [aaaaaa]", "kn5 [bbbbbb]", "kn5"}  # one corpus's repeats only


def test_a_family_note_is_printed_once_under_the_table_of_the_rows_it_explains(capsys):
    import dataclasses

    from lmbench.cli.main import main as cli_main

    base = fake_run("brown-wb-1", model="wb3", corpus="brown")
    wb3 = dataclasses.replace(base, config={**base.config, "family": "ngram",
                                            "smoothing": "witten-bell", "order": 3})
    wb4 = dataclasses.replace(wb3, run_id="brown-wb-2", model="wb4")
    kn = dataclasses.replace(wb3, run_id="brown-kn-1", model="kn3",
                             config={**wb3.config, "smoothing": "kneser-ney"})
    text = markdown_report(leaderboard_table([wb3, wb4, kn]), published_table([]), [], "test")
    assert text.count("Note: ngram smoothing=witten-bell: perplexity can rise with the order") == 1
    other = markdown_report(leaderboard_table([kn]), published_table([]), [], "test")
    assert "Note:" not in other
    assert cli_main(["models"]) == 0
    assert "note on smoothing=witten-bell: perplexity can rise" in capsys.readouterr().out
