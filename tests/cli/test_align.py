"""``lmbench align``: pipeline files checked before anything trains (one line, exit 2, nothing
written), and a tiny pipeline on real data whose every stage is an ordinary record."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from lmbench.cli.main import main

BASE = ('[base]\nfamily = "gpt"\noptions = { n_layer = 1, n_head = 2, n_embd = 16, '
        'block_size = 48, tokenizer = "char", train = { batch_size = 8, seq_len = 48, '
        'max_steps = 3, warmup_steps = 1, progress = false, bf16 = false } }\n')
TASK = ('[task]\nkind = "verifiable"\nn_train = 40\nn_held_out = 5\ntrain_lengths = [1]\n'
        'held_out_lengths = [1, 2]\nmax_new_tokens = 4\n')


def _write(tmp_path, stages: str, head: str = 'name = "p"\n', task: str = TASK,
           base: str = BASE):
    path = tmp_path / "pipeline.toml"
    path.write_text(head + task + base + stages, encoding="utf-8")
    return path


def _pairs(tmp_path, *records):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


SFT = '[[stages]]\nname = "sft"\nmethod = "sft"\ntrain = { max_steps = 2 }\n'


@pytest.mark.parametrize("stages, message", [
    ('[[stages]]\nname = "x"\nmethod = "rlhf"\n', "method must be one of sft, dpo"),
    ('[[stages]]\nname = "x"\nmethod = "sft"\nstart = "later"\n',
     "start 'later' is no earlier stage"),
    ('[[stages]]\nname = "x"\nmethod = "grpo"\n', "reward must be one of verifier"),
    ('[[stages]]\nname = "x"\nmethod = "grpo"\nreward = "verifier"\n'
     'options = { group_size = 1 }\n', "group_size must be >= 2"),
    ('[[stages]]\nname = "x"\nmethod = "grpo"\nreward = "verifier"\n'
     'options = { group_size = 2, kl_coef = -0.1 }\n', "kl_coef must be >= 0"),
    ('[[stages]]\nname = "x"\nmethod = "dpo"\n', "a dpo stage needs a pairs table"),
    ('[[stages]]\nname = "x"\nmethod = "dpo"\npairs = { path = "pairs.jsonl" }\n'
     'options = { beta = -1.0 }\n', "dpo.beta must be > 0"),
    ('[[stages]]\nname = "x"\nmethod = "sft"\ntrain = { max_step = 3 }\n',
     "stages\\[0\\].train: unknown key 'max_step'"),
    ('[[stages]]\nname = "x"\nmethod = "sft"\nlearning_rate = 0.1\n',
     "stages\\[0\\]: unknown key 'learning_rate'"),
    (SFT + '[[stages]]\nname = "sft"\nmethod = "sft"\n', "already has this name"),
    ('[[stages]]\nname = "x"\nmethod = "sft"\ndata = "pairs.jsonl"\n',
     "holds preference pairs; an sft stage reads prompt/response examples"),
])
def test_bad_pipelines_are_refused_before_training(tmp_path, capsys, stages, message):
    _pairs(tmp_path, {"prompt": "p", "chosen": "a", "rejected": "b"})
    path = _write(tmp_path, stages)
    out = tmp_path / "out"
    assert main(["align", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lmbench: error: ") and "\n" not in error
    assert str(path) in error
    assert re.search(message, error), error
    assert not out.exists()


def test_bad_preference_file_names_the_file_line_and_field(tmp_path, capsys):
    pairs = _pairs(tmp_path, {"prompt": "p", "chosen": "a", "rejected": "b"},
                   {"prompt": "p", "chosen": "same", "rejected": "same"})
    path = _write(tmp_path, '[[stages]]\nname = "x"\nmethod = "dpo"\n'
                            'pairs = { path = "pairs.jsonl" }\n')
    assert main(["align", str(path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"{pairs}:2: field 'rejected' equals 'chosen'" in error
    assert not (tmp_path / "out").exists()


def test_missing_keys_and_files(tmp_path, capsys):
    assert main(["align", str(tmp_path / "none.toml")]) == 2
    assert "pipeline file not found" in capsys.readouterr().err
    path = _write(tmp_path, "", base="")
    assert main(["align", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "missing key 'base'" in capsys.readouterr().err
    path = _write(tmp_path, SFT, base='[base]\npath = "nope.npz"\n')
    assert main(["align", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "model file not found" in capsys.readouterr().err


SENTIMENT = '''name = "tiny"
[task]
kind = "sentiment"
n_eval_prompts = 6
n_demonstrations = 16
record_reviews = 1
max_new_tokens = 6
[base]
family = "gpt"
[base.options]
n_layer = 1
n_head = 2
n_embd = 16
block_size = 48
tokenizer = "char"
train = { batch_size = 4, seq_len = 48, max_steps = 2, warmup_steps = 1, progress = false }
[[stages]]
name = "sft"
method = "sft"
train = { max_steps = 2, batch_size = 4 }
[[stages]]
name = "rm"
method = "reward"
pairs = { labeller = "gold", n = 8 }
curve = [4]
n_held_out_pairs = 6
train = { max_steps = 2, batch_size = 4 }
[[stages]]
name = "bon"
method = "best-of-n"
reward = "rm"
n = [1, 2]
[[stages]]
name = "dpo-rlaif"
method = "dpo"
pairs = { labeller = "ai", n = 6 }
train = { max_steps = 2, batch_size = 4 }
[[stages]]
name = "grpo"
method = "ppo"
start = "sft"
reward = "rm"
n_prompts = 8
options = { steps = 2, prompts_per_step = 2, epochs = 1 }
'''


@pytest.mark.slow
def test_a_tiny_sentiment_pipeline_on_real_data(tmp_path, data_dir, capsys):
    from lmbench.alignment.preferences import load_preferences
    from lmbench.storage.store import ResultStore

    path = tmp_path / "tiny.toml"
    path.write_text(SENTIMENT, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["align", str(path), "--out", str(out), "--data-dir", str(data_dir)]) == 0
    records = {r.model: r for r in ResultStore(out).records()}
    assert set(records) == {"tiny-base", "tiny-sft", "tiny-dpo-rlaif", "tiny-grpo"}
    summaries = json.loads((out / ".align/tiny/pipeline.json").read_text())["stages"]
    assert list(summaries) == ["base", "sft", "rm", "bon", "dpo-rlaif", "grpo"]
    assert [c["n_pairs"] for c in summaries["rm"]["curve"]][0] == 4
    assert 0 <= summaries["rm"]["pairwise_accuracy"] <= 1
    assert summaries["dpo-rlaif"]["start"] == "sft" and summaries["grpo"]["start"] == "sft"
    for name in ("sft", "dpo-rlaif", "grpo"):
        metrics = summaries[name]["metrics"]
        assert 0 <= metrics["gold_positive_rate"] <= 1 and metrics["kl_nats"] > -1.0
        assert (out / records[f"tiny-{name}"].run_id / "model.npz").is_file()
    assert [p["n"] for p in summaries["bon"]["points"]] == [1, 2]
    assert 0 <= summaries["dpo-rlaif"]["judge_gold_agreement"] <= 1
    assert load_preferences(summaries["dpo-rlaif"]["pairs_path"])
    generated = out / records["tiny-grpo"].run_id / "model.npz"
    assert main(["generate", str(generated), "the film", "--max-new-tokens", "5"]) == 0
    assert main(["leaderboard", str(out)]) == 0
    assert "tiny-grpo" in capsys.readouterr().out
    # the same file again: every stage is reused, nothing retrains
    assert main(["align", str(path), "--out", str(out), "--data-dir", str(data_dir)]) == 0
    assert len(ResultStore(out).records()) == 4
    # the report reads every stage: frontier at matched KL, RM and judge accuracy by margin
    report = _report_script()
    assert report.main(["--runs", str(out), "--data-dir", str(data_dir), "--out",
                        str(tmp_path / "report"), "--sentiment", "tiny", "--n-prompts", "4",
                        "--max-new-tokens", "6"]) == 0
    payload = json.loads((tmp_path / "report.json").read_text())["sentiment"]
    matched = payload["matched_kl"]
    assert set(matched) == {"best-of-N (rm)", "dpo (ai pairs)", "ppo (rm)"}
    assert matched["best-of-N (rm)"]["0.5"] is None or 0 <= matched["best-of-N (rm)"]["0.5"] <= 1
    bins = payload["reward_accuracy_by_gold_margin"]["rm"]
    assert bins[-1]["margin"] == "all" and sum(b["n_pairs"] for b in bins[:-1]) == bins[-1][
        "n_pairs"]
    assert payload["judge_agreement_by_gold_margin"]["dpo-rlaif"][-1]["n_pairs"] <= 6
    assert "matched distance" in (tmp_path / "report.md").read_text()


def _report_script():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "alignment_report.py"
    spec = importlib.util.spec_from_file_location("alignment_report", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["alignment_report"] = module
    spec.loader.exec_module(module)
    return module
