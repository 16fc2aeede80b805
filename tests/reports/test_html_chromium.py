"""The HTML leaderboard in a real browser: headless Chromium loads the page from a file with the
network off, runs its script without a console message, and the tables and plots are in the
rendered DOM. Skipped where Chromium is absent, except under CI, which installs it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from run_factory import fake_run

from lmbench.reports.html import render_html
from lmbench.reports.published import load_references

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium not found; .ci/run installs Debian's chromium package")
    pytest.skip("chromium not installed (apt-get install -y chromium)")


def test_the_page_renders_in_headless_chromium_without_console_errors(tmp_path):
    browser = _browser()
    curve = [{"step": s, "seconds": s, "train_loss": 3.0 / s, "valid_loss": 3.1 / s}
             for s in (1, 2, 3)]
    records = [
        fake_run("brown-kn5", model="kn5", corpus="brown", nats_per_token=5.0),
        fake_run("brown-lstm", model="lstm", corpus="brown", nats_per_token=5.3, curve=curve),
        fake_run("brown-bert", model="bert", corpus="brown", nats_per_token=1.0, exact=False),
        fake_run("shake-gpt", model="gpt", corpus="tinyshakespeare", tokenizer="char",
                 nats_per_token=1.9, unk_rate=0, curve=curve,
                 generation={"samples": [{"prompt": "ROMEO:",
                                          "text": "</pre><script>document.title='pwned'"
                                                  "</script>"}]}),
    ]
    page = tmp_path / "leaderboard.html"
    page.write_text(render_html(records, load_references(), ["x.json: skipped"]),
                    encoding="utf-8")
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--no-default-browser-check", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    dom, log = done.stdout, done.stderr
    assert done.returncode == 0, log[-2000:]
    console = [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == [], console  # the page writes nothing to the console, errors included
    assert 'data-ready="1"' in dom  # the sorting script ran to its last line
    assert "pwned" not in re.findall(r"<title>(.*?)</title>", dom)[0]  # escaped, never run
    assert dom.count("<svg") >= 4 and 'class="sortable measured"' in dom
    assert 'class="sortable published"' in dom and "Bengio MLP10" in dom
    assert "Pseudo-perplexity" in dom and "Generation samples" in dom


_MEASURE = """<script>
(function () {
  var body = document.body, width = document.documentElement.clientWidth;
  var ids = Array.prototype.slice.call(document.querySelectorAll("td.id"));
  var oneLine = ids.every(function (cell) {
    var range = document.createRange();
    range.selectNodeContents(cell);
    return range.getClientRects().length === 1;
  });
  var samples = Array.prototype.slice.call(document.querySelectorAll(".sample"));
  var closed = samples.every(function (s) { var d = s.closest("details"); return d && !d.open; });
  body.setAttribute("data-viewport", String(width));
  body.setAttribute("data-scroll-width", String(document.documentElement.scrollWidth));
  body.setAttribute("data-ids", ids.length + (oneLine ? " one-line" : " wrapped"));
  body.setAttribute("data-samples", samples.length + (closed ? " closed" : " open"));
  body.setAttribute("data-page-height", String(document.documentElement.scrollHeight));
})();
</script>"""

LONG_TITLE = ("lmbench baselines on 2 CPU cores. Regenerate: lmbench leaderboard runs --out "
              "reports/leaderboard.html. Runs: lmbench run baselines/{brown [52 min 51 s], "
              "tinyshakespeare [13 min 37 s], quick [3 min 21 s]}.toml --data-dir ../shared "
              "--out runs/<name>; generation columns by benchmarks/generation_report.py "
              "--attach-to-runs (500 prompts; reports/generation_*.md)")


def _crowded_records():
    """Twenty word-track runs with long run ids, generation columns and long samples (the
    shape of the committed leaderboard's Brown section), plus a few open-track runs."""
    text = "the jury further said in term end presentments that the city executive " * 6
    records = []
    for i in range(20):
        generation = None
        if i % 3 == 0:
            generation = {
                "metrics": {"mauve": 0.5, "judge_perplexity": 40.0, "distinct_2": 0.6,
                            "seq_rep_4": 0.05, "self_bleu_4": 0.3, "decode_tokens_per_s": 900.0},
                "config": {"decoding": "top-p 0.95", "n_prompts": 500},
                "samples": [{"prompt": "the jury said", "human": text, "greedy": text,
                             "top-p 0.95": text} for _ in range(6)]}
        records.append(fake_run(f"brown-word-model-number-{i:02d}-20261201-120000-{i:06x}",
                                model=f"model {i}", corpus="brown", nats_per_token=5 + i / 40,
                                n_params=10**6 * (i + 1), fit_s=float(i), seed=i,
                                generation=generation))
    records += [fake_run(f"brown-open-{t}-20261201-120000-abcdef", model=f"gpt {t}",
                         corpus="brown", tokenizer=t, nats_per_token=1.5, unk_rate=0, seed=50)
                for t in ("char", "byte", "bpe")]
    return records


def test_the_page_fits_a_1400_px_window_with_samples_collapsed(tmp_path):
    browser = _browser()
    page = render_html(_crowded_records(), load_references(), [], title=LONG_TITLE,
                       command="lmbench leaderboard runs --out reports/leaderboard.html")
    path = tmp_path / "leaderboard.html"
    path.write_text(page.replace("</body>", _MEASURE + "\n</body>"), encoding="utf-8")
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
         "--window-size=1400,3000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         path.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    measured = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', dom.split("<body", 1)[1][:2000]))
    assert measured["viewport"] == "1400"
    assert int(measured["scroll-width"]) <= 1400  # wide tables scroll inside their own box
    assert measured["ids"] == "23 one-line"  # no run id squeezed onto several lines
    assert measured["samples"] == "42 closed"  # 7 runs x 6 samples, all in closed <details>
    assert int(measured["page-height"]) < 6000
    title = re.findall(r"<title>(.*?)</title>", dom)[0]
    assert title == "lmbench baselines on 2 CPU cores" and len(title) <= 70
    provenance = dom.split('<details class="provenance">', 1)[1].split("</details>", 1)[0]
    assert "Regenerate: lmbench leaderboard runs" in provenance
    assert "lmbench leaderboard runs --out reports/leaderboard.html" in provenance
