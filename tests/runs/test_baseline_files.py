"""Every committed run file under baselines/ loads and validates, sweeps included, before anything
trains (a run file that fails only once the machine reaches it costs hours)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmbench.alignment.pipeline import load_pipeline
from lmbench.runs.config import load_config
from lmbench.runs.sweep import trials

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
BASELINES = ROOT / "baselines"
PIPELINES = sorted(BASELINES.glob("align_*.toml"))  # lmbench align files, not run files
RUN_FILES = sorted(p for p in BASELINES.glob("*.toml")
                   if p.name != "published.toml" and p not in PIPELINES)


@pytest.mark.parametrize("path", RUN_FILES, ids=[p.name for p in RUN_FILES])
def test_run_file_validates(path, monkeypatch):
    inits = {table["init"] for table in tomllib.loads(path.read_text())["models"]
             if "init" in table}
    missing = sorted(init for init in inits if not (ROOT / init).is_file())
    if missing:  # a fine-tuning file needs the base its comment says how to make
        pytest.skip(f"{path.name} adapts {missing[0]}, made by the run file its header names")
    monkeypatch.chdir(ROOT)  # init paths are relative to the repository root
    config = load_config(path)
    assert config.models


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_pipeline_file_validates(path):
    config = load_pipeline(path)
    assert config.stages


@pytest.mark.parametrize("name", ["ladder_brown.toml", "ladder_tinyshakespeare.toml"])
def test_ladders_give_every_family_two_swept_rungs_and_three_long_runs(name):
    """60 s rungs of about six trials, 300 s rungs of about three, per family (more where a grid
    was widened at its edge: one learning rate more at 300 s; at 60 s one per width, up to
    three times); 1,200 s for gpt, lstm and one more; n-gram sweeps over orders; selection on
    valid."""
    config = load_config(BASELINES / name)
    assert "valid" in config.splits
    rungs: dict[float, dict[str, int]] = {}
    ngram_trials = 0
    for spec in config.models:
        n = len(trials(spec.sweep)) if spec.sweep else 1
        if spec.family == "ngram":
            ngram_trials += n
            continue
        seconds = spec.options["train"]["max_seconds"]
        assert spec.label == f"{spec.family}-{seconds}s"  # the ladder view's series naming
        rungs.setdefault(seconds, {})[spec.family] = n
    families = {"nplm", "rnn", "lstm", "gru", "gpt", "moe", "seq2seq", "bert"}
    assert set(rungs[60]) == set(rungs[300]) == families
    assert all(5 <= n <= 12 for n in rungs[60].values())
    assert all(3 <= n <= 4 for n in rungs[300].values())
    assert {"gpt", "lstm"} < set(rungs[1200]) and len(rungs[1200]) == 3
    assert ngram_trials >= 10
