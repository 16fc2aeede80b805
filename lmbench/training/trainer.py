"""One trainer for every neural family: AdamW, warm-up + cosine decay, clipping, early stopping.

- AdamW (Loshchilov & Hutter 2019) with weight decay on matrices only (no biases, norms).
- Learning rate: linear warm-up over ``warmup_steps``, then cosine decay (Loshchilov & Hutter
  2017) to ``min_lr_ratio`` x the peak, as a function of training *progress*: the largest of
  steps / max_steps, tokens / max_tokens and seconds / max_seconds, so the same schedule serves
  a step, token or wall-clock budget (the last for comparing families at equal training time).
- Batches: families that carry state (RNNs) read the train stream as ``batch_size`` parallel
  streams in order, ``seq_len`` tokens a step, the hidden state carried and detached between
  steps (truncated BPTT, as PyTorch's word_language_model ``batchify`` / ``repackage_hidden``);
  the others draw random windows (nanoGPT's ``get_batch``). The windows of step s are drawn from
  a generator seeded by (seed, s), so a resumed run sees the same batches.
- Validation every ``eval_every`` steps through the evaluator (``score_stream``, the same code
  that produces the final numbers) on the first ``eval_tokens`` valid tokens; the best weights
  are kept and restored at the end; ``patience`` evaluations without improvement stop early.
- Checkpoints (``checkpoint_dir``): weights, optimizer, step, RNG states, best weights and the
  curve, written atomically every ``checkpoint_every`` steps; a restarted run resumes there.
- A non-finite loss stops training with an error naming the step, before any optimizer step or
  checkpoint could store broken weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils._pytree import tree_map

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget
from lmbench.evaluation.scoring import EvalConfig, score_stream


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 32  # sequences per step
    seq_len: int = 64  # tokens per sequence (the BPTT length for RNNs)
    learning_rate: float = 3e-3  # peak, after warm-up
    min_lr_ratio: float = 0.1  # final learning rate / peak
    warmup_steps: int = 100
    weight_decay: float = 0.1  # on weight matrices only
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    beta1: float = 0.9
    beta2: float = 0.99
    max_steps: int | None = 2000  # budget limits: training stops at the first one reached
    max_tokens: int | None = None
    max_seconds: float | None = None
    eval_every: int = 250  # steps between validation evaluations
    eval_tokens: int = 50_000  # valid tokens scored at each evaluation
    patience: int | None = None  # evaluations without improvement before stopping early
    bf16: bool = True  # bf16 autocast for training matmuls (evaluation stays fp32)
    compile: bool = False  # torch.compile the network for training
    checkpoint_every: int = 500  # steps between checkpoints when a checkpoint_dir is given
    seed: int = 0  # weights initialisation, batches and dropout
    progress: bool = True  # tqdm bar (only on a terminal)

    def __post_init__(self) -> None:
        # Every value is checked here, before a network is built: a NaN, a negative budget or a
        # seed numpy refuses would otherwise train forever or fail after training.
        for name in ("batch_size", "seq_len", "eval_every", "eval_tokens", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise LmbenchError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "patience"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise LmbenchError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        ranges = {"learning_rate": ("> 0", lambda v: 0 < v < math.inf),
                  "min_lr_ratio": ("in [0, 1]", lambda v: 0 <= v <= 1),
                  "weight_decay": (">= 0", lambda v: 0 <= v < math.inf),
                  "grad_clip": (">= 0", lambda v: 0 <= v < math.inf),
                  "beta1": ("in [0, 1)", lambda v: 0 <= v < 1),
                  "beta2": ("in [0, 1)", lambda v: 0 <= v < 1)}
        for name, (wanted, inside) in ranges.items():
            if not inside(getattr(self, name)):  # NaN is never inside
                raise LmbenchError(f"train.{name} must be {wanted} and finite, got "
                                   f"{getattr(self, name)!r}")
        if self.max_steps is None and self.max_tokens is None and self.max_seconds is None:
            raise LmbenchError("train needs a budget: max_steps, max_tokens or max_seconds")
        for name in ("max_steps", "max_tokens", "max_seconds"):
            value = getattr(self, name)
            if value is not None and not 0 < value < math.inf:  # NaN fails too
                raise LmbenchError(f"train.{name} must be > 0 (and finite), got {value!r}; "
                                   "leave it unset for no limit")
        if not 0 <= self.seed < 2**32:
            raise LmbenchError(f"train.seed must be in [0, 2**32 - 1] (numpy's seed range), got "
                               f"{self.seed}")


@dataclass
class TrainLog:
    """What training did; saved in the run's result."""

    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    best_valid_nats: float | None = None  # mean NLL per token at the best evaluation
    best_step: int | None = None
    stopped_by: str = ""  # "max_steps" | "max_tokens" | "max_seconds" | "patience"
    curve: list[dict] = field(default_factory=list)  # step, tokens, seconds, train/valid loss

    def to_dict(self) -> dict:
        return asdict(self)


