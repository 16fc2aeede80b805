"""N-gram scoring speed against KenLM, measured in the same run on the same ARPA model.

    python benchmarks/ngram_speed.py --data-dir ../shared [--lmplz PATH] [--out reports/ngram_speed]

Modified Kneser-Ney order 5 on Brown (Bengio split, closed word vocabulary). Timed, each the
median of ``--repeats`` runs:

- lmbench: ``lmbench.evaluate(model, corpus, "test")`` -- its ``tokens_per_s`` (the scoring
  loop; the issue's figure) and the whole call's rate (encoding the text included); the hash
  index of the tables (``lmbench.models.ngram_index``, built once per fitted model) timed apart;
- the ``kenlm`` Python module on lmbench's own ARPA file: ``Model.full_scores`` over every test
  sentence (a per-token log10 score, as lmbench gives) and ``Model.score`` per sentence (one
  sum per sentence);
- fit: ``fit_ids`` (counting + smoothing) and, where ``--lmplz`` (or ``lmplz`` on PATH) is
  given, KenLM's ``lmplz -o 5`` on the same token stream (<unk> written as an ordinary word).

Prints the ratios (lmbench rate / KenLM rate; lmplz fit s / lmbench fit s) and the largest
per-token |log10 p| difference between the two scorers, and writes ``<out>.md`` and
``<out>.json``. About 30 s on two quiet cores.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lmbench
from lmbench.core.io import write_json_atomic, write_text_atomic
from lmbench.core.results import describe_cpu, environment
from lmbench.evaluation.scoring import EvalConfig, score_stream


def _median_s(function, repeats: int) -> tuple[float, object]:
    """Median wall seconds of ``repeats`` calls, and the last call's value."""
    times, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - started)
    return float(np.median(times)), value


