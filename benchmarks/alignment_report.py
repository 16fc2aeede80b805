"""The post-training report (issue 13): reports/alignment.md + .json + an SVG frontier plot, from
the stage summaries ``lmbench align`` wrote, plus the judges' accuracies and gold win rates
measured here.

    lmbench align baselines/align_addition.toml --out runs/align
    lmbench align baselines/align_sentiment.toml --out runs/align
    python benchmarks/alignment_report.py --runs runs/align --data-dir ../shared

What it measures itself (everything else is read from ``<runs>/.align/<pipeline>/*.json``):

- the gold classifier's accuracy on the 211 test reviews, and the AI judge's (the sign of its
  log-odds on each whole review), with no training on test;
- gold win rates: for each pair of sentiment policies (SFT, the RLHF and the RLAIF DPO
  policies, GRPO / PPO), one continuation per evaluation prompt from each, drawn with the seeds
  the pipeline measured them with; policy A wins a prompt when P_gold(positive) of its
  continuation is larger (ties count one half). Samples side by side come from the same draws.

Quality figures here come from step budgets, so they are the same under any machine load.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lmbench.alignment.judges import fit_gold_judge, fit_likelihood_ratio_judge
from lmbench.alignment.pipeline import SUMMARY_FOLDER
from lmbench.alignment.preferences import load_preferences
from lmbench.alignment.reward import RewardModel
from lmbench.alignment.task_eval import sample_continuations
from lmbench.core.io import write_json_atomic, write_text_atomic
from lmbench.data.reviews import labelled_texts, review_prompts
from lmbench.models.catalog import load_model

POLICY_METHODS = ("base", "sft", "dpo", "ipo", "ppo", "grpo")


def _stages(runs: Path, name: str) -> dict[str, dict]:
    folder = runs / SUMMARY_FOLDER / name
    if not folder.is_dir():
        return {}
    stages = {}
    for path in sorted(folder.glob("*.json")):
        if path.name != "pipeline.json":
            stages[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    whole = folder / "pipeline.json"
    if whole.is_file():  # the pipeline's own order
        order = list(json.loads(whole.read_text(encoding="utf-8"))["stages"])
        stages = {k: stages[k] for k in order if k in stages} | stages
    return stages


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _verifiable_section(stages: dict[str, dict]) -> tuple[list[str], dict]:
    lines = ["## Verifiable task: n-digit addition", ""]
    if not stages:
        return lines + ["Not run.", ""], {}
    keys = sorted({k for s in stages.values() for k in (s.get("metrics") or {})
                   if k.startswith("exact_match")})
    lines += ["| stage | method | start | " + " | ".join(keys) + " | steps |",
              "|---" * (len(keys) + 4) + "|"]
    for s in stages.values():
        metrics = s.get("metrics") or {}
        steps = (s.get("train_log") or {}).get("steps", "-")
        lines.append(f"| {s['stage']} | {s['method']} | {s.get('start', '-')} | " + " | ".join(
            _fmt(metrics.get(k)) for k in keys) + f" | {steps} |")
    samples = next((s["samples"] for s in stages.values() if s["stage"] == "sft"), [])
    if samples:
        lines += ["", "SFT samples (greedy):", "", "| prompt | answer | model |", "|---|---|---|"]
        lines += [f"| {x['prompt']!r} | {x.get('answer', '')} | {x['text']!r} |"
                  for x in samples[:6]]
    return lines + [""], {k: s.get("metrics") for k, s in stages.items()}


def _win_rates(stages: dict[str, dict], runs: Path, data_dir, gold, n_prompts: int,
               max_new_tokens: int, seed: int, only: Sequence[str] | None = None
               ) -> tuple[dict, dict]:
    policies = {k: s for k, s in stages.items() if s["method"] in POLICY_METHODS
                and s.get("model_path") and (only is None or k in only)}
    prompts = review_prompts("test", 5, data_dir=data_dir, limit=n_prompts)
    scores, texts = {}, {}
    for name, summary in policies.items():
        model = load_model(summary["model_path"])
        drawn = sample_continuations(model, prompts, max_new_tokens=max_new_tokens, seed=seed)
        texts[name] = list(drawn.texts)
        scores[name] = gold.positive_probability(texts[name])
    rates = {}
    for a in scores:
        for b in scores:
            if a != b:
                wins = (scores[a] > scores[b]).mean() + 0.5 * (scores[a] == scores[b]).mean()
                rates[f"{a} vs {b}"] = float(wins)
    side = [{"prompt": p, **{n: texts[n][i] for n in texts}} for i, p in enumerate(prompts[:6])]
    return rates, {"samples": side, "gold_scores": {n: s.tolist() for n, s in scores.items()}}


GOLD_MARGIN_BINS = (0.0, 0.05, 0.1, 0.2, 1.01)


def _accuracy_by_gold_margin(summary: dict, start_path: str, gold, data_dir, *,
                             max_new_tokens: int, seed: int) -> list[dict]:
    """The reward model's held-out pairwise accuracy, binned by how far apart the gold judge
    puts the two responses: the pipeline's held-out pairs (``_held_out_pairs``: two draws per
    test prompt from the start model, seed + 29) drawn again and scored by both."""
    policy = load_model(start_path)
    reward = RewardModel.load(summary["reward_model_path"])
    prompts = review_prompts("test", 5, data_dir=data_dir)[-summary["held_out_pairs"]:]
    drawn = sample_continuations(policy, prompts, max_new_tokens=max_new_tokens, n_per_prompt=2,
                                 seed=seed + 29)
    first, second = list(drawn.texts[0::2]), list(drawn.texts[1::2])
    gold_gap = gold.positive_probability(first) - gold.positive_probability(second)  # (N,)
    reward_gap = (reward.score_texts(prompts, first)
                  - reward.score_texts(prompts, second)).numpy()  # (N,)
    kept = gold_gap != 0
    return _margin_bins((np.sign(reward_gap) == np.sign(gold_gap))[kept],
                        np.abs(gold_gap)[kept])


def _measure_proxies(stages: dict[str, dict], data_dir, gold, *, n_prompts: int,
                     max_new_tokens: int, seed: int) -> None:
    """Fill in ``proxy_reward_mean`` of each PPO / GRPO stage: the stage's own training reward
    (the gold, the AI judge's log-odds or a reward stage's model) on the continuations its
    metrics were measured on (the same prompts and seed as ``lmbench align``'s measurement)."""
    prompts = review_prompts("test", 5, data_dir=data_dir, limit=n_prompts)
    judge = None
    for s in stages.values():
        metrics = s.get("metrics")
        if s["method"] not in ("ppo", "grpo") or not metrics or not s.get("model_path"):
            continue
        drawn = sample_continuations(load_model(s["model_path"]), prompts,
                                     max_new_tokens=max_new_tokens, seed=seed)
        texts = list(drawn.texts)
        if s["reward"] == "gold":
            rewards = gold.positive_probability(texts)
        elif s["reward"] == "ai":
            judge = judge or fit_likelihood_ratio_judge(data_dir)
            rewards = [float(judge.log_odds(p, [x])[0]) for p, x in zip(prompts, texts)]
        else:
            model = RewardModel.load(stages[s["reward"]]["reward_model_path"])
            rewards = model.score_texts(prompts, texts).numpy()
        metrics["proxy_reward_mean"] = float(np.mean(rewards))


def _margin_bins(right: np.ndarray, margin: np.ndarray) -> list[dict]:
    """Accuracy of ``right`` (N,) bools within each ``GOLD_MARGIN_BINS`` range of ``margin``."""
    bins = []
    for low, high in zip(GOLD_MARGIN_BINS, GOLD_MARGIN_BINS[1:]):
        inside = (margin >= low) & (margin < high)
        bins.append({"margin": f"{low:.2f}-{min(high, 1.0):.2f}", "n_pairs": int(inside.sum()),
                     "accuracy": float(right[inside].mean()) if inside.any() else None})
    bins.append({"margin": "all", "n_pairs": int(len(right)),
                 "accuracy": float(right.mean()) if len(right) else None})
    return bins


def _judge_agreement_by_gold_margin(pairs_path: str, gold) -> list[dict]:
    """How often the AI judge's chosen response is also the gold judge's, by gold margin (gold
    ties left out), from a stage's labelled pairs file."""
    pairs = load_preferences(pairs_path)
    gap = (gold.positive_probability([p.chosen for p in pairs])
           - gold.positive_probability([p.rejected for p in pairs]))  # (N,)
    kept = gap != 0
    return _margin_bins((gap > 0)[kept], np.abs(gap)[kept])


def _curve_name(summary: dict) -> str:
    """One frontier curve per method and feedback source: DPO stages at several betas share
    one, as do an RL method's stages with the same reward (a zero KL coefficient apart)."""
    method = summary["method"]
    if method in ("dpo", "ipo"):
        return f"{method} ({summary.get('labeller', '?')} pairs)"
    no_kl = (summary.get("options") or {}).get("kl_coef") == 0
    return f"{method} ({summary.get('reward', '?')}{', no KL' if no_kl else ''})"


MATCHED_SQRT_KL = (0.5, 1.0, 1.5, 2.0, 3.0)


def _matched_kl(points: dict[str, list[tuple[float, float, float | None]]],
                start_gold: float) -> tuple[list[str], dict]:
    """Gold mean of each curve at matched sqrt(KL) (Gao et al. 2022's frontier read at fixed
    distances from the start policy): linear interpolation in sqrt(KL) between the curve's
    measured points, starting from the SFT policy itself (KL 0) for the trained methods (a
    best-of-N curve starts at its own N = 1). A distance beyond a curve's last point is left
    blank: nothing is extrapolated."""
    table = {}
    for name, curve in points.items():
        measured = sorted((x, g) for x, g, _ in curve)
        if not name.startswith("best-of-N"):
            measured = [(0.0, start_gold), *measured]
        xs, golds = [x for x, _ in measured], [g for _, g in measured]
        table[name] = {str(k): (float(np.interp(k, xs, golds)) if xs[0] <= k <= xs[-1]
                                else None) for k in MATCHED_SQRT_KL}
    lines = ["Gold mean at matched distance from the SFT policy (linear interpolation in "
             "sqrt KL between measured points, the SFT policy being the trained methods' KL-0 "
             "point; '-' beyond a curve's last point):", "",
             "| curve | " + " | ".join(f"sqrt KL = {k}" for k in MATCHED_SQRT_KL) + " |",
             "|---" * (len(MATCHED_SQRT_KL) + 1) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row[str(k)]) for k in MATCHED_SQRT_KL)
                     + " |")
    return lines + [""], table


