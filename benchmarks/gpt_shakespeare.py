"""nanoGPT's CPU "baby GPT" on Tiny Shakespeare characters, within a wall-clock training budget.

    python benchmarks/gpt_shakespeare.py --data-dir ../shared [--seconds 48] \
        [--out reports/gpt_shakespeare]

Shape as nanoGPT's README CPU run: 4 layers, 4 heads, 128 wide, context 64, batch 12, no dropout,
AdamW (beta2 0.99, weight decay 0.1), gradient clipping 1.0. lmbench changes the schedule only:
peak learning rate 4e-3 with 30 warm-up steps and a cosine decay over the time budget (nanoGPT:
1e-3, 100 warm-up steps, 2,000 iterations), and trains in bf16 autocast.

Reports, measured in this run:
- the matmul peak of this machine (fp32 and bf16, a 2048^3 product),
- validation loss by nanoGPT's protocol (``estimate_loss``: 200 batches of 12 random 64-character
  windows, mean loss over every position) to compare with nanoGPT's 1.886 nats/char,
- lmbench's evaluator on the full validation split (each character scored once, with at least 32
  characters of context) in nats/char and bits per byte,
- training throughput in tokens/s and as a fraction of the measured peak (FLOPs per token by
  nanoGPT's ``estimate_mfu``: 6N + 12 L H Q T).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import lmbench
from lmbench.core.interface import Budget
from lmbench.core.results import describe_cpu
from lmbench.evaluation.resources import matmul_peak_flops


def nanogpt_val_loss(net, val: torch.Tensor, block: int = 64, batch: int = 12, iters: int = 200,
                     seed: int = 1337) -> float:
    """nanoGPT's estimate_loss on the validation split (fixed seed)."""
    generator = torch.Generator().manual_seed(seed)
    losses = []
    net.eval()
    with torch.inference_mode():
        for _ in range(iters):
            starts = torch.randint(len(val) - block, (batch,), generator=generator)
            x = torch.stack([val[i : i + block] for i in starts])  # (B, T)
            y = torch.stack([val[i + 1 : i + 1 + block] for i in starts])
            logits, _ = net(x, None, want_state=False)  # (B, T, V)
            losses.append(F.cross_entropy(logits.flatten(0, 1), y.flatten()).item())
    return float(np.mean(losses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("LMBENCH_DATA_DIR"))
    parser.add_argument("--seconds", type=float, default=48.0, help="training budget")
    parser.add_argument("--out", default=None, help="write <out>.md and <out>.json")
    args = parser.parse_args()

    peak_fp32 = matmul_peak_flops(torch.float32, size=2048, repeats=5)
    peak_bf16 = matmul_peak_flops(torch.bfloat16, size=2048, repeats=5)
    corpus = lmbench.load_corpus("tinyshakespeare", args.data_dir)
    train = {"batch_size": 12, "seq_len": 64, "learning_rate": 4e-3, "warmup_steps": 30,
             "min_lr_ratio": 0.1, "weight_decay": 0.1, "beta2": 0.99, "grad_clip": 1.0,
             "max_steps": None, "max_seconds": args.seconds, "eval_every": 10**9,
             "bf16": True, "progress": False}
    model = lmbench.build_model("gpt", n_layer=4, n_head=4, n_embd=128, block_size=64,
                                dropout=0.0, tokenizer="char", train=train)
    model.fit(corpus, valid=False, budget=Budget(max_seconds=args.seconds))
    log = model.train_log_
    val = torch.from_numpy(model.tokenizer.encode_split(corpus.split("valid")))
    nanogpt_loss = nanogpt_val_loss(model.net, val)
    result = lmbench.evaluate(model, corpus, "valid", lmbench.EvalConfig(progress=False))

    config = model.config_
    n_params = model.n_params() - config.block_size * config.n_embd  # nanoGPT omits wpe
    flops_per_token = 6 * n_params + 12 * config.n_layer * config.n_embd * config.block_size
    tokens_per_s = log.tokens / log.seconds
    report = {
        "peak_fp32_flops": peak_fp32, "peak_bf16_flops": peak_bf16,
        "train_seconds": log.seconds, "steps": log.steps, "tokens": log.tokens,
        "tokens_per_s": tokens_per_s, "ms_per_step": 1000 * log.seconds / log.steps,
        "flops_per_token": flops_per_token,
        "fraction_of_fp32_peak": tokens_per_s * flops_per_token / peak_fp32,
        "fraction_of_bf16_peak": tokens_per_s * flops_per_token / peak_bf16,
        "nanogpt_protocol_val_loss": nanogpt_loss,
        "lmbench_val_nats_per_char": result.nll_nats / result.n_tokens,
        "lmbench_val_bits_per_byte": result.bits_per_byte, "n_params": model.n_params(),
        "env": lmbench.core.results.environment(),
    }
    target = 1.886
    lines = [
        "# Tiny Shakespeare (characters): nanoGPT's baby GPT in a wall-clock budget", "",
        f"Command: `python {' '.join(sys.argv)}`", "",
        f"Machine: {describe_cpu(report['env'])}, torch "
        f"{report['env']['torch']}; measured matmul peak {peak_fp32 / 1e12:.2f} TFLOP/s fp32, "
        f"{peak_bf16 / 1e12:.2f} TFLOP/s bf16.", "",
        "| figure | value |", "|---|---:|",
        f"| training wall-clock (s) | {log.seconds:.1f} |",
        f"| steps (batch 12 x 64) | {log.steps:,} ({report['ms_per_step']:.1f} ms/step) |",
        f"| training tokens/s | {tokens_per_s:,.0f} |",
        f"| fraction of fp32 / bf16 matmul peak | {report['fraction_of_fp32_peak']:.1%} / "
        f"{report['fraction_of_bf16_peak']:.1%} |",
        f"| val loss, nanoGPT protocol (nats/char) | {nanogpt_loss:.4f} (nanoGPT: {target}) |",
        f"| val loss, lmbench evaluator (nats/char) | {report['lmbench_val_nats_per_char']:.4f} |",
        f"| val bits per byte, lmbench evaluator | {result.bits_per_byte:.4f} |",
        f"| parameters | {model.n_params():,} |", "",
        f"Reached nanoGPT's 1.886 within the budget: "
        f"{'yes' if nanogpt_loss <= target else 'no'}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}.md").write_text(text)
        Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
