"""Chain of thought against model size, replayed small (Wei et al. 2022, "Chain-of-thought
prompting elicits reasoning in large language models"; Kojima et al. 2022; Wang et al. 2023).

    python benchmarks/cot_scaling.py --data-dir ../shared --out reports/cot_scaling \
        [--work runs/cot_scaling] [--tiny]

Three character-level GPTs (about 0.2M, 1.3M and 4.8M parameters) are trained from scratch on
one step budget, and the 4.8M one again on four times the steps (``gpt-5M-long``), all on one
mixture of corpus text (Tiny Shakespeare's train split) and addition problems written two ways,
a direct answer and a worked chain (a scratchpad, Nye et al. 2021):

    Q: 347+285
    A: 632

    Q: 347+285
    A: Let's think step by step. 7+5+0=12 4+8+1=13 3+2+1=06. The answer is 632.

Each chain step adds one column and the carry (two result digits, the tens digit the next
carry); the answer is the units digits read back plus the last carry. The mixture's proportions
(``Settings``): ``corpus_fraction`` of the training characters are corpus text, the rest problems
in runs of 1 to 8 of one format (a run reads like a few-shot prompt), ``chain_fraction`` of the
problems in chain form. Operands have 1 to 3 digits (in-distribution); the evaluation problems
(3 digits in-distribution, 4 digits out of distribution) are drawn first and never trained on.

Every model is trained on a step budget (same batches for every size at one budget), so the
figures are the same on a busy machine; the models and each size's evaluated cells are
kept in ``--work`` and reused by a rerun. Every cell is answered by
``lmbench.tasks.evaluator.evaluate_task`` with all its questions in one batch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lmbench
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget
from lmbench.core.io import write_atomic, write_json_atomic, write_text_atomic
from lmbench.models.catalog import load_model
from lmbench.tasks.evaluator import evaluate_task, wilson_interval
from lmbench.tasks.prompting import PromptConfig, preamble, question
from lmbench.tasks.task import Task

EXAMPLES_IN_REPORT = 10  # per cell in <out>.json (every one is kept in <work>/cells/)
COT_TRIGGER = "Let's think step by step."  # Kojima et al. 2022's zero-shot trigger


@dataclass(frozen=True)
class ModelSize:
    name: str
    n_layer: int
    n_embd: int
    n_head: int
    learning_rate: float
    max_steps: int | None = None  # None: Settings.max_steps


@dataclass(frozen=True)
class Settings:
    """Everything the run depends on (recorded in the report)."""

    sizes: tuple[ModelSize, ...] = (
        ModelSize("gpt-0.2M", 2, 96, 4, 3e-3),
        ModelSize("gpt-1M", 4, 160, 4, 3e-3),
        ModelSize("gpt-5M", 6, 256, 8, 1e-3),
        # The 5M model again on four times the steps (four passes over the mixture): how much
        # of its failure at 1,200 steps is size and how much is training.
        ModelSize("gpt-5M-long", 6, 256, 8, 1e-3, max_steps=4800),
    )
    block_size: int = 512  # characters of context: a prompt and its answer must fit
    batch_size: int = 8
    seq_len: int = 512
    max_steps: int = 1200  # step budget (the same batches for every size), unless a size says
    warmup_steps: int = 30
    train_chars: int = 5_000_000  # characters of training mixture (1200 x 8 x 512 reads 1 epoch)
    valid_chars: int = 50_000
    corpus_fraction: float = 0.15  # of training characters: Tiny Shakespeare
    chain_fraction: float = 0.5  # of training problems: written as a worked chain
    train_digits: tuple[int, ...] = (1, 2, 3)  # operand lengths seen in training
    train_digit_weights: tuple[float, ...] = (0.1, 0.2, 0.7)
    eval_digits_in: int = 3
    eval_digits_out: int = 4
    n_eval: int = 60  # questions per distribution
    shots: tuple[int, ...] = (0, 1, 4, 8)
    n_samples: int = 5  # self-consistency: chains sampled per question
    temperature: float = 0.7  # self-consistency sampling temperature
    seed: int = 0
    extra: dict = field(default_factory=dict)


TINY = Settings(
    sizes=(ModelSize("gpt-tiny", 1, 32, 2, 3e-3),),
    block_size=256, batch_size=4, seq_len=64, max_steps=3, warmup_steps=1, train_chars=20_000,
    valid_chars=2_000, n_eval=3, shots=(0, 1), n_samples=2)


# ---------------------------------------------------------------------------------- problems


def direct_text(a: int, b: int) -> tuple[str, str]:
    """(question, answer line) of ``a + b`` with the answer given directly."""
    return f"Q: {a}+{b}\nA:", f" {a + b}\n"


def chain_text(a: int, b: int) -> tuple[str, str]:
    """(question, answer line) of ``a + b`` worked column by column, least significant first."""
    digits_a, digits_b = str(a)[::-1], str(b)[::-1]
    carry, steps = 0, []
    for i in range(max(len(digits_a), len(digits_b))):
        x = int(digits_a[i]) if i < len(digits_a) else 0
        y = int(digits_b[i]) if i < len(digits_b) else 0
        total = x + y + carry
        steps.append(f"{x}+{y}+{carry}={total:02d}")
        carry = total // 10
    return f"Q: {a}+{b}\nA:", f" {COT_TRIGGER} {' '.join(steps)}. The answer is {a + b}.\n"


def draw_operands(rng: random.Random, n_digits: int) -> tuple[int, int]:
    low, high = 10 ** (n_digits - 1) if n_digits > 1 else 0, 10**n_digits - 1
    return rng.randint(low, high), rng.randint(low, high)


def eval_problems(settings: Settings) -> dict[str, list[tuple[int, int]]]:
    """The held-out questions: ``in`` (3 digits) and ``out`` (4 digits), distinct pairs."""
    rng = random.Random(settings.seed * 7919 + 1)
    problems: dict[str, list[tuple[int, int]]] = {}
    for split, n_digits in (("in", settings.eval_digits_in), ("out", settings.eval_digits_out)):
        seen: set[tuple[int, int]] = set()
        while len(seen) < settings.n_eval:
            seen.add(draw_operands(rng, n_digits))
        problems[split] = sorted(seen)
    return problems


def mixture_text(settings: Settings, corpus: str, n_chars: int, seed: int,
                 exclude: set[tuple[int, int]]) -> str:
    """``n_chars`` of training text: corpus passages and runs of problems, blank-line separated,
    in the proportions of ``settings`` (module docstring)."""
    rng = random.Random(seed)
    parts: list[str] = []
    corpus_chars = task_chars = 0
    while corpus_chars + task_chars < n_chars:
        if corpus_chars < settings.corpus_fraction * (corpus_chars + task_chars + 1):
            length = rng.randint(300, 1200)
            start = rng.randrange(0, len(corpus) - length)
            passage = corpus[start : start + length].strip() + "\n\n"
            parts.append(passage)
            corpus_chars += len(passage)
            continue
        write = chain_text if rng.random() < settings.chain_fraction else direct_text
        run = []
        for _ in range(rng.randint(1, 8)):
            n_digits = rng.choices(settings.train_digits, settings.train_digit_weights)[0]
            a, b = draw_operands(rng, n_digits)
            while (a, b) in exclude:
                a, b = draw_operands(rng, n_digits)
            question, answer = write(a, b)
            run.append(question + answer)
        block = "\n".join(run) + "\n"
        parts.append(block)
        task_chars += len(block)
    return "".join(parts)


# ---------------------------------------------------------------------------------- training


def build_mixture(settings: Settings, data_dir: str | None, work: Path) -> Path:
    """Write the mixture corpus folder (train/valid/test.txt) under ``work``; returns it."""
    folder = work / "mixture"
    if (folder / "train.txt").is_file():
        return folder
    shakespeare = lmbench.load_corpus("tinyshakespeare", data_dir)
    exclude = {pair for pairs in eval_problems(settings).values() for pair in pairs}
    train = mixture_text(settings, shakespeare.train.text, settings.train_chars, settings.seed,
                         exclude)
    valid = mixture_text(settings, shakespeare.split("valid").text, settings.valid_chars,
                         settings.seed + 1, exclude)
    for name, text in (("valid", valid), ("test", valid), ("train", train)):
        write_text_atomic(folder / f"{name}.txt", text)
    return folder


def train_size(settings: Settings, size: ModelSize, folder: Path, work: Path) -> Path:
    """Train (or reuse) one model of the ladder; returns its ``.npz``."""
    path = work / "models" / f"{size.name}.npz"
    if path.is_file():
        return path
    corpus = lmbench.load_corpus(str(folder))
    steps = size.max_steps or settings.max_steps
    model = lmbench.build_model(
        "gpt", n_layer=size.n_layer, n_embd=size.n_embd, n_head=size.n_head,
        block_size=settings.block_size, tokenizer="char",
        train={"batch_size": settings.batch_size, "seq_len": settings.seq_len,
               "learning_rate": size.learning_rate, "max_steps": steps,
               "warmup_steps": min(settings.warmup_steps, steps),
               "eval_every": 400, "eval_tokens": 10_000, "checkpoint_every": 100,
               "seed": settings.seed, "progress": False})
    started = time.perf_counter()
    model.fit(corpus, budget=Budget(max_steps=steps),
              checkpoint_dir=work / "checkpoints" / size.name)
    print(f"{size.name}: {model.n_params():,} parameters, {steps} steps in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


# -------------------------------------------------------------------------------- evaluation

MODES = ("direct", "cot", "self-consistency")


def addition_task(settings: Settings, n_digits: int, problems: list[tuple[int, int]]) -> Task:
    """The problems as a ``lmbench.tasks`` generate task in the training format: template
    ``Q: {question}\nA:``, target the sum, chain the worked columns; its train split (the
    exemplar pool) is drawn apart from the test problems."""
    rng = random.Random(settings.seed * 7919 + 100 + n_digits)
    held = set(problems)
    pool: list[tuple[int, int]] = []
    while len(pool) < 4 * max(settings.shots):
        pair = draw_operands(rng, n_digits)
        if pair not in held and pair not in pool:
            pool.append(pair)

    def doc(a: int, b: int) -> dict[str, str]:
        chain = chain_text(a, b)[1].strip()
        return {"question": f"{a}+{b}", "answer": str(a + b), "chain": chain}

    return Task(name=f"addition-{n_digits}digit", kind="generate",
                splits={"train": tuple(doc(a, b) for a, b in pool),
                        "test": tuple(doc(a, b) for a, b in problems)},
                template="Q: {question}\nA:", target="answer", chain_field="chain",
                stop=("\n",), cot_stop=("\n",), max_new_tokens=n_digits + 4,
                cot_max_new_tokens=len(chain_text(10**n_digits - 1, 10**n_digits - 1)[1]) + 8)


def prompt_config(settings: Settings, mode: str, k: int) -> PromptConfig:
    return PromptConfig(num_fewshot=k, cot=mode != "direct",
                        self_consistency=settings.n_samples if mode == "self-consistency"
                        else 1, temperature=settings.temperature, seed=settings.seed)


def fitting_config(settings: Settings, model, task: Task, mode: str, k: int
                   ) -> PromptConfig:
    """The prompt of ``k`` shots, or of the most shots (fewer than k) whose preamble, longest
    question and answer fit the model's window: past it a GPT re-reads its whole window for
    every new token, which this CPU budget cannot pay."""
    window = model.capabilities.max_window or settings.block_size
    longest = max(len(model.tokenizer.encode(question(task, doc, prompt_config(settings, mode, k))))
                  for doc in task.split("test"))
    budget = window - 1 - longest - (task.cot_max_new_tokens if mode != "direct"
                                     else task.max_new_tokens)
    for shots in range(k, -1, -1):
        config = prompt_config(settings, mode, shots)
        if len(model.tokenizer.encode(preamble(task, config))) <= budget:
            return config
    raise LmbenchError(f"a {task.name} question and its answer do not fit the model's window")


def evaluate_cell(settings: Settings, model, task: Task, mode: str, k: int) -> dict:
    """Exact match of one (model, mode, k, distribution) cell through
    ``lmbench.tasks.evaluator.evaluate_task``: strict and flexible extraction,
    ``normalize_answer``, majority vote of the strict answers for self-consistency, Wilson 95%
    intervals. Every question of the cell is answered in one batch after the cached preamble
    (``batch_size``: the questions of a distribution have one length)."""
    config = fitting_config(settings, model, task, mode, k)
    docs = task.split("test")
    result = evaluate_task(model, task, config, batch_size=len(docs))
    examples = [{"question": doc["question"], "target": doc["answer"],
                 "outputs": e.get("samples", [e["output"]]), "extracted": e["extracted"],
                 "correct": e["correct"], "correct_flexible": e["correct_flexible"]}
                for doc, e in zip(docs, result.examples)]
    n, right = len(docs), sum(e["correct"] for e in examples)
    pre_text = preamble(task, config)
    return {"mode": mode, "k": k, "shots_used": config.num_fewshot, "n": n,
            "exact_match": right / n, "exact_match_ci95": wilson_interval(right, n),
            "exact_match_flexible": result.score.metrics["exact_match_flexible"],
            "prompt_tokens": len(model.tokenizer.encode(pre_text)) if pre_text else 0,
            "examples": examples}


def evaluate_models(settings: Settings, work: Path, only: str | None = None) -> list[dict]:
    """Every cell of sizes x modes x k x {in, out}; each size's cells are kept in
    ``work/cells/<size>.json`` and reused (a size can be evaluated while another trains)."""
    problems = eval_problems(settings)
    tasks = {"in": addition_task(settings, settings.eval_digits_in, problems["in"]),
             "out": addition_task(settings, settings.eval_digits_out, problems["out"])}
    cells = []
    for size in settings.sizes:
        saved = work / "cells" / f"{size.name}.json"
        if saved.is_file():
            cells.extend(json.loads(saved.read_text())["cells"])
            continue
        if only is not None and size.name != only:
            continue
        model = load_model(work / "models" / f"{size.name}.npz")
        mine = []
        for split, task in tasks.items():
            for mode in MODES:
                for k in settings.shots:
                    started = time.perf_counter()
                    cell = evaluate_cell(settings, model, task, mode, k)
                    cell.update(model=size.name, n_params=model.n_params(), split=split,
                                seconds=time.perf_counter() - started)
                    print(f"{size.name} {split} {mode} k={k}: {cell['exact_match']:.2f} "
                          f"({cell['seconds']:.0f} s)", file=sys.stderr, flush=True)
                    mine.append(cell)
        write_json_atomic(saved, {"cells": mine})
        cells.extend(mine)
    return cells


# ------------------------------------------------------------------------------------ report


def _table(cells: list[dict], split: str) -> str:
    sizes = list(dict.fromkeys(c["model"] for c in cells))
    shots = sorted({c["k"] for c in cells})
    head = "| model | mode | " + " | ".join(f"k={k}" for k in shots) + " |"
    lines = [head, "|" + "---|" * (2 + len(shots))]
    for size in sizes:
        for mode in MODES:
            row = {c["k"]: c for c in cells
                   if c["model"] == size and c["mode"] == mode and c["split"] == split}
            values = []
            for k in shots:
                c = row[k]
                low, high = c["exact_match_ci95"]
                note = "" if c["shots_used"] == k else f" ({c['shots_used']} fit)"
                values.append(f"{100 * c['exact_match']:.0f} [{100 * low:.0f}, "
                              f"{100 * high:.0f}]{note}")
            lines.append(f"| {size} | {mode} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def best_by_mode(cells: list[dict]) -> dict:
    """{model: {split: {mode: (exact match, k)}}} at each mode's best k."""
    best: dict = {}
    for c in cells:
        slot = best.setdefault(c["model"], {}).setdefault(c["split"], {})
        if c["mode"] not in slot or c["exact_match"] > slot[c["mode"]][0]:
            slot[c["mode"]] = (c["exact_match"], c["k"])
    return best