def _limits(config: TrainConfig, budget: Budget | None) -> dict[str, float | None]:
    if budget is not None and any(v is not None for v in asdict(budget).values()):
        return {"max_steps": budget.max_steps, "max_tokens": budget.max_tokens,
                "max_seconds": budget.max_seconds}
    return {"max_steps": config.max_steps, "max_tokens": config.max_tokens,
            "max_seconds": config.max_seconds}


def _progress(limits, step: int, tokens: int, seconds: float) -> tuple[float, str]:
    """Fraction of the budget spent, and the limit that binds."""
    spent = {"max_steps": step, "max_tokens": tokens, "max_seconds": seconds}
    fractions = {k: spent[k] / v for k, v in limits.items() if v}
    name = max(fractions, key=fractions.get)
    return fractions[name], name


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    warmup = min(1.0, (step + 1) / max(1, config.warmup_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    floor = config.min_lr_ratio
    return config.learning_rate * warmup * (floor + (1 - floor) * cosine)


def _optimizer(net: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in net.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in net.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(config.beta1, config.beta2))


class _Batches:
    """Step s -> (inputs, targets), both (B, T); a pure function of s (so runs can resume)."""

    def __init__(self, ids: np.ndarray, config: TrainConfig, sequential: bool) -> None:
        self.config, self.sequential = config, sequential
        B, T = config.batch_size, config.seq_len
        self.ids = torch.from_numpy(np.asarray(ids, dtype=np.int64))
        if len(self.ids) < T + 2:
            raise LmbenchError(f"the train split has {len(self.ids)} tokens; train.seq_len = {T} "
                               "needs more")
        if sequential:
            # batchify: B streams side by side, each read in order, T tokens per step
            length = (len(self.ids) - 1) // B
            self.streams = self.ids[: length * B + 1]
            self.stream_len = length
            self.steps_per_epoch = max(1, (length - 1) // T)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The batch of ``step`` and whether it starts an epoch (the carried state resets)."""
        B, T = self.config.batch_size, self.config.seq_len
        if self.sequential:
            chunk = step % self.steps_per_epoch
            offsets = torch.arange(B) * self.stream_len + chunk * T  # (B,)
            index = offsets[:, None] + torch.arange(T + 1)[None, :]  # (B, T+1)
            window = self.streams[index]
            return window[:, :-1], window[:, 1:], chunk == 0
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        starts = torch.randint(0, len(self.ids) - T - 1, (B,), generator=generator)
        window = self.ids[starts[:, None] + torch.arange(T + 1)[None, :]]  # (B, T+1)
        return window[:, :-1], window[:, 1:], False


def _config_digest(model, config: TrainConfig) -> str:
    text = json.dumps({"model": model.config(), "train": asdict(config)}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def train(model, train_ids: np.ndarray, valid_ids: np.ndarray | None, config: TrainConfig,
          budget: Budget | None = None, checkpoint_dir: str | Path | None = None) -> TrainLog:
    """Train ``model.net`` in place (see the module docstring); returns the log."""
    net = model.net
    sequential = model.capabilities.carries_state
    batches = _Batches(train_ids, config, sequential)
    limits = _limits(config, budget)
    optimizer = _optimizer(net, config)
    step_fn = torch.compile(net) if config.compile else net
    log, state, best_weights, since_best = TrainLog(), None, None, 0
    checkpoint = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None
    digest = _config_digest(model, config)
    torch.manual_seed(config.seed)  # dropout draws
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        if saved["digest"] != digest:
            raise LmbenchError(f"{checkpoint}: checkpoint of a different configuration; delete it "
                               "or write this run elsewhere")
        net.load_state_dict(saved["net"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        log, state, best_weights = TrainLog(**saved["log"]), saved["state"], saved["best"]
        since_best = saved["since_best"]
    valid_ids = None if valid_ids is None else np.asarray(valid_ids)[: config.eval_tokens]
    eval_config = EvalConfig(progress=False, n_bootstrap=1)
    bar = _bar(config, limits)
    started = time.perf_counter() - log.seconds
    running_loss, running_n = 0.0, 0
    while True:
        fraction, binding = _progress(limits, log.steps, log.tokens, log.seconds)
        if fraction >= 1.0 or log.stopped_by == "patience":
            log.stopped_by = log.stopped_by or binding
            break
        net.train()
        inputs, targets, epoch_start = batches(log.steps)
        if epoch_start:
            state = None
        lr = learning_rate(config, log.steps, fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            loss, state = model.training_loss(step_fn, inputs, targets, state)
        if not torch.isfinite(loss):
            raise LmbenchError(f"training diverged: the loss is {loss.item()} at step {log.steps}; "
                               "lower train.learning_rate or enable train.grad_clip")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        state = tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, state)
        log.steps += 1
        log.tokens += inputs.numel()
        log.seconds = time.perf_counter() - started
        running_loss, running_n = running_loss + loss.item(), running_n + 1
        last = _progress(limits, log.steps, log.tokens, log.seconds)[0] >= 1.0
        if log.steps % config.eval_every == 0 or last:
            point = {"step": log.steps, "tokens": log.tokens, "seconds": round(log.seconds, 3),
                     "train_loss": running_loss / running_n, "valid_loss": None}
            running_loss, running_n = 0.0, 0
            if valid_ids is not None and len(valid_ids) > 1:
                eval_started = time.perf_counter()
                point["valid_loss"] = float(score_stream(model, valid_ids, eval_config).mean())
                started += time.perf_counter() - eval_started  # the budget counts training only
                if log.best_valid_nats is None or point["valid_loss"] < log.best_valid_nats:
                    log.best_valid_nats, log.best_step = point["valid_loss"], log.steps
                    best_weights, since_best = copy.deepcopy(net.state_dict()), 0
                else:
                    since_best += 1
                    if config.patience is not None and since_best >= config.patience:
                        log.stopped_by = "patience"
            log.curve.append(point)
            _show(bar, point, log)
        if bar is not None:
            bar.update(1)
        if checkpoint is not None and (log.steps % config.checkpoint_every == 0 or last):
            _save_checkpoint(checkpoint, {
                "digest": digest, "net": net.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(), "log": log.to_dict(), "state": state,
                "best": best_weights, "since_best": since_best})
    if bar is not None:
        bar.close()
    if best_weights is not None:
        net.load_state_dict(best_weights)
    return log


def _bar(config: TrainConfig, limits):
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=limits["max_steps"], desc="training", unit="step", leave=False,
                disable=None)


def _show(bar, point, log: TrainLog) -> None:
    if bar is None:
        return
    valid = point["valid_loss"]
    bar.set_postfix(loss=f"{point['train_loss']:.3f}",
                    valid="-" if valid is None else f"{valid:.3f}",
                    tok_s=f"{log.tokens / max(log.seconds, 1e-9):,.0f}")
