"""Benchmark the n-gram family on Brown against its references, measured in the same run.

    python benchmarks/ngram_bench.py --data-dir ../shared [--lmplz PATH] [--out reports/ngram_brown]

Measures, for modified Kneser-Ney order 5 on the Bengio split, closed word vocabulary:
- fit time (counting + smoothing on the 800k-word train stream; tokenization timed apart),
- test perplexity and scoring throughput (tokens/s) through ``lmbench.evaluate``,
- peak resident memory of this process (ru_maxrss),
and, where available, the references on the identical token stream:
- KenLM ``lmplz -o 5`` (if ``--lmplz`` or ``lmplz`` on PATH): fit time and test perplexity,
  scored with the ``kenlm`` module; the closed vocabulary is imposed by writing ``<unk>``
  for every out-of-vocabulary word, so both models see the same tokens;
- the ``kenlm`` module scoring lmbench's own ARPA (tokens/s, and the largest per-token
  log10 difference);
- nltk.lm ``KneserNeyInterpolated(3)``: fit time and scoring tokens/s on a short sample.
Prints a Markdown table and writes it with the raw JSON next to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lmbench
from lmbench.core.results import describe_cpu
from lmbench.evaluation.scoring import EvalConfig


def stream_text(tokenizer, sentences, unk: str = "<unk>") -> str:
    """Sentences as KenLM input lines, out-of-vocabulary words written as ``unk``."""
    known = tokenizer.index_
    return "".join(" ".join(w if w in known and w != "<unk>" else unk for w in s) + "\n"
                   for s in sentences)


def kenlm_reference(lmplz: str, tokenizer, corpus, order: int, workdir: Path) -> dict:
    import kenlm

    # lmplz refuses a literal <unk> in its input, so the closed vocabulary's unknown word is
    # written as an ordinary token: it is counted like any word, exactly as lmbench counts it.
    train = workdir / "train.txt"
    train.write_text(stream_text(tokenizer, corpus.train.sentences, unk="UNKWORD"))
    arpa = workdir / "lmplz.arpa"
    started = time.perf_counter()
    with open(train) as stdin, open(arpa, "w") as stdout:
        subprocess.run([lmplz, "-o", str(order), "-S", "1G", "-T", str(workdir)], stdin=stdin,
                       stdout=stdout, stderr=subprocess.DEVNULL, check=True)
    fit_s = time.perf_counter() - started
    model = kenlm.Model(str(arpa))
    test = stream_text(tokenizer, corpus.split("test").sentences, unk="UNKWORD").splitlines()
    log10 = sum(model.score(line, bos=True, eos=True) for line in test)
    n_tokens = sum(len(line.split()) + 1 for line in test)
    return {"fit_s": fit_s, "perplexity": 10 ** (-log10 / n_tokens), "n_tokens": n_tokens}


def kenlm_scores_our_arpa(model, corpus, workdir: Path) -> dict:
    import kenlm

    arpa = workdir / "lmbench.arpa"
    model.save_arpa(arpa)
    reference = kenlm.Model(str(arpa))
    sentences = corpus.split("test").sentences
    lines = [" ".join(s) for s in sentences]
    started = time.perf_counter()
    theirs = [s for line in lines for s, _, _ in reference.full_scores(line)]
    seconds = time.perf_counter() - started
    ids = model.tokenizer.encode_sentences(sentences)
    nll = lmbench.evaluation.scoring.score_stream(model, ids, EvalConfig(progress=False))
    difference = np.max(np.abs(-nll / math.log(10) - np.array(theirs)))
    return {"full_scores_tokens_per_s": len(theirs) / seconds, "max_abs_log10_diff": difference}


def nltk_reference(corpus, n_train_sentences: int, n_test_tokens: int) -> dict:
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    train = [list(s) for s in corpus.train.sentences[:n_train_sentences]]
    started = time.perf_counter()
    grams, vocab = padded_everygram_pipeline(3, train)
    model = KneserNeyInterpolated(3)
    model.fit(grams, vocab)
    fit_s = time.perf_counter() - started
    words = [w for s in corpus.split("test").sentences for w in s][: n_test_tokens + 2]
    started = time.perf_counter()
    for i in range(2, len(words)):
        model.logscore(words[i], words[i - 2 : i])
    return {"fit_s": fit_s, "train_words": sum(map(len, train)),
            "score_tokens_per_s": (len(words) - 2) / (time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("LMBENCH_DATA_DIR"))
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--lmplz", default=shutil.which("lmplz"))
    parser.add_argument("--nltk-sentences", type=int, default=40_000,
                        help="Brown train sentences for the nltk.lm reference (all: ~40k)")
    parser.add_argument("--out", default=None, help="write <out>.md and <out>.json")
    args = parser.parse_args()

    corpus = lmbench.load_corpus("brown", args.data_dir)
    model = lmbench.build_model("ngram", order=args.order, smoothing="modified-kneser-ney")
    started = time.perf_counter()
    model.tokenizer.fit(corpus.train)
    train_ids = model.tokenizer.encode_split(corpus.train)
    tokenize_s = time.perf_counter() - started
    fit_runs = []
    for _ in range(3):
        started = time.perf_counter()
        model.fit_ids(train_ids)
        fit_runs.append(time.perf_counter() - started)
    results = [lmbench.evaluate(model, corpus, "test", EvalConfig(progress=False))
               for _ in range(3)]
    ours = {
        "order": args.order, "train_tokens": int(len(train_ids)),
        "vocab_size": model.tokenizer.vocab_size, "n_grams": model.n_grams(),
        "tokenize_s": tokenize_s, "fit_s_median": float(np.median(fit_runs)),
        "fit_s_runs": fit_runs,
        "test_perplexity": results[0].perplexity, "test_unk_rate": results[0].unk_rate,
        "test_tokens": results[0].n_tokens,
        "score_tokens_per_s_median": float(np.median([r.tokens_per_s for r in results])),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    report = {"lmbench": ours, "env": lmbench.core.results.environment()}
    with tempfile.TemporaryDirectory() as workdir:
        report["kenlm_module_on_our_arpa"] = kenlm_scores_our_arpa(model, corpus, Path(workdir))
        if args.lmplz:
            report["kenlm_lmplz"] = kenlm_reference(args.lmplz, model.tokenizer, corpus,
                                                    args.order, Path(workdir))
    report["nltk_kn3"] = nltk_reference(corpus, args.nltk_sentences, 300)

    lines = [
        f"# Brown, closed-vocabulary word track, modified Kneser-Ney order {args.order}",
        "", f"Command: `python {' '.join(sys.argv)}`", "",
        f"Machine: {describe_cpu(report['env'])}, "
        f"torch {report['env']['torch']}", "",
        "| system | fit s | test perplexity | scoring tokens/s |", "|---|---:|---:|---:|",
        f"| lmbench mkn-{args.order} | {ours['fit_s_median']:.2f} (+{tokenize_s:.2f} tokenize) | "
        f"{ours['test_perplexity']:.2f} | {ours['score_tokens_per_s_median']:,.0f} |",
    ]
    if "kenlm_lmplz" in report:
        ken = report["kenlm_lmplz"]
        lines.append(f"| KenLM lmplz -o {args.order} | {ken['fit_s']:.2f} | "
                     f"{ken['perplexity']:.2f} | |")
    arpa = report["kenlm_module_on_our_arpa"]
    lines.append("| kenlm module on lmbench's ARPA | | | "
                 f"{arpa['full_scores_tokens_per_s']:,.0f} |")
    nl = report["nltk_kn3"]
    lines.append(f"| nltk.lm KneserNeyInterpolated(3), {nl['train_words']:,} words | "
                 f"{nl['fit_s']:.2f} | | {nl['score_tokens_per_s']:,.1f} |")
    lines += ["", f"Peak RSS of the benchmark process: {ours['peak_rss_mb']:,.0f} MB. "
              f"Largest per-token |log10 p| difference, kenlm vs lmbench on lmbench's ARPA: "
              f"{arpa['max_abs_log10_diff']:.2e}. Test tokens: {ours['test_tokens']:,} "
              f"(<unk> rate {ours['test_unk_rate']:.2%})."]
    if "kenlm_lmplz" in report:
        ratio = ours["test_perplexity"] / report["kenlm_lmplz"]["perplexity"]
        lines.append(f"lmbench / lmplz perplexity ratio: {ratio:.5f}.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}.md").write_text(text)
        Path(f"{args.out}.json").write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