def lmplz_fit_s(lmplz: str, model, corpus, order: int, workdir: Path) -> float:
    """Seconds ``lmplz -o order`` takes on the training stream lmbench counts."""
    known = model.tokenizer.index_
    train = workdir / "train.txt"
    # lmplz refuses a literal <unk>: the closed vocabulary's unknown word is an ordinary token
    train.write_text("".join(" ".join(w if w in known and w != "<unk>" else "UNKWORD" for w in s)
                             + "\n" for s in corpus.train.sentences))
    started = time.perf_counter()
    with open(train) as stdin, open(workdir / "lmplz.arpa", "w") as stdout:
        subprocess.run([lmplz, "-o", str(order), "-S", "1G", "-T", str(workdir)], stdin=stdin,
                       stdout=stdout, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def measure(args) -> dict:
    import kenlm

    corpus = lmbench.load_corpus("brown", args.data_dir)
    model = lmbench.build_model("ngram", order=args.order, smoothing="modified-kneser-ney")
    model.tokenizer.fit(corpus.train)
    train_ids = model.tokenizer.encode_split(corpus.train)
    fit_s, _ = _median_s(lambda: model.fit_ids(train_ids), 3)
    config = EvalConfig(progress=False)
    started = time.perf_counter()
    model.scoring_tables()  # the hash indexes, built once per fitted model (scoring builds them)
    index_s = time.perf_counter() - started
    started = time.perf_counter()
    first = lmbench.evaluate(model, corpus, "test", config)
    first_call_s = time.perf_counter() - started
    call_s, results = _median_s(
        lambda: [lmbench.evaluate(model, corpus, "test", config)], args.repeats)
    rates = []
    for _ in range(args.repeats):
        rates.append(lmbench.evaluate(model, corpus, "test", config).tokens_per_s)
    n_tokens = first.n_tokens
    ours = {"fit_s": fit_s, "index_build_s": index_s, "test_perplexity": first.perplexity,
            "test_tokens": n_tokens,
            "score_tokens_per_s": float(np.median(rates)),
            "evaluate_call_tokens_per_s": n_tokens / call_s,
            "first_evaluate_call_s": first_call_s, "first_score_tokens_per_s": first.tokens_per_s}

    sentences = corpus.split("test").sentences
    lines = [" ".join(s) for s in sentences]
    with tempfile.TemporaryDirectory() as workdir:
        arpa = Path(workdir) / "lmbench.arpa"
        model.save_arpa(arpa)
        reference = kenlm.Model(str(arpa))
        full_s, theirs = _median_s(
            lambda: [s for line in lines for s, _, _ in reference.full_scores(line)], args.repeats)
        sentence_s, total_log10 = _median_s(
            lambda: sum(reference.score(line) for line in lines), args.repeats)
        fit_reference = None
        if args.lmplz:
            fit_reference = lmplz_fit_s(args.lmplz, model, corpus, args.order, Path(workdir))
    if len(theirs) != n_tokens:
        raise AssertionError(f"kenlm scored {len(theirs)} tokens, lmbench {n_tokens}")
    nll = score_stream(model, model.tokenizer.encode_sentences(sentences), config)
    kenlm_rates = {"full_scores_tokens_per_s": n_tokens / full_s,
                   "score_per_sentence_tokens_per_s": n_tokens / sentence_s,
                   "perplexity": 10 ** (-total_log10 / n_tokens),
                   "max_abs_log10_diff": float(np.max(np.abs(-nll / math.log(10) - theirs)))}
    ratios = {
        "score_vs_full_scores": (ours["score_tokens_per_s"]
                                 / kenlm_rates["full_scores_tokens_per_s"]),
        "score_vs_score_per_sentence": (ours["score_tokens_per_s"]
                                        / kenlm_rates["score_per_sentence_tokens_per_s"]),
        "evaluate_call_vs_full_scores": (ours["evaluate_call_tokens_per_s"]
                                         / kenlm_rates["full_scores_tokens_per_s"]),
    }
    report = {"command": "python " + " ".join(sys.argv), "order": args.order,
              "repeats": args.repeats, "lmbench": ours, "kenlm": kenlm_rates, "ratios": ratios,
              "env": environment()}
    if fit_reference is not None:
        report["lmplz_fit_s"] = fit_reference
        ratios["lmplz_fit_s_over_lmbench_fit_s"] = fit_reference / fit_s
        ratios["lmplz_fit_s_over_lmbench_fit_and_index_s"] = fit_reference / (fit_s + index_s)
    return report


def render(report: dict) -> str:
    ours, ken, ratios, env = report["lmbench"], report["kenlm"], report["ratios"], report["env"]
    order = report["order"]
    lines = [
        f"# N-gram scoring speed: lmbench vs KenLM, Brown test, modified Kneser-Ney order {order}",
        "", f"Command: `{report['command']}`", "",
        f"Machine: {describe_cpu(env)}. Medians of {report['repeats']} runs; "
        f"{ours['test_tokens']:,} test tokens (every sentence's words and its </s>).", "",
        "| scorer | tokens/s | lmbench / this |", "|---|---:|---:|",
        f"| lmbench.evaluate, scoring (`tokens_per_s`) | {ours['score_tokens_per_s']:,.0f} | |",
        f"| lmbench.evaluate, whole call (encoding included) | "
        f"{ours['evaluate_call_tokens_per_s']:,.0f} | |",
        f"| kenlm `Model.full_scores` (per token) | {ken['full_scores_tokens_per_s']:,.0f} | "
        f"{ratios['score_vs_full_scores']:.2f} |",
        f"| kenlm `Model.score` (per sentence) | {ken['score_per_sentence_tokens_per_s']:,.0f} | "
        f"{ratios['score_vs_score_per_sentence']:.2f} |",
        "", f"Hash index build (once per fitted model): {ours['index_build_s']:.3f} s; first "
        f"`evaluate` call after it: {ours['first_evaluate_call_s']:.3f} s "
        f"({ours['first_score_tokens_per_s']:,.0f} tokens/s scoring). Test perplexity: lmbench "
        f"{ours['test_perplexity']:.4f}, kenlm {ken['perplexity']:.4f}; largest per-token "
        f"|log10 p| difference {ken['max_abs_log10_diff']:.1e} (the ARPA file's 7 digits).",
        "", f"Fit (counting + smoothing, tokenization apart): lmbench {ours['fit_s']:.2f} s"
        + (f", KenLM lmplz {report['lmplz_fit_s']:.2f} s (lmplz / lmbench = "
           f"{ratios['lmplz_fit_s_over_lmbench_fit_s']:.2f}; with the index build "
           f"{ratios['lmplz_fit_s_over_lmbench_fit_and_index_s']:.2f})."
           if "lmplz_fit_s" in report
           else "; lmplz not measured (no --lmplz and none on PATH)."),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("LMBENCH_DATA_DIR"))
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lmplz", default=shutil.which("lmplz"))
    parser.add_argument("--out", default="reports/ngram_speed",
                        help="write <out>.md and <out>.json")
    args = parser.parse_args()
    report = measure(args)
    text = render(report)
    print(text)
    write_text_atomic(Path(f"{args.out}.md"), text)
    write_json_atomic(Path(f"{args.out}.json"), report)


if __name__ == "__main__":
    main()
