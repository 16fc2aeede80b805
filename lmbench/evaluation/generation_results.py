"""The records of a generation benchmark run and their Markdown, and the sidecar that attaches
one model's results to its run.

``GenerationReport`` holds, per model, a ``Row`` per decoding strategy (the human reference
first), each with its metrics as ``Estimate`` (value and 95% interval), and every prompt with all
its continuations. ``to_dict`` is the JSON record, ``generations`` the per-prompt records (JSONL)
and ``to_markdown`` a Holtzman et al. 2019-style table per model (a row per strategy, a column
per metric, each cell ``value [95% CI]``) with a few prompts and their continuations side by
side.

Run sidecars. When a benchmarked model was saved in a run folder (``<store>/<run_id>/model.npz``),
``run_sidecar`` turns its part of the JSON record into ``<store>/<run_id>/generation.json``,
which ``lmbench.storage.store`` merges into that run's ``RunResult.generation`` on every read
(the record itself never changes): the leaderboard's generation columns and samples and
``lmbench compare``'s generation differences come from it. Its typed form, checked on writing
and reading, is ``lmbench.core.results.GenerationResult``. Schema 1::

    {"kind": "lmbench generation results", "schema": 1,
     "run_id", "model" (the report's label), "corpus", "command", "created", "git_commit",
     "family", "tokenizer", "judge" (the judge's family), "judge_file" (null: the model itself),
     "features" (MAUVE features),
     "config": {"n_prompts" (used), "split", "prompt_len", "continuation_len", "seed",
                "metric_unit", "n_bootstrap", "n_groups", "batch_size" (null: not recorded)},
     "strategy": the headline row: "top-p 0.95" (HEADLINE_STRATEGY) when it ran, else the first
                 generated row,
     "metrics": {key: value} of the headline row, finite values only, plus its
                "decode_tokens_per_s" (the flat dict leaderboards and compare read),
     "decode_tokens_per_s": the model's pure-sampling decode speed,
     "rows": [{"label", "description", "metrics": {key: {"value", "ci95": [low, high],
               "method"}}, "n_tokens", "wall_s", "decode_tokens_per_s"}, ...] (human first),
     "samples": [{"prompt", "human", <strategy label>: continuation, ...}, ...] (first prompts)}

Metric keys (``metric_infos``): judge_perplexity, self_bleu_4, zipf_coefficient,
repetition_rate_<window>, distinct_1/2/3, seq_rep_4, mauve, copy_rate_<n>, longest_copy, bleu_4.
Undefined values (MAUVE and BLEU-4 of the human row, their intervals) are null in ``rows``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from lmbench.core.errors import LmbenchError
from lmbench.core.results import is_finite_number
from lmbench.evaluation.generation_stats import Estimate

if TYPE_CHECKING:
    from lmbench.evaluation.generation_bench import GenerationBenchConfig

PURE_SAMPLING = "pure (ancestral) sampling"  # how a strategy without knobs describes itself


@dataclass(frozen=True)
class Row:
    label: str
    description: str
    metrics: dict[str, Estimate]
    n_tokens: int  # continuation tokens produced (model tokens)
    wall_s: float | None  # wall time decoding every prompt (in batches); None for the human row

    @property
    def tokens_per_s(self) -> float | None:
        return self.n_tokens / self.wall_s if self.wall_s else None

    def to_dict(self) -> dict:
        return {"label": self.label, "description": self.description,
                "metrics": {k: e.to_dict() for k, e in self.metrics.items()},
                "n_tokens": self.n_tokens, "wall_s": self.wall_s,
                "decode_tokens_per_s": self.tokens_per_s}


@dataclass(frozen=True)
class ModelGenerations:
    """One model's rows, and every prompt with its human and generated continuations."""

    label: str
    family: str
    tokenizer: str
    judge: str
    features: str
    starts: tuple[int, ...]  # stream positions of the prompts
    rows: tuple[Row, ...]  # human first
    texts: dict[str, tuple[str, ...]] = field(repr=False)  # "prompt", "human", each strategy

    @property
    def decode_tokens_per_s(self) -> float | None:
        """The speed of the first pure-sampling row: one batched model call per token;
        generated tokens per second of wall time at the bench's batch size."""
        plain = [r for r in self.rows if r.wall_s and r.description == PURE_SAMPLING]
        return plain[0].tokens_per_s if plain else None

    def to_dict(self, n_samples: int) -> dict:
        return {"label": self.label, "family": self.family, "tokenizer": self.tokenizer,
                "judge": self.judge, "features": self.features, "n_prompts": len(self.starts),
                "prompt_starts": list(self.starts),
                "decode_tokens_per_s": self.decode_tokens_per_s,
                "rows": [r.to_dict() for r in self.rows],
                "samples": [{k: v[i] for k, v in self.texts.items()}
                            for i in range(min(n_samples, len(self.starts)))]}


