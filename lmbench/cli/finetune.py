"""``lmbench finetune BASE.npz --corpus NAME --method lora --rank 8 --out DIR``: one PEFT run
(``--method prompt --n-prompt-tokens 20 --init vocab``, ``--method prefix --n-prefix-tokens 10``
and ``--method adapters --bottleneck 16`` likewise).

The command is a one-model run file (``lmbench.runs.config``: ``init = BASE``, a ``[peft]``
table from the method flags, ``train`` from the budget flags) run by ``lmbench.runs.runner.run``
with ``save_models``, so it writes what ``lmbench run`` writes: an ordinary record
``DIR/<run-id>/result.json`` (with ``adaptation``: base, digest, method, trainable parameters,
adapter bytes) and the adapter file ``DIR/<run-id>/adapter.npz`` beside it. Everything is
checked before training (the base file, the method, its options, that it fits the base), and a
mistake is one ``lmbench: error:`` line with exit status 2 and nothing written.
"""

from __future__ import annotations

import argparse
import sys

from lmbench.core.errors import LmbenchError
from lmbench.core.toml import tomllib

# flag -> the method option it sets; a flag the chosen method lacks is refused by the method
METHOD_FLAGS = {
    "rank": ("lora: r, the rank of B A", int),
    "alpha": ("lora: the update is scaled by alpha / rank", float),
    "dropout": ("lora: dropout on the LoRA path", float),
    "targets": ("lora: comma-separated roles to adapt (see lmbench models)", str),
    "bottleneck": ("adapters: the bottleneck width", int),
    "n_prompt_tokens": ("prompt: P, the soft prompt's length", int),
    "init": ("lora: kaiming | gaussian; prompt: random | vocab | text", str),
    "init_text": ("prompt: the text whose token embeddings start the prompt", str),
    "n_prefix_tokens": ("prefix: P, key/value positions per attention layer", int),
    "hidden": ("prefix: the reparameterising MLP's width (--set reparameterize=false: none)",
               int),
}


def _finetune(args: argparse.Namespace) -> None:
    from pathlib import Path

    from lmbench.core.interface import Trainable
    from lmbench.core.io import read_npz
    from lmbench.models import MODELS
    from lmbench.runs.config import parse_config
    from lmbench.runs.runner import run

    base = Path(args.base)
    if not base.is_file():
        raise LmbenchError(f"{base}: base model file not found")
    family = read_npz(base, "a saved model (.npz)")[0].get("family")
    if family not in MODELS:
        raise LmbenchError(f"{base}: names no registered model family ({family!r})")
    if not issubclass(MODELS.get(family), Trainable):
        raise LmbenchError(f"{base}: a {family} model is not neural; finetune adapts a neural "
                           "base (see lmbench models for the PEFT methods of each family)")
    if (args.method is None) == (args.adapter is None):
        raise LmbenchError("finetune needs --method (a new adapter) or --adapter FILE (continue "
                           "a saved one), not both")
    peft = {"method": args.method} if args.adapter is None else {"adapter": args.adapter}
    for flag in METHOD_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            peft[flag] = [t for t in value.split(",") if t] if flag == "targets" else value
    for assignment in args.set or ():
        key, _, value = assignment.partition("=")
        if not key or not _:
            raise LmbenchError(f"--set {assignment!r}: expected KEY=VALUE")
        peft[key] = _value(value)
    train = {key: value for key, value in (
        ("max_steps", args.steps), ("learning_rate", args.learning_rate),
        ("batch_size", args.batch_size), ("seq_len", args.seq_len),
        ("eval_every", args.eval_every), ("seed", args.seed)) if value is not None}
    method = args.method or "adapter"
    table = {"label": args.label or f"{base.stem}-{method}", "family": family,
             "init": str(base), "peft": peft}
    if train:
        table["train"] = train
    data = {"corpus": args.corpus, "splits": ["valid", "test"], "models": [table]}
    if args.data_dir:
        data["data_dir"] = args.data_dir
    if args.device:
        data["device"] = args.device
    config = parse_config(data, "finetune")
    records = run(config, args.out, save_models=True,
                  log=lambda line: print(line, file=sys.stderr))
    record = records[0]
    adaptation = record.adaptation
    test = record.metrics["test"]
    print(f"{record.model}: {adaptation.method} on {adaptation.base_model}, "
          f"{adaptation.n_trainable:,} trainable parameters "
          f"({adaptation.trainable_fraction:.2%} of {adaptation.n_base_params:,}), adapter "
          f"{adaptation.adapter_bytes:,} bytes; {config.corpus} test perplexity "
          f"{test.perplexity:.2f}\nwritten under {Path(args.out) / record.run_id}")


def _value(text: str):
    """A ``--set`` value as TOML reads it (numbers, booleans, strings, lists), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def add_commands(commands) -> None:
    """Add ``finetune`` to the ``lmbench`` subcommands."""
    finetune = commands.add_parser(
        "finetune", help="adapt a saved neural model to a corpus with a PEFT method",
        description="Adapt a saved neural model (BASE.npz from --save-models or model.save) "
        "to a corpus with a parameter-efficient method (lmbench.peft): only the method's new "
        "weights train. Writes an ordinary record and the adapter file under --out.")
    finetune.add_argument("base", help="the base model's .npz")
    finetune.add_argument("--corpus", required=True, help="corpus name or path to adapt to")
    finetune.add_argument("--method",
                          help="lora, adapters, prompt, prefix (lmbench models: which per family)")
    finetune.add_argument("--adapter", help="continue training a saved adapter file of BASE "
                          "(instead of --method)")
    for flag, (text, kind) in METHOD_FLAGS.items():
        finetune.add_argument(f"--{flag.replace('_', '-')}", type=kind, help=text)
    finetune.add_argument("--set", action="append", metavar="KEY=VALUE",
                          help="any other option of the method (repeatable)")
    finetune.add_argument("--steps", type=int, help="train.max_steps (default: the base's)")
    finetune.add_argument("--learning-rate", type=float, help="train.learning_rate")
    finetune.add_argument("--batch-size", type=int, help="train.batch_size")
    finetune.add_argument("--seq-len", type=int, help="train.seq_len")
    finetune.add_argument("--eval-every", type=int, help="train.eval_every")
    finetune.add_argument("--seed", type=int, help="train.seed")
    finetune.add_argument("--label", help="the run's name (default: <base>-<method>)")
    finetune.add_argument("--out", required=True, help="results folder")
    finetune.add_argument("--data-dir", help="data root (default: $LMBENCH_DATA_DIR)")
    finetune.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    finetune.set_defaults(handler=_finetune)
