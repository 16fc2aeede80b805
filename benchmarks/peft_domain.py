"""Domain adaptation from Brown: zero-shot, full fine-tuning, PEFT methods and the n-gram way.

    lmbench run baselines/peft_base.toml --save-models --out runs/peft_base   # once (cached)
    python benchmarks/peft_domain.py --domains state_union --out reports/peft_domain

For each base model of ``baselines/peft_base.toml`` (a GPT and an LSTM pretrained on Brown; the
script runs that file itself when ``runs/peft_base`` has no saved models) and each target domain
(``lmbench.data.corpora``: ``state_union``, ``inaugural``, ``webtext``, ``treebank``), every row
of the grid starts from the same saved base and trains on the domain's train split (or its first
1% / 10% of sentences) for the same step budget:

- zero-shot: the base itself; full fine-tuning: every weight (``fit(corpus, init=base)``);
- the PEFT rows of ``baselines/peft_state_union.toml`` (``lmbench.peft``: LoRA, adapters),
  only the new parameters training, and the first LoRA row again at 1% and 10% of the data;
- prompt tuning at P in {5, 20, 100} and prefix tuning at P = 10 (``PROMPT_ROWS``), on every
  base whose family supports them (``lmbench.peft.supports``), with the same steps, batch and
  learning rate as the LoRA rows. A prompt or prefix takes P positions of a bounded context
  (the GPT's block), so those rows fine-tune on windows of min(seq_len, context - P) tokens
  (named in the row); a P that leaves fewer than ``MIN_PROMPT_WINDOW`` positions to the tokens
  is skipped, with the reason in the report;
- the n-gram counterpart (``lmbench.models.ngram_adaptation``): a modified Kneser-Ney
  n-gram on Brown with the base's vocabulary, zero-shot, fitted on the domain alone,
  interpolated with a domain n-gram (EM on the domain's valid split) and count-merged (β on
  the domain's valid split).

Columns: target test perplexity and bits per byte with 95% block-bootstrap intervals, trainable
parameters and their share of the base, adapter file bytes, training seconds, peak live tensor
bytes during training (``lmbench.evaluation.resources.TensorMemoryTracker``), recovered gain
= (zero-shot - method) / (zero-shot - full fine-tuning) on target test perplexity, and
forgetting: Brown test perplexity after adaptation (on the first ``--brown-tokens`` tokens of
Brown test). Choices (the best checkpoint, λ, β) use the domain's valid split only.

Every row is cached as JSON under ``--work`` (keyed by its settings), so a rerun only trains
what is missing; ``--render JSON`` rewrites the Markdown from a payload. ``--tiny`` runs the
whole pipeline on a few hundred sentences with tiny bases (the integration test).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

import lmbench
from lmbench.core.io import write_atomic, write_json_atomic, write_text_atomic
from lmbench.core.options import build_config
from lmbench.core.results import environment
from lmbench.data.corpora import Corpus, _sentences_split
from lmbench.evaluation.resources import TensorMemoryTracker
from lmbench.evaluation.scoring import EvalConfig
from lmbench.models import load_model
from lmbench.models.ngram import NGramLM
from lmbench.models.ngram_adaptation import (
    count_merge,
    domain_ngram,
    interpolate_with_domain,
)
from lmbench.peft import METHODS, adapt, method_config, supports
from lmbench.runs.config import load_config
from lmbench.runs.runner import run
from lmbench.training.trainer import TrainConfig

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
BASE_RUN_FILE = REPO / "baselines" / "peft_base.toml"
GRID_FILE = REPO / "baselines" / "peft_state_union.toml"
NGRAM_ORDER = 3
# Prompt and prefix tuning rows: (method options, learning rate), for every supporting base.
PROMPT_ROWS = ([({"method": "prompt", "n_prompt_tokens": P}, 2e-2) for P in (5, 20, 100)]
               + [({"method": "prefix", "n_prefix_tokens": 10, "hidden": 128}, 2e-2)])


@dataclass(frozen=True)
class Row:
    """One row of the grid: a method on one base, with its fine-tuning settings."""

    base: str  # label of the base model (gpt-base, lstm-base) or "kn3-brown"
    name: str  # as the table shows it
    # zero-shot | full | peft | ngram-zero-shot | ngram-domain | ngram-interp | ngram-merge
    kind: str
    data_share: float = 1.0  # of the domain's train sentences (the first ones)
    learning_rate: float | None = None
    peft: dict[str, Any] = field(default_factory=dict)  # method and options (lmbench.peft)
    seq_len: int | None = None  # fine-tuning window when not the base's (prompt and prefix)

    def key(self, domain: str, steps: int, brown_tokens: int) -> str:
        text = json.dumps([domain, steps, brown_tokens, self.base, self.kind, self.data_share,
                           self.learning_rate, self.peft], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def neural_rows(base: str, family: str, grid: dict[str, Any]) -> list[Row]:
    """Zero-shot, full fine-tuning at every data share, the grid file's PEFT rows of
    ``family``, its first LoRA row again at every data share below 1, and the prompt and
    prefix rows of ``grid["prompt_rows"]`` (``prompt_rows``)."""
    full_lr = grid["full_learning_rate"]
    rows = [Row(base, "zero-shot", "zero-shot")]
    rows += [Row(base, "full FT" + _share_suffix(share), "full", share, full_lr)
             for share in grid["data_shares"]]
    methods = [Row(base, _method_name(table["peft"]), "peft",
                   learning_rate=table["train"]["learning_rate"], peft=table["peft"])
               for table in grid["models"] if table["family"] == family and "peft" in table]
    if grid["one_row_per_method"]:  # the tiny run: each method once
        methods = [row for k, row in enumerate(methods)
                   if row.peft["method"] not in {r.peft["method"] for r in methods[:k]}]
    rows += methods
    lora = next((row for row in methods if row.peft["method"] == "lora"), None)
    if lora is not None:
        rows += [replace(lora, name=lora.name + _share_suffix(share), data_share=share)
                 for share in grid["data_shares"] if share != 1.0]
    return rows + grid.get("prompt_rows", {}).get(base, [])


MIN_PROMPT_WINDOW = 32  # tokens a prompt or prefix row must leave to its windows


def prompt_rows(base: str, model, seq_len: int, one_per_method: bool
                ) -> tuple[list[Row], list[str]]:
    """The ``PROMPT_ROWS`` the fitted base ``model`` supports, each with the fine-tuning window
    its P leaves (module docstring), and a line for each row skipped, with the reason."""
    rows, skipped, seen = [], [], set()
    supported = supports(type(model))
    context = model.capabilities.max_context
    for options, learning_rate in PROMPT_ROWS:
        method = options["method"]
        if method not in supported or (one_per_method and method in seen):
            continue
        seen.add(method)
        P = options.get("n_prompt_tokens", options.get("n_prefix_tokens"))
        name = f"{method} P={P}"
        window = seq_len if context is None else min(seq_len, context - P)
        if context is not None and context - P < MIN_PROMPT_WINDOW:
            skipped.append(f"- {base}: {name} skipped: P = {P} leaves {max(0, context - P)} of "
                           f"the base's {context} context positions to the tokens (under "
                           f"{MIN_PROMPT_WINDOW}).")
            continue
        if window != seq_len:
            name += f" (seq_len {window})"
        rows.append(Row(base, name, "peft", learning_rate=learning_rate, peft=options,
                        seq_len=None if window == seq_len else window))
    return rows, skipped


def _method_name(peft: dict[str, Any]) -> str:
    """How the table names a method row: "LoRA r=4 (q, v)", "adapters m=8", ..."""
    method = peft["method"]
    if method == "lora":
        targets = ", ".join(peft.get("targets", ())) or "default"
        return f"LoRA r={peft.get('rank', 8)} ({targets})"
    if method == "adapters":
        return f"adapters m={peft.get('bottleneck', 16)}"
    options = ", ".join(f"{k}={v}" for k, v in sorted(peft.items()) if k != "method")
    return f"{method} ({options})" if options else method


def ngram_rows() -> list[Row]:
    base = f"kn{NGRAM_ORDER}-brown"
    return [Row(base, "zero-shot (Brown)", "ngram-zero-shot"),
            Row(base, "domain only", "ngram-domain"),
            Row(base, "interpolated (EM)", "ngram-interp"),
            Row(base, "count merging (β on valid)", "ngram-merge")]


def _share_suffix(share: float) -> str:
    return "" if share == 1.0 else f", {share:.0%} data"


# ------------------------------------------------------------------------------------- data


def subset(corpus: Corpus, share: float) -> Corpus:
    """``corpus`` with only the first ``share`` of its train sentences (at least one)."""
    if share == 1.0:
        return corpus
    sentences = corpus.train.sentences
    kept = list(sentences[: max(1, int(len(sentences) * share))])
    splits = {**corpus.splits, "train": _sentences_split("train", kept)}
    return Corpus(f"{corpus.name}", splits, f"{corpus.description}; first {share:.0%} of train")


def truncated(corpus: Corpus, n_sentences: int) -> Corpus:
    """Every split cut to its first ``n_sentences`` (the tiny integration run)."""
    splits = {name: _sentences_split(name, list(split.sentences[:n_sentences]))
              for name, split in corpus.splits.items()}
    return Corpus(corpus.name, splits, corpus.description)


def brown_head(brown: Corpus, n_tokens: int) -> Corpus:
    """Brown's test split cut to its first sentences holding about ``n_tokens`` words."""
    kept, total = [], 0
    for sentence in brown.test.sentences:
        if total >= n_tokens:
            break
        kept.append(sentence)
        total += len(sentence) + 1
    return Corpus("brown", {"test": _sentences_split("test", kept)}, "Brown test head")