@dataclass(frozen=True)
class GenerationReport:
    corpus: str
    config: GenerationBenchConfig
    models: tuple[ModelGenerations, ...]
    env: dict
    command: str | None = None

    def config_dict(self) -> dict:
        out = {f.name: getattr(self.config, f.name) for f in fields(self.config)
               if f.name not in ("judge", "strategies")}
        out["strategies"] = [{**asdict(s), "description": s.describe()}
                             for s in self.config.strategies]
        return out

    def to_dict(self) -> dict:
        return {"corpus": self.corpus, "command": self.command, "config": self.config_dict(),
                "metrics": [asdict(m) for m in metric_infos(self.config)],
                "models": [m.to_dict(self.config.n_samples_shown) for m in self.models],
                "env": self.env}

    def generations(self) -> list[dict]:
        """One record per model and prompt: every continuation (the samples JSONL)."""
        return [{"model": m.label, "start": start, **{k: v[i] for k, v in m.texts.items()}}
                for m in self.models for i, start in enumerate(m.starts)]

    def to_markdown(self) -> str:
        return render_markdown(self)


@dataclass(frozen=True)
class MetricInfo:
    key: str
    header: str
    higher_is_better: bool | None  # None: closest to the human row is best
    decimals: int


def metric_infos(config: GenerationBenchConfig) -> list[MetricInfo]:
    """The table's metric columns, in Holtzman et al.'s order first."""
    w, n = config.repetition_window, config.copy_n
    return [MetricInfo("judge_perplexity", "judge PPL", None, 2),
            MetricInfo("self_bleu_4", "Self-BLEU-4", None, 3),
            MetricInfo("zipf_coefficient", "Zipf", None, 3),
            MetricInfo(f"repetition_rate_{w}", f"rep/{w}", None, 3),
            MetricInfo("distinct_1", "distinct-1", None, 3),
            MetricInfo("distinct_2", "distinct-2", None, 3),
            MetricInfo("distinct_3", "distinct-3", None, 3),
            MetricInfo("seq_rep_4", "seq-rep-4", None, 3),
            MetricInfo("mauve", "MAUVE", True, 3),
            MetricInfo(f"copy_rate_{n}", f"copied {n}-grams", None, 3),
            MetricInfo("longest_copy", "longest copy", None, 0),
            MetricInfo("bleu_4", "BLEU-4", True, 3)]


# ---------------------------------------------------------------------------------- Markdown


def _cell(estimate: Estimate, decimals: int) -> str:
    if not math.isfinite(estimate.value):
        return "–"
    text = f"{estimate.value:,.{decimals}f}"
    if estimate.method and math.isfinite(estimate.low):
        text += f" [{estimate.low:,.{decimals}f}, {estimate.high:,.{decimals}f}]"
    return text


def _text(text: str) -> str:
    """One table cell: pipes escaped, line breaks shown as " / " (as verse is quoted)."""
    return " / ".join(line.strip() for line in text.replace("|", "\\|").splitlines()) or "–"


