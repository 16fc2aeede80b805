"""Brown word track: a trained LSTM, plus a continuous cache, plus KN-5 interpolation.

    lmbench run baselines/brown_lstm.toml --data-dir ../shared --out runs/brown_lstm --save-models
    python benchmarks/brown_cache_mixture.py --data-dir ../shared \
        --lstm-file runs/brown_lstm/<lstm run id>/model.npz --store runs/brown_lstm \
        --out reports/brown_lstm

Starting from the saved LSTM (trained by the run file above, 20 minutes on 2 cores), it

1. tunes the continuous cache (Grave et al. 2017: window ``cache_size``, flatness θ, weight λ)
   on the first ``--tune-tokens`` tokens of the *valid* split by grid search, as the paper does;
2. estimates the interpolation weights of LSTM + KN-5 and LSTM-with-cache + KN-5 by EM on the
   whole valid split (``lmbench.combinators.interpolation``);
3. scores every combination on valid and test with the ordinary evaluator and writes each as a
   run record into ``--store`` (so ``lmbench leaderboard`` ranks them beside the plain models),
   and a Markdown + JSON table to ``--out``.

The test split is never used for a choice. KN-5 (modified Kneser-Ney, order 5) is fitted here on
the same train split and vocabulary, in about a second.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

import lmbench
from lmbench.combinators.interpolation import InterpolatedLM
from lmbench.core.io import write_json_atomic, write_text_atomic
from lmbench.core.results import environment
from lmbench.data.corpora import load_corpus
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.models import load_model
from lmbench.runs.runner import record_run

CACHE_SIZES = (500, 2000)
THETAS = (0.1, 0.3)
LAMBDAS = (0.1, 0.2, 0.3)


def _settings(config: dict) -> str:
    """The cache and mixture settings of a row, as the table shows them."""
    shown = []
    if config.get("cache_size"):
        shown.append(f"cache {config['cache_size']} pairs, θ={config['cache_theta']}, "
                     f"λ={config['cache_lambda']}")
    if config.get("weights"):
        shown.append("EM weights " + " / ".join(f"{w:.3f}" for w in config["weights"]))
    return "; ".join(shown)


def render(payload: dict) -> str:
    """The Markdown report of a ``<out>.json`` payload."""
    rows, grid = payload["rows"], payload["cache_grid"]
    kn5_test = next(r["test_ppl"] for r in rows if r["model"] == "kn5")
    lines = [
        "# Brown word track: LSTM, continuous cache and KN-5 interpolation", "",
        f"Command: `{payload['command']}` ({payload['wall_s'] / 60:.1f} min on this machine), "
        "after `lmbench run baselines/brown_lstm.toml --data-dir ../shared --out runs/brown_lstm "
        "--save-models`.", "",
        "Closed-vocabulary word track (Bengio et al. 2003 split, words seen at most 3 times in "
        "train -> `<unk>`, `</s>` predicted and counted). Every choice (cache window, θ, λ; "
        "mixture weights by EM) was made on the valid split; test was scored only for this "
        "table. Train s: the LSTM's 20-minute budget (plus KN-5's fit for the mixtures).", "",
        "| model | params | train s | valid PPL | test PPL | test 95% CI | test / KN-5 "
        "| settings |",
        "|---|---:|---:|---:|---:|---|---:|---|"]
    for row in rows:
        ci = f"{row['test_ci'][0]:.2f}-{row['test_ci'][1]:.2f}"
        lines.append(f"| {row['model']} | {row['params']:,} | {row['train_s']:.0f} | "
                     f"{row['valid_ppl']:.2f} | {row['test_ppl']:.2f} | {ci} | "
                     f"{row['test_ppl'] / kn5_test:.3f} | {_settings(row['config'])} |")
    lines += ["", f"Cache grid on the first {payload['tune_tokens']:,} valid tokens (plain "
              f"LSTM: {payload['plain_valid_head_ppl']:.2f}):", "",
              "| cache_size | θ | λ | PPL |", "|---:|---:|---:|---:|"]
    lines += [f"| {g['cache_size']} | {g['theta']} | {g['lambda']} | {g['valid_head_ppl']:.2f} |"
              for g in grid]
    best = min(grid, key=lambda g: g["valid_head_ppl"])
    for name, key in (("θ", "theta"), ("λ", "lambda"), ("cache_size", "cache_size")):
        values = sorted({g[key] for g in grid})
        if best[key] in (values[0], values[-1]) and len(values) > 1:
            lines += ["", f"The chosen {name} = {best[key]} is at the edge of the grid; a wider "
                      "grid may find a better cache."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lstm-file", help="the LSTM's model.npz")
    parser.add_argument("--data-dir")
    parser.add_argument("--store", help="results folder for the run records")
    parser.add_argument("--out", required=True, help="report path without suffix")
    parser.add_argument("--tune-tokens", type=int, default=30_000)
    parser.add_argument("--render", metavar="JSON", help="only rewrite <out>.md from a "
                        "<out>.json this script wrote")
    args = parser.parse_args(argv)
    if args.render:
        payload = json.loads(Path(args.render).read_text(encoding="utf-8"))
        write_text_atomic(Path(args.out).with_suffix(".md"), render(payload))
        return 0
    if not (args.lstm_file and args.store):
        parser.error("--lstm-file and --store are required (unless --render)")
    started = time.perf_counter()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)

    corpus = load_corpus("brown", args.data_dir)
    lstm = load_model(args.lstm_file)
    lstm_train_s = (lstm.training_log() or {}).get("seconds", 0.0)
    t0 = time.perf_counter()
    kn5 = lmbench.build_model("ngram", order=5, smoothing="modified-kneser-ney").fit(corpus)
    kn5_fit_s = time.perf_counter() - t0
    eval_config = EvalConfig(window_len=2048, progress=False)
    valid_ids = lstm.tokenizer.encode_split(corpus.split("valid"))

    # 1. the cache, tuned on the head of the valid split
    tune_ids = valid_ids[: args.tune_tokens]
    grid = []
    for size, theta, lam in itertools.product(CACHE_SIZES, THETAS, LAMBDAS):
        nll = score_stream(lstm.with_cache(size, theta, lam), tune_ids, eval_config).mean()
        grid.append({"cache_size": size, "theta": theta, "lambda": lam,
                     "valid_head_ppl": float(np.exp(nll))})
        print(f"cache {size} theta {theta} lambda {lam}: {np.exp(nll):.2f}", flush=True)
    plain_head = float(np.exp(score_stream(lstm, tune_ids, eval_config).mean()))
    best = min(grid, key=lambda g: g["valid_head_ppl"])
    cached = lstm.with_cache(best["cache_size"], best["theta"], best["lambda"])

    # 2. interpolation weights by EM on the whole valid split
    with_kn5 = InterpolatedLM.of([lstm, kn5])
    with_kn5.fit_weights(valid_ids)
    cached_with_kn5 = InterpolatedLM.of([cached, kn5])
    cached_with_kn5.fit_weights(valid_ids)

    # 3. score and record
    rows = []
    # The plain LSTM and KN-5 already have records from the run file; the three
    # combinations get their own, so the leaderboard ranks them beside the plain models.
    for label, model, fit_s, new_record in [
            ("lstm-2x512-adaptive", lstm, lstm_train_s, False),
            ("lstm-2x512-adaptive+cache", cached, lstm_train_s, True),
            ("lstm-2x512-adaptive+kn5", with_kn5, lstm_train_s + kn5_fit_s, True),
            ("lstm-2x512-adaptive+cache+kn5", cached_with_kn5, lstm_train_s + kn5_fit_s, True),
            ("kn5", kn5, kn5_fit_s, False)]:
        if new_record:
            record = record_run(model, corpus, args.store, label=label,
                                splits=("valid", "test"), eval_config=eval_config, fit_s=fit_s)
            metrics, run_id, config = record.metrics, record.run_id, record.config
        else:
            metrics = {split: lmbench.evaluate(model, corpus, split, eval_config)
                       for split in ("valid", "test")}
            run_id, config = None, model.config()
        test, valid = metrics["test"], metrics["valid"]
        rows.append({"model": label, "run_id": run_id, "params": int(model.n_params()),
                     "train_s": fit_s, "valid_ppl": valid.perplexity,
                     "test_ppl": test.perplexity, "test_ci": list(test.perplexity_ci95),
                     "score_tokens_per_s": test.tokens_per_s,
                     "config": {k: v for k, v in config.items()
                                if k in ("cache_size", "cache_theta", "cache_lambda", "weights")}})
        print(f"{label}: valid {valid.perplexity:.2f} test {test.perplexity:.2f}", flush=True)

    payload = {"command": command, "wall_s": time.perf_counter() - started, "rows": rows,
               "cache_grid": grid, "tune_tokens": len(tune_ids),
               "plain_valid_head_ppl": plain_head, "env": environment()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out.with_suffix(".json"), payload)
    write_text_atomic(out.with_suffix(".md"), render(payload))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