def plot(cells: list[dict], path: Path) -> None:
    """Exact match at each mode's best k against parameters, in and out of distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    best = best_by_mode(cells)
    params = {c["model"]: c["n_params"] for c in cells}
    sizes, again = [], []  # the step-matched ladder; a size trained longer is a point apart
    for size in best:
        (again if params[size] in {params[s] for s in sizes} else sizes).append(size)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, split, title in zip(axes, ("in", "out"), ("3-digit (in distribution)",
                                                      "4-digit (out of distribution)")):
        for mode, marker in zip(MODES, "osD"):
            (line,) = ax.plot([params[s] for s in sizes],
                              [100 * best[s][split][mode][0] for s in sizes],
                              marker=marker, label=mode)
            for size in again:
                y = 100 * best[size][split][mode][0]
                ax.plot([params[size]], [y], marker=marker, color=line.get_color(),
                        fillstyle="none", markersize=9, linestyle="none")
                if mode == MODES[0] or y > 0:  # one label per point drawn apart
                    ax.annotate(size, (params[size], y), textcoords="offset points",
                                xytext=(6, -3), fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labels overlapped
        ax.set_xlabel("parameters")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("exact match, % (best k)")
    axes[0].legend()
    fig.tight_layout()
    write_atomic(path, lambda out: fig.savefig(out, format="png", dpi=110))
    plt.close(fig)


def write_report(settings: Settings, cells: list[dict], logs: dict, out: Path,
                 command: str, notes: str = "") -> None:
    best = best_by_mode(cells)
    summary = []
    for size, splits in best.items():
        for split, modes in splits.items():
            direct, chain = modes["direct"][0], max(modes["cot"][0], modes["self-consistency"][0])
            verdict = ("chain of thought helps" if chain > direct else
                       "chain of thought hurts" if chain < direct else "no difference")
            summary.append(f"- {size}, {split}: " + ", ".join(
                f"{mode} {100 * em:.0f}% (k={k})" for mode, (em, k) in modes.items())
                + f": {verdict} ({100 * (chain - direct):+.0f} points, best chain mode "
                "against best direct)")
    formed = []
    for size in best:
        rates = []
        for mode in MODES:
            outputs = [o for c in cells if c["model"] == size and c["mode"] == mode
                       for e in c["examples"] for o in e["outputs"]]
            ok = [o for o in outputs if (re.search(r"The answer is \d+\.$", o) if mode != "direct"
                                         else re.fullmatch(r" \d+", o))]
            rates.append(f"{mode} {100 * len(ok) / max(1, len(outputs)):.0f}%")
        formed.append(f"- {size}: " + ", ".join(rates))
    md = [
        "# Chain of thought against model size (addition, character GPTs)",
        "",
        f"Command: `{command}`",
        "",
        "Settings (step budgets; the figures do not depend on machine speed):",
        "",
        "```json",
        json.dumps(asdict(settings), indent=1),
        "```",
        "",
        "Training (one run per size, the same batches):",
        "",
        "| model | parameters | steps | tokens | seconds | best valid nats/char |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | {log['n_params']:,} | {log['steps']} | {log['tokens']:,} | "
          f"{log['seconds']:.0f} | "
          + ("n/a" if log["best_valid_nats"] is None else f"{log['best_valid_nats']:.3f}") + " |"
          for name, log in logs.items()],
        "",
        "Exact match, % [95% Wilson interval], strict extraction (direct: the answer line; "
        "chain: `The answer is N.`; self-consistency: majority of the sampled chains' last "
        "numbers). `(n fit)`: only the last n exemplars fit in the context.",
        "",
        f"## In distribution: {settings.eval_digits_in}-digit + {settings.eval_digits_in}-digit",
        "",
        _table(cells, "in"),
        "",
        f"## Out of distribution: {settings.eval_digits_out}-digit operands (never trained on)",
        "",
        _table(cells, "out"),
        "",
        "## Best prompting mode per size",
        "",
        *summary,
        "",
        "Outputs in the trained format (direct: one number; chain: steps ending `The answer is "
        "N.`), over every cell:",
        "",
        *formed,
        "",
        f"![exact match against size]({out.name}.png)",
        "",
    ]
    if notes:
        md += ["", notes.rstrip()]
    write_text_atomic(out.with_suffix(".md"), "\n".join(md))
    kept = [{**c, "examples": c["examples"][:EXAMPLES_IN_REPORT]} for c in cells]
    write_json_atomic(out.with_suffix(".json"), {"settings": asdict(settings),
                                                 "training": logs, "cells": kept,
                                                 "examples_per_cell": EXAMPLES_IN_REPORT,
                                                 "best": best, "command": command})
    plot(cells, out.with_suffix(".png"))


def main(argv: list[str] | None = None) -> list[dict] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("LMBENCH_DATA_DIR"))
    parser.add_argument("--work", default="runs/cot_scaling", help="mixture and models")
    parser.add_argument("--out", default=None, help="write <out>.md, <out>.json, <out>.png")
    parser.add_argument("--only", default=None,
                        help="train and evaluate only this size (by name); the report takes "
                        "every size evaluated so far")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--notes", metavar="MD", help="a Markdown file of findings appended to "
                        "the report")
    args = parser.parse_args(argv)
    settings = TINY if args.tiny else Settings()
    work = Path(args.work)
    folder = build_mixture(settings, args.data_dir, work)
    for size in settings.sizes:
        if args.only is None or size.name == args.only:
            train_size(settings, size, folder, work)
    if args.train_only:
        return None
    cells = evaluate_models(settings, work, args.only)
    evaluated = list(dict.fromkeys(c["model"] for c in cells))
    logs = {}
    for size in (s for s in settings.sizes if s.name in evaluated):
        model = load_model(work / "models" / f"{size.name}.npz")
        log = model.training_log() or {}
        logs[size.name] = {"n_params": model.n_params(), **{key: log.get(key) for key in (
            "steps", "tokens", "seconds", "best_valid_nats", "best_step")}}
    if args.out:
        command = " ".join(["python benchmarks/cot_scaling.py", *(sys.argv[1:] if argv is None
                                                                   else argv)])
        notes = Path(args.notes).read_text(encoding="utf-8") if args.notes else ""
        write_report(settings, cells, logs, Path(args.out), command, notes)
    return cells


if __name__ == "__main__":
    main()