def _table(header: list[str], rows: list[list[str]], align: str = "---:") -> list[str]:
    return ["| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + [align] * (len(header) - 1)) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def render_markdown(report: GenerationReport) -> str:
    c, infos = report.config, metric_infos(report.config)
    lines = [f"# Generation quality on {report.corpus}", ""]
    if report.command:
        lines += [f"Command: `{report.command}`", ""]
    lines += [
        f"Prompts: up to {c.n_prompts} non-overlapping slices of the {c.split} split (seed "
        f"{c.seed}), {c.prompt_len} tokens each, continued for {c.continuation_len} tokens; the "
        "human row is the text that really followed. Metrics on "
        f"{'words of the decoded text' if c.metric_unit == 'words' else 'model tokens'}; "
        "cells are value [95% interval over prompts]: bootstrap "
        f"({c.n_bootstrap} resamples), grouped jackknife ({c.n_groups} groups) for distinct-n, "
        "Zipf and MAUVE. judge PPL: the judge's perplexity of the continuation per model token; "
        "MAUVE and BLEU-4 against the human continuations; copied n-grams and longest copy "
        "against the training split. decode tok/s: continuation tokens generated per second of "
        f"wall time, prompts decoded {c.batch_size} at a time (a throughput; "
        "`lmbench bench` measures batch-1 decoding).", ""]
    for m in report.models:
        speed = m.decode_tokens_per_s
        lines += [f"## {m.label}", "",
                  f"Family {m.family}, {m.tokenizer} tokens, {len(m.starts)} prompts; judge: "
                  f"{m.judge}; MAUVE features: {m.features}"
                  + (f"; decode {speed:,.0f} tokens/s ({m.family}, pure sampling, batches of "
                     f"{c.batch_size} prompts)."
                     if speed else "."), ""]
        header = ["decoding", *(i.header for i in infos), "decode tok/s"]
        rows = [[r.label, *(_cell(r.metrics[i.key], i.decimals) for i in infos),
                 f"{r.tokens_per_s:,.0f}" if r.tokens_per_s else "–"] for r in m.rows]
        lines += _table(header, rows) + [""]
        lines += [f"- **{r.label}**: {r.description}" for r in m.rows] + [""]
        shown = min(c.n_samples_shown, len(m.starts))
        if shown:
            lines += [f"### {m.label}: samples", ""]
            header = ["", *(f"prompt at token {m.starts[i]:,}" for i in range(shown))]
            rows = [[f"**{key}**", *(_text(texts[i]) for i in range(shown))]
                    for key, texts in m.texts.items()]
            lines += _table(header, rows, align="---") + [""]
    return "\n".join(lines)


# -------------------------------------------------------------------------------- run sidecars

HEADLINE_STRATEGY = "top-p 0.95"  # the row leaderboards show (Holtzman et al.'s nucleus sampling)
SIDECAR_KIND = "lmbench generation results"
SIDECAR_SCHEMA = 1
_SIDECAR_SETTINGS = ("split", "prompt_len", "continuation_len", "seed", "metric_unit",
                     "n_bootstrap", "n_groups", "batch_size")


def headline_row(rows: list[dict]) -> dict | None:
    """The row a leaderboard shows: ``HEADLINE_STRATEGY`` when it ran, else the first generated
    row (None when there is none)."""
    generated = [r for r in rows if r["label"] != "human"]
    chosen = [r for r in generated if r["label"] == HEADLINE_STRATEGY] or generated
    return chosen[0] if chosen else None


def run_sidecar(report: dict, label: str, run_id: str, judge_file: str | None = None) -> dict:
    """The ``generation.json`` sidecar (module docstring) of run ``run_id``, from the JSON record
    of a generation benchmark (``GenerationReport.to_dict()`` or its saved ``<out>.json``) in
    which the run's model is ``label``; ``judge_file``: the judge's model file, None for itself.

    Example::

        payload = run_sidecar(report.to_dict(), "brown-gpt-...", "brown-gpt-...")
        lmbench.storage.store.write_sidecar("runs/brown/brown-gpt-...", "generation", payload)
    """
    models = {m["label"]: m for m in report["models"]}
    if label not in models:
        raise LmbenchError(f"the generation report has no model {label!r} "
                           f"(it has: {', '.join(models)})")
    model = models[label]
    row = headline_row(model["rows"])
    if row is None:
        raise LmbenchError(f"the generation report has no generated row for {label!r}")
    metrics = {key: e["value"] for key, e in row["metrics"].items()
               if is_finite_number(e["value"])}
    if is_finite_number(row.get("decode_tokens_per_s")):
        metrics["decode_tokens_per_s"] = row["decode_tokens_per_s"]
    env = report.get("env") or {}
    config = report.get("config") or {}
    return {
        "kind": SIDECAR_KIND, "schema": SIDECAR_SCHEMA, "run_id": run_id, "model": label,
        "corpus": report["corpus"], "command": report.get("command"),
        "created": env.get("created"), "git_commit": env.get("git_commit"),
        "family": model.get("family"), "tokenizer": model.get("tokenizer"),
        "judge": model.get("judge"), "judge_file": judge_file, "features": model.get("features"),
        "config": {"n_prompts": model.get("n_prompts"),
                   **{key: config.get(key) for key in _SIDECAR_SETTINGS}},
        "strategy": row["label"], "metrics": metrics,
        "decode_tokens_per_s": model.get("decode_tokens_per_s"),
        "rows": _finite_or_none(model["rows"]), "samples": model.get("samples", []),
    }


def _finite_or_none(value):
    """``value`` with every NaN or infinity replaced by None (strict JSON; NaN != NaN)."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