# ------------------------------------------------------------------------------------ bases


def base_models(labels: list[str], work: Path, tiny: bool, brown: Corpus, data_dir
                ) -> dict[str, tuple[Path, dict]]:
    """Label -> (saved model file, its run-file table) of the bases ``labels``. The real bases
    are the records of ``lmbench run baselines/peft_base.toml --save-models --out
    runs/peft_base`` (run here when missing); ``tiny`` ones are trained here on the given Brown
    sentences."""
    config = load_config(BASE_RUN_FILE)
    known = [spec.label for spec in config.models]
    if set(labels) - set(known):
        raise SystemExit(f"--bases: {sorted(set(labels) - set(known))} not in {known}")
    specs = [spec for spec in config.models if spec.label in labels]
    if tiny:
        return {spec.label: _tiny_base(spec, work, brown) for spec in specs}
    store = REPO / "runs" / "peft_base"
    if set(labels) - set(_saved_bases(store)):
        print("pretraining the bases: lmbench run baselines/peft_base.toml ...", flush=True)
        run(replace(config, data_dir=data_dir), store, save_models=True)
    saved = _saved_bases(store)
    found = {}
    for spec in specs:
        stable = store / f"{spec.label}.npz"  # the init of baselines/peft_state_union.toml
        if not stable.is_file():
            data = saved[spec.label].read_bytes()
            write_atomic(stable, lambda handle, data=data: handle.write(data))
        found[spec.label] = (stable, {"family": spec.family, **spec.options})
    return found


