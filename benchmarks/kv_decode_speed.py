"""gpt decode speed with the KV cache versus recomputing the prefix at every step.

    python benchmarks/kv_decode_speed.py [--model-file runs/<id>/model.npz] [--new-tokens 256]

Times ``lmbench.inference.sampling.generate`` continuing a ``--prompt-len``-token prompt by
``--new-tokens`` tokens (pure sampling, one seed), once with ``use_cache=True`` (the prompt is
read once, then one token per call, continuing the ``KVCache``) and once with ``use_cache=False``
(the whole prefix is re-read at every step), best of ``--repeats`` after a warm-up, and prints
the ratio; the issue's target is >= 5x for 256 tokens. Without ``--model-file`` the model is an
untrained gpt of nanoGPT's Shakespeare-char shape (6 layers, 6 heads, 384 wide) over printable
ASCII characters: decode cost does not depend on the weights' values. Its ``block_size`` holds
the prompt and every new token, so the cache never slides (past ``block_size`` a gpt recomputes
its window, cached or not). ``--quick`` times a tiny model on a few tokens with one thread (a
smoke test). The last line of stdout is one JSON document.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import time

import torch

from lmbench.data.corpora import Split
from lmbench.inference.sampling import generate
from lmbench.models import build_model, load_model
from lmbench.models.gpt import GPTLM

TARGET = 5.0  # the speed-up target for 256 tokens


def untrained_gpt(n_layer: int, n_head: int, n_embd: int, block_size: int) -> GPTLM:
    model = build_model("gpt", n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                        block_size=block_size, tokenizer="char")
    model.tokenizer.fit(Split("train", string.printable, ()))
    torch.manual_seed(0)
    model.net = model.build_network(model.tokenizer.vocab_size)
    return model


def best_time(model, prompt: list[int], n_new: int, use_cache: bool, repeats: int
              ) -> tuple[float, list[int]]:
    best, ids = float("inf"), []
    for _ in range(repeats):
        started = time.perf_counter()
        ids = generate(model, prompt, n_new, seed=0, use_cache=use_cache)
        best = min(best, time.perf_counter() - started)
    return best, ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-file", help="a saved gpt (default: an untrained one)")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="tiny model, few tokens, 1 thread")
    args = parser.parse_args(argv)
    if args.quick:
        args.new_tokens, args.prompt_len, args.repeats = 24, 8, 1
        args.threads = args.threads or 1  # a smoke test should not contend for every core
        shape = dict(n_layer=2, n_head=2, n_embd=32)
    else:
        shape = dict(n_layer=6, n_head=6, n_embd=384)
    if args.threads:
        torch.set_num_threads(args.threads)
    block_size = args.prompt_len + args.new_tokens + 1  # boundary + prompt + every new token
    model = (load_model(args.model_file) if args.model_file
             else untrained_gpt(block_size=block_size, **shape))
    if not isinstance(model, GPTLM):
        print(f"kv_decode_speed: error: {args.model_file} is a {model.name} model, not gpt",
              file=sys.stderr)
        return 2
    window = model.config_.block_size
    if window < block_size:
        print(f"note: block_size {window} < {block_size} tokens: past it the window slides and "
              "both paths recompute it, which caps the speed-up", file=sys.stderr)
    text = "ROMEO:\nBut, soft! what light through yonder window breaks? " * 8
    prompt = model.tokenizer.encode(text)[: args.prompt_len]
    generate(model, prompt, 4, use_cache=True)  # warm-up: allocator, kernels
    generate(model, prompt, 4, use_cache=False)
    cached_s, cached_ids = best_time(model, prompt, args.new_tokens, True, args.repeats)
    uncached_s, uncached_ids = best_time(model, prompt, args.new_tokens, False, args.repeats)
    speedup = uncached_s / cached_s
    record = {
        "model": args.model_file or f"untrained gpt {shape}, block_size {window}",
        "new_tokens": args.new_tokens, "prompt_len": len(prompt),
        "threads": torch.get_num_threads(),
        "cached_s": cached_s, "uncached_s": uncached_s,
        "cached_tokens_per_s": args.new_tokens / cached_s,
        "uncached_tokens_per_s": args.new_tokens / uncached_s,
        "speedup": speedup, "target": TARGET, "same_tokens": cached_ids == uncached_ids,
    }
    print(f"KV cache:       {cached_s:8.3f} s  {record['cached_tokens_per_s']:10,.0f} tokens/s")
    print(f"recompute:      {uncached_s:8.3f} s  {record['uncached_tokens_per_s']:10,.0f} tokens/s")
    print(f"speed-up {speedup:.1f}x for {args.new_tokens} tokens (target >= {TARGET:g}x: "
          f"{'met' if speedup >= TARGET else 'NOT met'}); same tokens: {record['same_tokens']}")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
