"""CPU against CUDA: the same models, seeds and step budget on both, and the numbers must agree.

    python benchmarks/gpu_check.py --data-dir ../shared --out reports/gpu_check
    python benchmarks/gpu_check.py --data-dir ../shared --out /tmp/g --cpu-only --tiny --steps 3

For a char-level gpt (nanoGPT's baby GPT shape, 4 layers x 128) and a 2-layer LSTM on Tiny
Shakespeare, each trained ``--steps`` steps from one seed on the CPU and on CUDA (fp32 on both:
bf16 autocast would round differently on the two, and the point is the device path), it checks:

1. trained on each device: the validation loss at the end of training and the test perplexity
   (the evaluator on the first ``--score-tokens`` test ids) agree within ``--tolerance``
   (relative; the trajectories differ by float rounding of different kernels: cuBLAS / cuDNN,
   TF32 in cuDNN's LSTM);
2. the CPU-trained weights moved to CUDA (``model.to("cuda")``) score the same perplexity within
   ``--same-weights-tolerance``: kernels alone, no training divergence;
3. greedy decoding with the KV cache equals recomputation without it, on each device (gpt).

It prints one JSON summary (also written to ``<out>/gpu_check.json``) with the differences and
training / scoring tokens/s on each device, and exits 1 when a check fails. Without CUDA it says
so in one line and exits 0; ``--cpu-only`` runs the CPU half alone (for testing the script). The
default budget (200 steps each) takes well under 3 minutes on a GPU machine's CPU and GPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import lmbench
from lmbench.core.device import describe_device
from lmbench.core.io import write_json_atomic
from lmbench.core.results import environment
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.inference.sampling import SamplingConfig, generate

GREEDY = SamplingConfig(temperature=0)


@dataclass(frozen=True)
class Settings:
    corpus: str = "tinyshakespeare"
    steps: int = 200  # training steps per model and device
    score_tokens: int = 16_384  # test ids scored per model and device
    valid_tokens: int = 4_096  # valid ids scored at the end of training
    new_tokens: int = 48  # greedy ids decoded for the KV-cache check
    tolerance: float = 0.03  # relative: trained on the CPU vs trained on CUDA
    same_weights_tolerance: float = 0.005  # relative: one set of weights scored on both
    tiny: bool = False  # toy sizes (seconds on a CPU; for testing the script)
    seed: int = 0


def model_specs(settings: Settings) -> dict[str, tuple[str, dict]]:
    """family and options of each checked model."""
    train = {"max_steps": settings.steps, "warmup_steps": max(1, settings.steps // 10),
             "learning_rate": 3e-3, "eval_every": settings.steps,
             "eval_tokens": settings.valid_tokens, "bf16": False, "seed": settings.seed,
             "progress": False}
    if settings.tiny:
        return {"gpt": ("gpt", {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32,
                                "train": {**train, "batch_size": 4, "seq_len": 32}}),
                "lstm": ("lstm", {"embed_dim": 16, "hidden_dim": 16, "n_layer": 1,
                                  "dropout": 0.0, "tokenizer": "char",
                                  "train": {**train, "batch_size": 4, "seq_len": 32}})}
    return {"gpt": ("gpt", {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128,
                            "dropout": 0.0, "tokenizer": "char",
                            "train": {**train, "batch_size": 16, "seq_len": 128}}),
            "lstm": ("lstm", {"embed_dim": 128, "hidden_dim": 256, "n_layer": 2, "dropout": 0.0,
                              "tokenizer": "char",
                              "train": {**train, "batch_size": 16, "seq_len": 64}})}


def _perplexity(model, ids: np.ndarray) -> tuple[float, float]:
    """exp(mean NLL) of the ids, and scoring tokens/s."""
    started = time.perf_counter()
    nll = score_stream(model, ids, EvalConfig(progress=False))  # ends on the host: synchronised
    return float(np.exp(nll.mean())), len(ids) / (time.perf_counter() - started)


def _kv_cache_agrees(model, prompt: list[int], new_tokens: int) -> bool:
    cached = generate(model, prompt, new_tokens, sampler=GREEDY, use_cache=True)
    recomputed = generate(model, prompt, new_tokens, sampler=GREEDY, use_cache=False)
    return cached == recomputed


def _relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def measure(family: str, options: dict, corpus, device: str, settings: Settings):
    """Train on ``device``, then score and decode there: (the model, its figures)."""
    model = lmbench.build_model(family, **options).to(device)
    started = time.perf_counter()
    model.fit(corpus)
    fit_s = time.perf_counter() - started
    log = model.training_log()
    test_ids = model.tokenizer.encode_split(corpus.split("test"))[: settings.score_tokens]
    perplexity, score_rate = _perplexity(model, test_ids)
    figures = {"device": describe_device(model.device), "fit_s": round(fit_s, 2),
               "valid_nats": log["best_valid_nats"], "test_perplexity": perplexity,
               "train_tokens_per_s": log["tokens"] / log["seconds"],
               "score_tokens_per_s": score_rate}
    if family == "gpt":
        window = options["block_size"] - settings.new_tokens
        prompt = test_ids[: max(1, min(16, window))].tolist()
        figures["kv_cache_equals_recomputation"] = _kv_cache_agrees(model, prompt,
                                                                    settings.new_tokens)
    return model, figures


def check(settings: Settings, data_dir: str | None, cpu_only: bool) -> dict:
    """Every model on the CPU (and on CUDA unless ``cpu_only``); the summary with ``ok``."""
    corpus = lmbench.load_corpus(settings.corpus, data_dir)
    new_tokens = settings.new_tokens if not settings.tiny else 8
    settings = Settings(**{**asdict(settings), "new_tokens": new_tokens})
    summary = {"settings": asdict(settings), "cuda": None, "models": {}, "failures": []}
    env = environment()
    summary["machine"] = {"cpu": env["cpu"], "threads": env["threads"], "torch": env["torch"]}
    if not cpu_only:
        summary["cuda"] = describe_device("cuda")
    for name, (family, options) in model_specs(settings).items():
        cpu_model, cpu = measure(family, options, corpus, "cpu", settings)
        row = {"cpu": cpu}
        if not cpu_only:
            _, cuda = measure(family, options, corpus, "cuda", settings)
            moved = copy.deepcopy(cpu_model).to("cuda")  # the CPU's weights, scored on CUDA
            test_ids = cpu_model.tokenizer.encode_split(corpus.split("test"))
            same_weights, _ = _perplexity(moved, test_ids[: settings.score_tokens])
            row.update({
                "cuda": cuda,
                "valid_nats_rel_diff": _relative(cuda["valid_nats"], cpu["valid_nats"]),
                "test_perplexity_rel_diff": _relative(cuda["test_perplexity"],
                                                      cpu["test_perplexity"]),
                "same_weights_perplexity_cuda": same_weights,
                "same_weights_rel_diff": _relative(same_weights, cpu["test_perplexity"]),
                "train_speedup": cuda["train_tokens_per_s"] / cpu["train_tokens_per_s"],
                "score_speedup": cuda["score_tokens_per_s"] / cpu["score_tokens_per_s"],
            })
            for key, limit in (("valid_nats_rel_diff", settings.tolerance),
                               ("test_perplexity_rel_diff", settings.tolerance),
                               ("same_weights_rel_diff", settings.same_weights_tolerance)):
                if not row[key] <= limit:
                    summary["failures"].append(f"{name}: {key} {row[key]:.4g} > {limit}")
        for device in ("cpu", "cuda"):
            if row.get(device, {}).get("kv_cache_equals_recomputation") is False:
                summary["failures"].append(f"{name}: KV-cached greedy decoding differs from "
                                           f"recomputation on {device}")
        summary["models"][name] = row
    summary["ok"] = not summary["failures"]
    return summary


def parse_args(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="data root (default: $LMBENCH_DATA_DIR)")
    parser.add_argument("--out", required=True, help="folder for gpu_check.json")
    parser.add_argument("--corpus", default=Settings.corpus, help="corpus name or folder")
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--score-tokens", type=int, default=Settings.score_tokens)
    parser.add_argument("--tolerance", type=float, default=Settings.tolerance)
    parser.add_argument("--same-weights-tolerance", type=float,
                        default=Settings.same_weights_tolerance)
    parser.add_argument("--tiny", action="store_true", help="toy model sizes (testing)")
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU half (testing)")
    args = parser.parse_args(argv)
    settings = Settings(corpus=args.corpus, steps=args.steps, score_tokens=args.score_tokens,
                        tolerance=args.tolerance,
                        same_weights_tolerance=args.same_weights_tolerance, tiny=args.tiny,
                        valid_tokens=2_048 if args.tiny else Settings.valid_tokens)
    return settings, args


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_args(argv)
    if not args.cpu_only and not torch.cuda.is_available():
        print(f"gpu_check: torch {torch.__version__} sees no CUDA GPU here; nothing to compare "
              "(--cpu-only runs the CPU half)")
        return 0
    summary = check(settings, args.data_dir, args.cpu_only)
    write_json_atomic(Path(args.out) / "gpu_check.json", summary)
    print(json.dumps(summary, indent=2))
    for failure in summary["failures"]:
        print(f"gpu_check: FAILED {failure}", file=sys.stderr)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
