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