def _saved_bases(store: Path) -> dict[str, Path]:
    """Label -> model.npz of the runs under ``store`` that saved their model."""
    found = {}
    for record in sorted(store.glob("*/result.json")):
        if (record.parent / "model.npz").is_file():
            found[json.loads(record.read_text(encoding="utf-8"))["model"]] = (
                record.parent / "model.npz")
    return found


def _tiny_base(spec, work: Path, brown: Corpus) -> tuple[Path, dict]:
    options = {**spec.options, "n_layer": 1, "tokenizer_options": {"unk_max_count": 1}}
    options.update({"n_embd": 16, "n_head": 2} if spec.family == "gpt" else
                   {"embed_dim": 16, "hidden_dim": 16})
    options["train"] = {**options["train"], "max_steps": 3, "warmup_steps": 1, "batch_size": 2,
                        "seq_len": 8, "eval_every": 3, "eval_tokens": 200, "progress": False}
    path = work / "bases" / spec.label / "model.npz"
    if not path.is_file():
        model = lmbench.build_model(spec.family, **options).fit(brown)
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    return path, {"family": spec.family, **options}


# ------------------------------------------------------------------------------------- rows


def evaluate_row(model, target: Corpus, brown_test: Corpus, eval_config: EvalConfig) -> dict:
    test = lmbench.evaluate(model, target, "test", eval_config)
    forgetting = lmbench.evaluate(model, brown_test, "test", eval_config)
    return {"test_ppl": test.perplexity, "test_ppl_ci": list(test.perplexity_ci95),
            "test_bpb": test.bits_per_byte, "test_bpb_ci": list(test.bits_per_byte_ci95),
            "test_unk_rate": test.n_unk / max(1, test.n_tokens), "n_test_tokens": test.n_tokens,
            "brown_ppl": forgetting.perplexity}