def _frontier_svg(points: dict[str, list[tuple[float, float, float | None]]]) -> str:
    """Gold score (solid) and proxy reward (dashed, right axis) against sqrt(KL)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    proxy_ax = ax.twinx()
    for name, values in points.items():
        values = sorted(values)
        xs = [v[0] for v in values]
        line = ax.plot(xs, [v[1] for v in values], "o-", label=f"{name}: gold")[0]
        if any(v[2] is not None for v in values):
            proxy_ax.plot(xs, [v[2] for v in values], "s--", color=line.get_color(), alpha=0.6,
                          label=f"{name}: proxy")
    ax.set_xlabel("sqrt(KL(pi || pi_ref)) (sqrt nats)")
    ax.set_ylabel("gold score: mean P(positive)")
    proxy_ax.set_ylabel("proxy reward (dashed)")
    ax.legend(loc="upper left", fontsize=7)
    proxy_ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    buffer = io.StringIO()
    fig.tight_layout()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    return buffer.getvalue()


def _sentiment_section(stages: dict[str, dict], runs: Path, data_dir, out: Path, *,
                       n_prompts: int, max_new_tokens: int, seed: int,
                       win_rate_stages: Sequence[str] | None = None) -> tuple[list[str], dict]:
    lines = ["## Sentiment-steered continuation (movie_reviews)", ""]
    gold = fit_gold_judge(data_dir)
    texts, labels = labelled_texts("test", data_dir)
    gold_accuracy = gold.accuracy(texts, labels)
    judge = fit_likelihood_ratio_judge(data_dir)
    judge_right = [(judge.log_odds("", [" ".join(t.split())])[0] > 0) == bool(y)
                   for t, y in zip(texts, labels)]
    payload: dict = {"gold_accuracy_test_reviews": gold_accuracy,
                     "ai_judge_accuracy_test_reviews": float(np.mean(judge_right))}
    lines += [f"- Gold classifier (TF-IDF 1-2-grams + logistic regression, C = 10, all 1,604 "
              f"train reviews' labels): **{gold_accuracy:.1%}** accuracy on the 211 test "
              "reviews.",
              f"- AI judge (likelihood ratio of two KN-3 word models on sentence_polarity's "
              f"5,331 + 5,331 snippets; no movie_reviews label): {np.mean(judge_right):.1%} on "
              "the same reviews (sign of its log-odds).", ""]
    if not stages:
        return lines + ["The pipeline was not run.", ""], payload
    _measure_proxies(stages, data_dir, gold, n_prompts=n_prompts, max_new_tokens=max_new_tokens,
                     seed=seed)
    lines += ["Proxy: the reward a PPO / GRPO stage trained on (gold P(positive), the AI "
              "judge's log-odds, or the reward model's score), on the continuations its other "
              "columns were measured on; KL is to the stage's start model.", ""]
    lines += ["| stage | method | start | gold mean | gold-positive | proxy | KL (nats) | "
              "sqrt KL | ref. PPL | distinct-2 |", "|---" * 10 + "|"]
    for s in stages.values():
        if s["method"] == "reward" or s["method"] == "best-of-n":
            continue
        m = s.get("metrics") or {}
        lines.append(f"| {s['stage']} | {s['method']} | {s.get('start', '-')} | "
                     f"{_fmt(m.get('gold_mean'))} | {_fmt(m.get('gold_positive_rate'))} | "
                     f"{_fmt(m.get('proxy_reward_mean'))} | {_fmt(m.get('kl_nats'))} | "
                     f"{_fmt(m.get('sqrt_kl'))} | {_fmt(m.get('reference_perplexity'), 1)} | "
                     f"{_fmt(m.get('distinct_2'))} |")
    lines.append("")
    points: dict[str, list] = {}
    start_path = next((s.get("model_path") for s in stages.values() if s["method"] == "sft"),
                      None)
    for s in stages.values():
        if s["method"] == "best-of-n":
            lines += [f"Best-of-N ({s['stage']}, proxy = {s['reward']}, from {s['start']}; KL "
                      "= ln N - (N-1)/N):", "",
                      "| N | KL (nats) | gold mean | gold-positive | proxy | ref. PPL |",
                      "|---|---|---|---|---|---|"]
            for p in s["points"]:
                lines.append(f"| {p['n']} | {_fmt(p['kl_nats'])} | {_fmt(p['gold_mean'])} | "
                             f"{_fmt(p['gold_positive_rate'])} | "
                             f"{_fmt(p['proxy_reward_mean'])} | "
                             f"{_fmt(p['reference_perplexity'], 1)} |")
            lines.append("")
            points[f"best-of-N ({s['reward']})"] = [
                (p["sqrt_kl"], p["gold_mean"], p["proxy_reward_mean"]) for p in s["points"]]
        elif s["method"] in ("dpo", "ipo", "ppo", "grpo") and s.get("metrics"):
            m = s["metrics"]
            points.setdefault(_curve_name(s), []).append(
                (m["sqrt_kl"], m["gold_mean"], m.get("proxy_reward_mean")))
        if s["method"] == "reward" and s.get("reward_model_path") and start_path:
            bins = _accuracy_by_gold_margin(s, start_path, gold, data_dir,
                                            max_new_tokens=max_new_tokens, seed=seed)
            payload.setdefault("reward_accuracy_by_gold_margin", {})[s["stage"]] = bins
            lines += [f"Reward model {s['stage']}, held-out accuracy by the gold judge's margin "
                      "|P_gold(chosen) - P_gold(rejected)| (the same held-out pairs, "
                      "re-drawn with the pipeline's seed):", "",
                      "| gold margin | pairs | accuracy |", "|---|---|---|"]
            lines += [f"| {b['margin']} | {b['n_pairs']} | {_fmt(b['accuracy'])} |"
                      for b in bins]
            lines.append("")
        if s["method"] == "reward":
            payload.setdefault("reward_models", {})[s["stage"]] = s.get("curve")
            lines += [f"Reward model {s['stage']} ({s.get('labeller')} labels): held-out "
                      f"pairwise accuracy (gold-labelled pairs of test prompts, "
                      f"{s.get('held_out_pairs')} pairs):", "", "| pairs | accuracy |",
                      "|---|---|"]
            lines += [f"| {c['n_pairs']} | {c['accuracy']:.3f} |" for c in s.get("curve", [])]
            lines.append("")
        if s.get("judge_gold_agreement") is not None and s.get("pairs_path"):
            bins = _judge_agreement_by_gold_margin(s["pairs_path"], gold)
            payload.setdefault("judge_agreement_by_gold_margin", {})[s["stage"]] = bins
            lines += [f"AI-judge labels of {s['stage']}'s pairs against the gold, by the gold "
                      "judge's margin |P_gold(a) - P_gold(b)|:", "",
                      "| gold margin | pairs | agreement |", "|---|---|---|"]
            lines += [f"| {b['margin']} | {b['n_pairs']} | {_fmt(b['accuracy'])} |"
                      for b in bins]
            lines.append("")
        if s.get("judge_gold_agreement") is not None:
            payload.setdefault("judge_gold_agreement", {})[s["stage"]] = s[
                "judge_gold_agreement"]
            lines.append(f"- {s['stage']}: AI-judge labels agree with the gold on "
                         f"**{s['judge_gold_agreement']:.1%}** of its {s['n_pairs']} pairs "
                         f"(position-swap consistency {s['swap_consistency']:.0%}: the "
                         "likelihood-ratio judge is order-free by construction).")
    lines.append("")
    start = next((s.get("metrics") for s in stages.values() if s["method"] == "sft"), None)
    if points and start:
        table, payload["matched_kl"] = _matched_kl(points, start["gold_mean"])
        lines += table
    if points:
        svg = _frontier_svg(points)
        write_text_atomic(out.with_suffix(".frontier.svg"), svg)
        lines += [f"![gold and proxy against sqrt KL]({out.with_suffix('.frontier.svg').name})",
                  ""]
    rates, extra = _win_rates(stages, runs, data_dir, gold, n_prompts, max_new_tokens, seed,
                              win_rate_stages)
    payload["win_rates"] = rates
    payload.update(extra)
    if rates:
        lines += ["Gold win rates (row beats column on P_gold(positive), ties 1/2, "
                  f"{n_prompts} test prompts):", ""]
        names = sorted({k.split(" vs ")[0] for k in rates})
        lines += ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for a in names:
            lines.append(f"| {a} | " + " | ".join(
                "-" if a == b else f"{rates[f'{a} vs {b}']:.3f}" for b in names) + " |")
        lines += ["", "Samples side by side (same prompt, same seed):", ""]
        names = list(extra["samples"][0]) if extra["samples"] else []
        lines += ["| " + " | ".join(names) + " |", "|---" * len(names) + "|"]
        for row in extra["samples"]:
            lines.append("| " + " | ".join(str(row[n]).replace("|", "/").replace("\n", " ")
                                           for n in names) + " |")
        lines.append("")
    payload["stages"] = {k: s.get("metrics") for k, s in stages.items()}
    return lines, payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/align", help="lmbench align --out folder")
    parser.add_argument("--data-dir", help="data root (default: $LMBENCH_DATA_DIR)")
    parser.add_argument("--out", default="reports/alignment", help="report path without suffix")
    parser.add_argument("--n-prompts", type=int, default=128, help="win-rate prompts")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verifiable", default="addition", help="verifiable pipeline's name")
    parser.add_argument("--sentiment", default="sentiment", help="sentiment pipeline's name")
    parser.add_argument("--notes", help="a Markdown file appended as the report's findings")
    parser.add_argument("--win-rate-stages", help="comma-separated sentiment stages of the "
                        "win-rate table and the samples (default: every policy)")
    args = parser.parse_args(argv)
    runs, out = Path(args.runs), Path(args.out)
    lines = ["# Post-training: SFT, reward models, DPO, GRPO/PPO, best-of-N, RLAIF", "",
             "Made by `python benchmarks/alignment_report.py --runs " + args.runs + "` from the "
             "stage summaries of `lmbench align baselines/align_addition.toml` and "
             "`lmbench align baselines/align_sentiment.toml` (step budgets: the figures do "
             "not depend on the machine's speed).", ""]
    verifiable, v_payload = _verifiable_section(_stages(runs, args.verifiable))
    sentiment, s_payload = _sentiment_section(_stages(runs, args.sentiment), runs, args.data_dir,
                                              out, n_prompts=args.n_prompts,
                                              max_new_tokens=args.max_new_tokens,
                                              seed=args.seed,
                                              win_rate_stages=None if args.win_rate_stages is None
                                              else args.win_rate_stages.split(","))
    lines += verifiable + sentiment
    if args.notes:
        lines += [Path(args.notes).read_text(encoding="utf-8")]
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    write_json_atomic(out.with_suffix(".json"), {"verifiable": v_payload,
                                                 "sentiment": s_payload})
    print(f"wrote {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
