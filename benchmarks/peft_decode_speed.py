"""Decode speed of a merged-LoRA gpt against its base model, measured in the same run.

    python benchmarks/peft_decode_speed.py [--new-tokens 256] [--out reports/peft_decode_speed]

LoRA (``lmbench.peft.lora``) on every linear layer of a gpt (q, k, v, the attention output and
the MLP, rank 8), with random non-zero B so the update is real, then ``peft.merge``: the update
is folded into the base weights and the plain layers go back into the network, so the merged
model should decode at the base's speed (the issue's target: within 5% of the base's tokens/s).
The unmerged adapted model (an extra low-rank product per layer) is timed for reference.

Each model continues a ``--prompt-len``-token prompt by ``--new-tokens`` tokens through
``lmbench.inference.sampling.generate`` (KV cache, one seed); the three models are timed in turn,
``--repeats`` rounds after a warm-up, and the best time of each is kept (interleaving keeps a
load change from favouring one model). The model is an untrained gpt of nanoGPT's
Shakespeare-char shape (6 layers, 6 heads, 384 wide) over printable ASCII: decode cost does not
depend on the weights' values. ``--quick``: a tiny model and few tokens on one thread (a smoke
test). Writes ``OUT.md`` and ``OUT.json`` (through ``lmbench.core.io``); the last line of stdout
is the JSON document.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import time
from pathlib import Path

import torch

from lmbench import peft
from lmbench.core.io import write_json_atomic, write_text_atomic
from lmbench.data.corpora import Split
from lmbench.inference.sampling import generate
from lmbench.models import build_model
from lmbench.models.gpt import GPTLM

TARGET_RATIO = 0.95  # merged tokens/s over the base's: within 5%
TARGETS = ("q", "k", "v", "attn_out", "mlp")


def untrained_gpt(n_layer: int, n_head: int, n_embd: int, block_size: int) -> GPTLM:
    model = build_model("gpt", n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                        block_size=block_size, tokenizer="char")
    model.tokenizer.fit(Split("train", string.printable, ()))
    torch.manual_seed(0)
    model.net = model.build_network(model.tokenizer.vocab_size)
    return model


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="reports/peft_decode_speed",
                        help="writes OUT.md and OUT.json")
    parser.add_argument("--quick", action="store_true", help="tiny model, few tokens, 1 thread")
    args = parser.parse_args(argv)
    if args.quick:
        args.new_tokens, args.prompt_len, args.repeats = 24, 8, 2
        args.threads = args.threads or 1
        shape = dict(n_layer=2, n_head=2, n_embd=32)
    else:
        shape = dict(n_layer=6, n_head=6, n_embd=384)
    if args.threads:
        torch.set_num_threads(args.threads)
    block_size = args.prompt_len + args.new_tokens + 1  # the cache never slides
    base = untrained_gpt(block_size=block_size, **shape)
    adapted = peft.adapt(base, peft.LoRAConfig(rank=args.rank, targets=TARGETS))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # B = 0 would make the update vanish; a real update is timed
        for parameter in adapted.adapter_state().values():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    merged = peft.merge(adapted)
    models = {"base": base, "merged": merged, "unmerged": adapted}
    text = "ROMEO:\nBut, soft! what light through yonder window breaks? " * 8
    prompt = base.tokenizer.encode(text)[: args.prompt_len]
    for model in models.values():  # warm-up: allocator, kernels
        generate(model, prompt, 4)
    best = dict.fromkeys(models, float("inf"))
    outputs = {}
    for _ in range(args.repeats):
        for name, model in models.items():
            started = time.perf_counter()
            outputs[name] = generate(model, prompt, args.new_tokens, seed=0)
            best[name] = min(best[name], time.perf_counter() - started)
    rates = {name: args.new_tokens / seconds for name, seconds in best.items()}
    ratio = rates["merged"] / rates["base"]
    report = {
        "settings": {"shape": shape, "block_size": block_size, "rank": args.rank,
                     "targets": list(TARGETS), "new_tokens": args.new_tokens,
                     "prompt_len": len(prompt), "repeats": args.repeats,
                     "threads": torch.get_num_threads()},
        "n_trainable": adapted.n_trainable(), "trainable_fraction": adapted.trainable_fraction(),
        "seconds": best, "tokens_per_s": rates,
        "merged_over_base": ratio, "unmerged_over_base": rates["unmerged"] / rates["base"],
        "target_ratio": TARGET_RATIO, "met": ratio >= TARGET_RATIO,
        "merged_same_tokens_as_unmerged": outputs["merged"] == outputs["unmerged"],
    }
    lines = ["# Merged LoRA decode speed (gpt)", "",
             f"Untrained gpt {shape}, LoRA rank {args.rank} on {', '.join(TARGETS)} "
             f"({adapted.n_trainable():,} trainable, {adapted.trainable_fraction():.2%} of the "
             f"base); {args.new_tokens} new tokens after a {len(prompt)}-token prompt, best of "
             f"{args.repeats} interleaved rounds, {torch.get_num_threads()} threads.", "",
             "| model | seconds | tokens/s | / base |", "|---|---:|---:|---:|"]
    for name in models:
        lines.append(f"| {name} | {best[name]:.3f} | {rates[name]:,.0f} | "
                     f"{rates[name] / rates['base']:.3f} |")
    lines += ["", f"Merged / base = {ratio:.3f} (target >= {TARGET_RATIO}: "
              f"{'met' if report['met'] else 'NOT met'}); merged and unmerged sample the same "
              f"tokens: {report['merged_same_tokens_as_unmerged']}.",
              "", "Command: `python benchmarks/peft_decode_speed.py`", ""]
    out = Path(args.out)
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines))
    write_json_atomic(out.with_suffix(".json"), report)
    for name in models:
        print(f"{name:9s} {best[name]:8.3f} s  {rates[name]:10,.0f} tokens/s")
    print(f"merged / base = {ratio:.3f} (target >= {TARGET_RATIO}: "
          f"{'met' if report['met'] else 'NOT met'})")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)