def fine_tune_train(options: dict, row: Row, steps: int, tiny: bool) -> dict:
    """The base's train table with the fine-tuning budget and the row's learning rate."""
    every = max(1, steps // 2)  # two valid evaluations choose the checkpoint
    train = {**options["train"], "max_steps": steps, "warmup_steps": max(1, steps // 10),
             "eval_every": every, "eval_tokens": 200 if tiny else 5_000, "progress": False,
             "learning_rate": row.learning_rate, "min_lr_ratio": 0.1}
    if row.seq_len is not None:
        train["seq_len"] = row.seq_len
    return train


def run_neural_row(row: Row, base_path: Path, options: dict, target: Corpus, brown_test: Corpus,
                   steps: int, tiny: bool, eval_config: EvalConfig) -> dict:
    base = load_model(base_path)
    n_base = base.n_params()
    if row.kind == "zero-shot":
        return {**evaluate_row(base, target, brown_test, eval_config), "n_trainable": 0,
                "n_base_params": n_base, "adapter_bytes": None, "train_s": 0.0,
                "peak_train_bytes": None}
    corpus = subset(target, row.data_share)
    train = fine_tune_train(options, row, steps, tiny)
    family = options["family"]
    model_options = {k: v for k, v in options.items() if k != "family"}
    tracker = TensorMemoryTracker()
    started = time.perf_counter()
    with tracker:
        if row.kind == "full":
            model = lmbench.build_model(family, **{**model_options, "train": train})
            model.fit(corpus, init=str(base_path))
        else:
            method = method_config(row.peft["method"],
                                   {k: v for k, v in row.peft.items() if k != "method"})
            model = adapt(base, method, train=build_config(TrainConfig, train, "train"))
            model.fit(corpus)
    train_s = time.perf_counter() - started
    if row.kind == "full":
        n_trainable, adapter_bytes = model.n_params(), None
    else:
        n_trainable = model.n_trainable()
        with tempfile.TemporaryDirectory() as folder:
            model.save(Path(folder) / "adapter.npz")
            adapter_bytes = (Path(folder) / "adapter.npz").stat().st_size
    return {**evaluate_row(model, target, brown_test, eval_config), "n_trainable": n_trainable,
            "n_base_params": n_base, "adapter_bytes": adapter_bytes, "train_s": train_s,
            "peak_train_bytes": tracker.peak, "steps": model.training_log()["steps"],
            "n_train_tokens": len(model.tokenizer.encode_split(corpus.train))}


def run_ngram_rows(base_path: Path, brown: Corpus, target: Corpus, brown_test: Corpus,
                   eval_config: EvalConfig) -> dict[str, dict]:
    """The n-gram rows, on the vocabulary of the neural base at ``base_path``."""
    tokenizer = load_model(base_path).tokenizer
    brown_ids = tokenizer.encode_split(brown.train)
    domain_ids = tokenizer.encode_split(target.train)
    valid_ids = tokenizer.encode_split(target.valid)
    started = time.perf_counter()
    base = NGramLM(lmbench.build_model("ngram", order=NGRAM_ORDER).config_, tokenizer)
    base.fit_ids(brown_ids)
    base_s = time.perf_counter() - started
    rows = {}
    for kind, build in [
            ("ngram-zero-shot", lambda: (base, {})),
            ("ngram-domain", lambda: (domain_ngram(base, domain_ids), {})),
            ("ngram-interp", lambda: _interp(base, domain_ids, valid_ids)),
            ("ngram-merge", lambda: _merge(base, brown_ids, domain_ids, valid_ids))]:
        started = time.perf_counter()
        model, settings = build()
        fit_s = time.perf_counter() - started + (base_s if kind != "ngram-domain" else 0.0)
        rows[kind] = {**evaluate_row(model, target, brown_test, eval_config),
                      "n_trainable": None, "n_base_params": base.n_params(),
                      "adapter_bytes": None, "train_s": fit_s, "peak_train_bytes": None,
                      "settings": settings}
    return rows


def _interp(base, domain_ids, valid_ids):
    mixture = interpolate_with_domain(base, domain_ids, valid_ids)
    return mixture, {"weights": [float(w) for w in mixture.weights_]}


def _merge(base, brown_ids, domain_ids, valid_ids):
    merged = count_merge(base, brown_ids, domain_ids, domain_valid_ids=valid_ids)
    return merged.model, {"beta": merged.beta,
                          "valid_ppl_by_beta": {str(b): p for b, p in
                                                merged.valid_perplexity_by_beta.items()}}


# ----------------------------------------------------------------------------------- report


def recovered_gains(rows: list[dict]) -> None:
    """Fill ``recovered_gain`` of every neural row from its base's zero-shot and full-FT rows."""
    for row in rows:
        row["recovered_gain"] = None
        if row["kind"].startswith("ngram"):
            continue
        same = [r for r in rows if r["base"] == row["base"] and r["domain"] == row["domain"]]
        zero = next(r for r in same if r["kind"] == "zero-shot")["test_ppl"]
        full = next((r for r in same if r["kind"] == "full" and r["data_share"] == 1.0), None)
        if full is not None and zero != full["test_ppl"]:
            row["recovered_gain"] = (zero - row["test_ppl"]) / (zero - full["test_ppl"])


def findings(rows: list[dict], methods: tuple[str, ...]) -> list[str]:
    """One line per target of the issue, per base and domain, with the figures it is read from.

    Args:
        rows: the table's rows, with ``recovered_gain`` filled.
        methods: the PEFT methods ``lmbench.peft`` has (the others are reported missing).
    """
    lines = []
    for domain, base in sorted({(r["domain"], r["base"]) for r in rows
                                if r["kind"] == "zero-shot"}):
        same = [r for r in rows if r["domain"] == domain and r["base"] == base]
        full = {r["data_share"]: r for r in same if r["kind"] == "full"}
        peft = [r for r in same if r["kind"] == "peft"]
        zero = next(r for r in same if r["kind"] == "zero-shot")
        head = f"- {base} on {domain}"
        if 1.0 in full:
            lines.append(f"{head}: full fine-tuning {zero['test_ppl']:.1f} -> "
                         f"{full[1.0]['test_ppl']:.1f} test PPL (Brown {zero['brown_ppl']:.1f} "
                         f"-> {full[1.0]['brown_ppl']:.1f}).")
        for method, target, share_cap in (("lora", 0.85, 0.05), ("adapters", 0.80, 0.05)):
            chosen = [r for r in peft if r["peft"]["method"] == method and r["data_share"] == 1.0
                      and r["n_trainable"] / r["n_base_params"] <= share_cap
                      and r["recovered_gain"] is not None]
            if not chosen:
                continue
            best = max(chosen, key=lambda r: r["recovered_gain"])
            verdict = "met" if best["recovered_gain"] >= target else "missed"
            lines.append(
                f"{head}: {method} target (>= {target:.0%} of full FT's gain at <= "
                f"{share_cap:.0%} trainable) {verdict}: best {best['name']} recovers "
                f"{best['recovered_gain']:.0%} with {best['n_trainable']:,} trainable "
                f"({best['n_trainable'] / best['n_base_params']:.2%}), test PPL "
                f"{best['test_ppl']:.1f}, Brown PPL {best['brown_ppl']:.1f}.")
        small = [r for r in peft if r["peft"]["method"] == "lora" and r["data_share"] == 0.01]
        if small and 0.01 in full:
            lora, ft = small[0], full[0.01]
            verdict = "met" if lora["test_ppl"] <= ft["test_ppl"] else "missed"
            lines.append(f"{head}: at 1% of the data LoRA >= full FT {verdict}: {lora['name']} "
                         f"{lora['test_ppl']:.1f} vs full FT {ft['test_ppl']:.1f} test PPL "
                         f"(zero-shot {zero['test_ppl']:.1f}).")
        for method, what in (("prompt", "prompt tuning"), ("prefix", "prefix tuning")):
            chosen = [r for r in peft if r["peft"]["method"] == method
                      and r["recovered_gain"] is not None]
            if chosen:
                best = max(chosen, key=lambda r: r["recovered_gain"])
                share = best["n_trainable"] / best["n_base_params"]
                caveat = (" (Lester et al. 2021: prompt tuning closes the gap only at billions "
                          "of parameters)" if method == "prompt" else "")
                lines.append(f"{head}: {what}, best {best['name']}: recovers "
                             f"{best['recovered_gain']:.0%} of full FT's gain with "
                             f"{best['n_trainable']:,} trainable ({share:.3%}), test PPL "
                             f"{best['test_ppl']:.1f}{caveat}.")
    absent = [m for m in ("prompt", "prefix") if m not in methods]
    if absent:
        lines.append(f"- {', '.join(absent)}: not in lmbench.peft at this commit "
                     f"(it has {', '.join(methods)}), so no rows.")
    return lines


def _fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def render(payload: dict) -> str:
    rows = payload["rows"]
    lines = [
        "# Parameter-efficient domain adaptation from Brown", "",
        f"Command: `{payload['command']}` ({payload['wall_s'] / 60:.1f} min on this machine; "
        f"bases from `{payload['base_command']}`).", "",
        f"Every neural row starts from the same saved Brown base and fine-tunes for "
        f"{payload['steps']} steps (batch and sequence length of the base's run file; the better "
        "of two valid-split checkpoints is kept); PPL and bits per byte on the domain's test "
        "split with 95% block-bootstrap intervals, on the base's closed word vocabulary. "
        "Gain: recovered gain = (zero-shot - method) / (zero-shot - full FT) on test PPL. "
        f"Brown PPL: forgetting, Brown test (first {payload['brown_tokens']:,} words) after "
        "adaptation. Peak: live tensor bytes during training. The n-gram rows "
        f"(modified Kneser-Ney, order {NGRAM_ORDER}, same vocabulary) have no fine-tuning to "
        "recover a gain of.", ""]
    for domain in payload["domains"]:
        lines += [f"## {domain}", ""]
        lines += ["| base | method | test PPL (95% CI) | bits/byte (95% CI) | trainable | share "
                  "| adapter bytes | train s | peak MB | gain | Brown PPL |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in (r for r in rows if r["domain"] == domain):
            ppl = (f"{row['test_ppl']:.1f} ({row['test_ppl_ci'][0]:.1f}-"
                   f"{row['test_ppl_ci'][1]:.1f})")
            bpb = (f"{row['test_bpb']:.3f} ({row['test_bpb_ci'][0]:.3f}-"
                   f"{row['test_bpb_ci'][1]:.3f})")
            share = (None if row["n_trainable"] is None
                     else row["n_trainable"] / row["n_base_params"])
            peak = None if row["peak_train_bytes"] is None else row["peak_train_bytes"] / 2**20
            lines.append(
                f"| {row['base']} | {row['name']} | {ppl} | {bpb} | "
                f"{_fmt(row['n_trainable'], ',')} | {_fmt(share, '.2%')} | "
                f"{_fmt(row['adapter_bytes'], ',')} | {row['train_s']:.0f} | {_fmt(peak, '.0f')} "
                f"| {_fmt(row['recovered_gain'], '.2f')} | {row['brown_ppl']:.1f} |")
        lines.append("")
    if payload.get("skipped"):
        lines += ["Rows not run:", "", *payload["skipped"], ""]
    if payload.get("findings"):
        lines += ["## Against the issue's targets", "", *payload["findings"], ""]
    if payload.get("notes"):
        lines += ["## Notes", "", payload["notes"].strip(), ""]
    if payload.get("plot"):
        lines += [f"![recovered gain against trainable share]({payload['plot']})", ""]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> bool:
    """Recovered gain against trainable fraction (log x), one marker per method kind."""
    points = [r for r in rows if r["recovered_gain"] is not None and r["n_trainable"]]
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (base, domain), marker in zip(sorted({(r["base"], r["domain"]) for r in points}),
                                      "os^vD<>"):
        chosen = [r for r in points if (r["base"], r["domain"]) == (base, domain)]
        xs = [r["n_trainable"] / r["n_base_params"] for r in chosen]
        ys = [r["recovered_gain"] for r in chosen]
        ax.scatter(xs, ys, marker=marker, label=f"{base} on {domain}")
        for x, y, r in zip(xs, ys, chosen):
            ax.annotate(r["name"], (x, y), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_xlabel("trainable parameters / base parameters")
    ax.set_ylabel("recovered gain (1 = full fine-tuning)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    import io

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    write_text_atomic(path, buffer.getvalue())
    return True


# ------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", default="state_union",
                        help="comma-separated target corpora")
    parser.add_argument("--bases", default="gpt-base,lstm-base",
                        help="comma-separated labels of baselines/peft_base.toml")
    parser.add_argument("--steps", type=int, default=60, help="fine-tuning steps per row")
    parser.add_argument("--peft-domains", help="comma-separated domains that get the PEFT "
                        "rows (default: every domain; the others get zero-shot, full FT and "
                        "the n-gram rows)")
    parser.add_argument("--brown-tokens", type=int, default=20_000)
    parser.add_argument("--data-dir")
    parser.add_argument("--work", default=str(REPO / "runs" / "peft_domain"),
                        help="folder of cached rows (and the tiny bases)")
    parser.add_argument("--out", required=True, help="report path without suffix")
    parser.add_argument("--tiny", action="store_true",
                        help="a few hundred sentences, tiny bases, 2 steps (integration test)")
    parser.add_argument("--notes", metavar="MD", help="a Markdown file of remarks to print "
                        "under the table (kept in the JSON)")
    parser.add_argument("--render", metavar="JSON", help="only rewrite <out>.md from a payload")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render:
        payload = json.loads(Path(args.render).read_text(encoding="utf-8"))
        if args.notes:
            payload["notes"] = Path(args.notes).read_text(encoding="utf-8")
            write_json_atomic(out.with_suffix(".json"), payload)
        write_text_atomic(out.with_suffix(".md"), render(payload))
        return 0
    started = time.perf_counter()
    command = "python " + " ".join(shlex.quote(a) for a in [
        "benchmarks/peft_domain.py", *(argv if argv is not None else sys.argv[1:])])
    steps = 2 if args.tiny else args.steps
    work = Path(args.work)
    torch.set_num_threads(1)  # small models on shared cores: more threads only spin
    brown = lmbench.load_corpus("brown", args.data_dir)
    if args.tiny:
        brown = truncated(brown, 400)
    brown_n = 300 if args.tiny else args.brown_tokens
    brown_test = brown_head(brown, brown_n)
    labels = args.bases.split(",")
    peft_domains = None if args.peft_domains is None else set(args.peft_domains.split(","))
    bases = base_models(labels, work, args.tiny, brown, args.data_dir)
    shares = (1.0, 0.1) if args.tiny else (1.0, 0.1, 0.01)
    grid = {"full_learning_rate": 1e-3, "data_shares": shares,
            "one_row_per_method": args.tiny,
            "models": tomllib.loads(GRID_FILE.read_text(encoding="utf-8"))["models"]}
    eval_config = EvalConfig(window_len=256 if args.tiny else 2048, progress=False)
    skipped: list[str] = []
    grid["prompt_rows"] = {}
    for label in labels:
        path, options = bases[label]
        found, reasons = prompt_rows(label, load_model(path), options["train"]["seq_len"],
                                     args.tiny)
        grid["prompt_rows"][label] = found
        skipped += reasons
    rows = []
    for domain in args.domains.split(","):
        target = lmbench.load_corpus(domain, args.data_dir)
        if args.tiny:
            target = truncated(target, 400)
        for label in labels:
            path, options = bases[label]
            methods = grid if peft_domains is None or domain in peft_domains else {
                **grid, "models": [], "prompt_rows": {}}
            for row in neural_rows(label, options["family"], methods):
                rows.append(_cached(work, row, domain, steps, brown_n, run_neural_row, row, path,
                                    options, target, brown_test, steps, args.tiny, eval_config))
        ngram: dict[str, dict] = {}
        for row in ngram_rows():
            rows.append(_cached(work, row, domain, 0, brown_n, _ngram_row, ngram, row,
                                bases[labels[0]][0], brown, target, brown_test, eval_config))
    recovered_gains(rows)
    payload = {"findings": findings(rows, tuple(METHODS)), "command": command,
               "base_command": "lmbench run baselines/peft_base.toml --save-models --out "
               "runs/peft_base", "steps": steps,
               "brown_tokens": args.brown_tokens, "domains": args.domains.split(","),
               "rows": rows, "skipped": skipped, "wall_s": time.perf_counter() - started,
               "env": environment()}
    if args.notes:
        payload["notes"] = Path(args.notes).read_text(encoding="utf-8")
    svg = out.with_suffix(".svg")
    if plot(rows, svg):
        payload["plot"] = svg.name
    write_json_atomic(out.with_suffix(".json"), payload)
    write_text_atomic(out.with_suffix(".md"), render(payload))
    return 0


def _ngram_row(computed: dict, row: Row, *args) -> dict:
    """The n-gram row ``row``, computing all of them once into ``computed`` when first asked."""
    if not computed:
        computed.update(run_ngram_rows(*args))
    return computed[row.kind]


def _cached(work: Path, row: Row, domain: str, steps: int, brown_tokens: int, compute, *args
            ) -> dict:
    """The row's figures from ``work/rows/<key>.json``, else ``compute(*args)``, written there."""
    path = work / "rows" / f"{row.key(domain, steps, brown_tokens)}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    print(f"[{domain}] {row.base}: {row.name} ...", flush=True)
    figures = compute(*args)
    result = {"domain": domain, "base": row.base, "name": row.name, "kind": row.kind,
              "data_share": row.data_share, "learning_rate": row.learning_rate,
              "peft": row.peft, **figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    print(f"  test PPL {result['test_ppl']:.1f}, Brown PPL {result['brown_ppl']:.1f}, "
          f"{result['train_s']:.0f} s", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
