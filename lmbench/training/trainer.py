"""One trainer for every neural family: AdamW, warm-up + cosine decay, clipping, early stopping.

``train(model, batches, objective, config, *, init, valid_ids, budget, checkpoint_dir)``: the
objective (``lmbench.training.objectives``) and the batches (``lmbench.training.batching``) are
values passed in, so pretraining, distillation and fine-tuning share this loop.

- AdamW (Loshchilov & Hutter 2019) with weight decay on matrices only (no biases, norms).
- Learning rate: linear warm-up over ``warmup_steps``, then cosine decay (Loshchilov & Hutter
  2017) to ``min_lr_ratio`` x the peak, as a function of training *progress*: the largest of
  steps / max_steps, tokens / max_tokens and seconds / max_seconds, so the same schedule serves
  a step, token or wall-clock budget (the last for comparing families at equal training time).
- Batches: ``batches(step)``, a pure function of the step, so a resumed run sees the same ones;
  they are moved to the network's device, and the carried state (truncated BPTT) is detached
  after every step and dropped where a batch says so (an epoch's start, per-example batches).
- Precision: bf16 autocast where the device runs it natively (``lmbench.core.device``).
- Warm start (``init``): the network starts from given weights and is evaluated at step 0, so
  the curve starts where fine-tuning starts and the best weights may be the initial ones.
- Validation every ``eval_every`` steps through the evaluator (``score_stream``, the same code
  that produces the final numbers) on the first ``eval_tokens`` valid tokens; the best weights
  are kept and restored at the end; ``patience`` evaluations without improvement stop early.
- Checkpoints (``checkpoint_dir``): weights, optimizer, step, RNG states, best weights, the
  carried state and the curve, tensors and plain containers only (``torch.load(...,
  weights_only=True)``: a checkpoint cannot run code), written atomically every
  ``checkpoint_every`` steps; a restarted run resumes there. Its identity is a digest of the
  model and train configs, the objective and the initial weights, and one of the tokenized
  train data: a checkpoint of another run is refused, never resumed.
- Progress: on a terminal a bar counting the binding budget; elsewhere one line on stderr at
  each evaluation (``progress = false``: neither).
- Data parallel (``parallel``, a ``lmbench.training.distributed.DistributedTraining``): each rank
  trains on its rows of the global batch through DistributedDataParallel, rank 0 alone writes
  checkpoints; the rest of the loop is the same (that module's docstring).
- A non-finite loss stops training with an error naming the step, before any optimizer step or
  checkpoint could store broken weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils._pytree import (
    tree_flatten,
    tree_map,
    tree_unflatten,
    treespec_dumps,
    treespec_loads,
)
from tqdm.auto import tqdm

from lmbench.core.device import autocast, autocast_precision
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget, Trainable
from lmbench.core.io import write_atomic
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.training.batching import BatchSource
from lmbench.training.distributed import DistributedTraining
from lmbench.training.objectives import Objective, describe


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
    precision: str = ""  # "bf16" | "fp32": what the matmuls ran in ("" in records before it)
    curve: list[dict] = field(default_factory=list)  # step, tokens, seconds, train/valid loss
    init_from: str | None = None  # the saved model a warm start began from
    n_train_unk: int | None = None  # warm start: train tokens <unk> under the inherited vocab
    train_unk_rate: float | None = None  # n_train_unk / train tokens

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


# ------------------------------------------------------------------------------- checkpoints

_CHECKPOINT_KEYS = {"digest", "data_digest", "net", "optimizer", "rng", "log", "state", "best",
                    "since_best"}
_PLAIN = (torch.Tensor, int, float, bool, str, type(None))


def _weights_digest(weights: Mapping[str, torch.Tensor] | None) -> str | None:
    if weights is None:
        return None
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].detach().cpu().contiguous().view(-1).view(torch.uint8)
                      .numpy().tobytes())
    return digest.hexdigest()[:16]


def _config_digest(model, config: TrainConfig, objective, init) -> str:
    text = json.dumps({"model": model.config(), "train": asdict(config),
                       "objective": describe(objective), "init": _weights_digest(init)},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _state_payload(state) -> dict | None:
    """The carried state as tensors and a JSON tree spec (a checkpoint holds no objects)."""
    if state is None:
        return None
    leaves, spec = tree_flatten(state)
    odd = next((leaf for leaf in leaves if not isinstance(leaf, _PLAIN)), None)
    if odd is not None:
        raise LmbenchError(f"the carried training state holds a {type(odd).__name__}, which a "
                           "checkpoint cannot store; register its class as a pytree node with a "
                           "serialized_type_name (see lmbench.models.seq2seq)")
    return {"leaves": leaves, "spec": treespec_dumps(spec)}


def _state_from_payload(payload: dict | None, device: torch.device):
    if payload is None:
        return None
    leaves = [leaf.to(device) if isinstance(leaf, torch.Tensor) else leaf
              for leaf in payload["leaves"]]
    return tree_unflatten(leaves, treespec_loads(payload["spec"]))


def _save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save through ``write_atomic``: a kill never leaves half a checkpoint."""
    write_atomic(path, lambda out: torch.save(payload, out))


def _load_checkpoint(path: Path) -> dict:
    """A checkpoint of plain containers and tensors; nothing in it can run code."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file: one line, never the unpickler's advice
        raise LmbenchError(f"{path}: not a checkpoint that loads without running code "
                           f"({type(error).__name__}); delete it to train from scratch") from None
    if not isinstance(saved, dict) or not _CHECKPOINT_KEYS <= set(saved):
        raise LmbenchError(f"{path}: not an lmbench training checkpoint (missing keys); delete "
                           "it to train from scratch")
    return saved


# ----------------------------------------------------------------------------------- training


def train(model: Trainable, batches: BatchSource, objective: Objective, config: TrainConfig, *,
          init: Mapping[str, torch.Tensor] | None = None, valid_ids: np.ndarray | None = None,
          budget: Budget | None = None, checkpoint_dir: str | Path | None = None,
          parallel: DistributedTraining | None = None) -> TrainLog:
    """Train ``model.network()`` in place (see the module docstring).

    Args:
        model: a fitted-network ``Trainable`` (also a ``LanguageModel``: validation scores it).
        batches: ``step -> batch`` (``lmbench.training.batching``), a pure function of the step.
        objective: ``(model, network, batch, state) -> LossOutput``
            (``lmbench.training.objectives``).
        config: the optimiser, schedule, budget, evaluation and checkpoint settings.
        init: weights to start from (a warm start); the run is then also evaluated at step 0.
        valid_ids: (N,) ids of the valid split for evaluation and best-weights selection.
        budget: overrides ``config``'s limits.
        checkpoint_dir: where ``checkpoint.pt`` is written and resumed from.
        parallel: data-parallel training across processes (rank 0 writes the checkpoints);
            None: this process alone.

    Returns:
        The log (steps, tokens, seconds, the curve, the best validation loss).
    """
    if not isinstance(model, Trainable):
        raise LmbenchError(f"the trainer needs a Trainable model; {type(model).__name__} is not")
    net = model.network()
    device = next(net.parameters()).device
    if init is not None:
        net.load_state_dict(init)
    limits = _limits(config, budget)
    optimizer = _optimizer(net, config)
    if parallel is not None:
        parallel.check_batch_size(config.batch_size)
    log, state, best_weights, since_best = TrainLog(), None, None, 0
    checkpoint = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None
    digest, data_digest = _config_digest(model, config, objective, init), batches.fingerprint()
    torch.manual_seed(config.seed)  # dropout draws
    if checkpoint is not None and checkpoint.is_file():
        saved = _load_checkpoint(checkpoint)
        if saved["digest"] != digest:
            raise LmbenchError(f"{checkpoint}: checkpoint of a different configuration; delete it "
                               "or write this run elsewhere")
        if saved["data_digest"] != data_digest:
            raise LmbenchError(f"{checkpoint}: checkpoint of other training data (the tokenized "
                               "train split differs); delete it or write this run elsewhere")
        net.load_state_dict(saved["net"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        if device.type == "cuda" and "cuda_rng" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng"], device)
        log, best_weights = TrainLog(**saved["log"]), saved["best"]
        state, since_best = _state_from_payload(saved["state"], device), saved["since_best"]
    forward = net if parallel is None else parallel.wrap(net)  # after loading: DDP broadcasts
    step_fn = torch.compile(forward) if config.compile else forward
    writer = parallel is None or parallel.is_writer
    valid_ids = None if valid_ids is None else np.asarray(valid_ids)[: config.eval_tokens]
    can_validate = valid_ids is not None and len(valid_ids) > 1
    eval_config = EvalConfig(progress=False, n_bootstrap=1)
    progress = _Progress(config, limits)
    if init is not None and not log.curve and can_validate:
        # a warm start is evaluated before any step: where fine-tuning starts from
        point = {"step": 0, "tokens": 0, "seconds": 0.0, "train_loss": None,
                 "valid_loss": float(score_stream(model, valid_ids, eval_config).mean())}
        log.best_valid_nats, log.best_step = point["valid_loss"], 0
        best_weights = copy.deepcopy(net.state_dict())
        log.curve.append(point)
        progress.point(point, log)
    started = time.perf_counter() - log.seconds
    log.precision = autocast_precision(device, config.bf16)  # bf16 only where it is native
    running_loss, running_n, running_metrics = 0.0, 0, {}
    while True:
        fraction, binding = _progress(limits, log.steps, log.tokens, log.seconds)
        if fraction >= 1.0 or log.stopped_by == "patience":
            log.stopped_by = log.stopped_by or binding
            break
        net.train()
        batch = batches(log.steps)
        n_tokens = batch.n_tokens  # the global batch's
        if parallel is not None:
            batch = parallel.shard(batch)
            torch.manual_seed(parallel.step_seed(config.seed, log.steps))  # dropout draws
        batch = batch.to(device)
        if batch.resets_state:
            state = None
        lr = learning_rate(config, log.steps, fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast(device, config.bf16):
            output = objective(model, step_fn, batch, state)
        loss, state = output.loss, output.state
        reported = loss.detach() if parallel is None else parallel.mean(loss)  # every rank's
        if not torch.isfinite(reported):
            raise LmbenchError(f"training diverged: the loss is {reported.item()} at step "
                               f"{log.steps}; lower train.learning_rate or enable train.grad_clip")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        state = tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, state)
        log.steps += 1
        log.tokens += n_tokens
        log.seconds = time.perf_counter() - started
        if parallel is not None:
            parallel.after_step(net, log.steps)
            if limits["max_seconds"]:  # every rank stops at the same step
                log.seconds = parallel.maximum(log.seconds)
        running_loss, running_n = running_loss + reported.item(), running_n + 1
        for name, value in output.metrics.items():
            running_metrics[name] = running_metrics.get(name, 0.0) + float(value)
        fraction, binding = _progress(limits, log.steps, log.tokens, log.seconds)
        last = fraction >= 1.0
        progress.step(log, binding)
        if log.steps % config.eval_every == 0 or last:
            point = {"step": log.steps, "tokens": log.tokens, "seconds": round(log.seconds, 3),
                     "train_loss": running_loss / running_n, "valid_loss": None}
            if running_metrics:
                point["metrics"] = {k: v / running_n for k, v in running_metrics.items()}
            running_loss, running_n, running_metrics = 0.0, 0, {}
            if can_validate:
                eval_started = time.perf_counter()
                point["valid_loss"] = float(score_stream(model, valid_ids, eval_config).mean())
                if parallel is not None:  # rank 0's figure: every rank keeps the same best
                    point["valid_loss"] = parallel.from_writer(point["valid_loss"])
                started += time.perf_counter() - eval_started  # the budget counts training only
                if log.best_valid_nats is None or point["valid_loss"] < log.best_valid_nats:
                    log.best_valid_nats, log.best_step = point["valid_loss"], log.steps
                    best_weights, since_best = copy.deepcopy(net.state_dict()), 0
                else:
                    since_best += 1
                    if config.patience is not None and since_best >= config.patience:
                        log.stopped_by = "patience"
            log.curve.append(point)
            progress.point(point, log)
        if writer and checkpoint is not None and (log.steps % config.checkpoint_every == 0
                                                  or last):
            payload = {"digest": digest, "data_digest": data_digest, "net": net.state_dict(),
                       "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                       "log": log.to_dict(), "state": _state_payload(state),
                       "best": best_weights, "since_best": since_best}
            if device.type == "cuda":
                payload["cuda_rng"] = torch.cuda.get_rng_state(device)
            _save_checkpoint(checkpoint, payload)
    progress.close()
    if best_weights is not None:
        net.load_state_dict(best_weights)
    return log


# ----------------------------------------------------------------------------------- progress

_UNITS = {"max_steps": ("step", False), "max_tokens": ("tok", True), "max_seconds": ("s", False)}


class _Progress:
    """On a terminal, a tqdm bar counting the binding budget (steps, tokens or seconds, so its
    total and ETA are the limit that will stop training); elsewhere one line on stderr at each
    evaluation and at least every ``LINE_EVERY_S`` seconds between them (a log file or CI never
    sits silent for minutes); nothing with ``progress = false``."""

    LINE_EVERY_S = 30.0

    def __init__(self, config: TrainConfig, limits: dict[str, float | None]) -> None:
        self.limits, self.binding, self.bar = limits, None, None
        self.enabled = config.progress
        self.terminal = config.progress and sys.stderr.isatty()
        self.last_line_s = time.perf_counter()
        if self.terminal:
            self.bar = tqdm(total=limits["max_steps"], desc="training", unit="step", leave=False)

    def step(self, log: TrainLog, binding: str) -> None:
        spent = {"max_steps": log.steps, "max_tokens": log.tokens,
                 "max_seconds": round(log.seconds, 1)}[binding]
        if self.bar is None:
            now = time.perf_counter()
            if self.enabled and now - self.last_line_s >= self.LINE_EVERY_S:
                self.last_line_s = now
                print(f"training: step {log.steps:,} tokens {log.tokens:,} "
                      f"({spent / self.limits[binding]:.0%} of {binding} = "
                      f"{self.limits[binding]:,}) tok/s {log.tokens / max(log.seconds, 1e-9):,.0f}",
                      file=sys.stderr, flush=True)
            return
        if binding != self.binding:  # another limit binds now: count in its units
            self.binding = binding
            unit, scale = _UNITS[binding]
            self.bar.unit, self.bar.unit_scale = unit, scale
            self.bar.reset(total=self.limits[binding])
        self.bar.update(spent - self.bar.n)

    def point(self, point: dict, log: TrainLog) -> None:
        if not self.enabled:
            return
        valid = "-" if point["valid_loss"] is None else f"{point['valid_loss']:.4f}"
        train_loss = "-" if point["train_loss"] is None else f"{point['train_loss']:.4f}"
        tokens_per_s = log.tokens / max(log.seconds, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix(loss=train_loss, valid=valid, tok_s=f"{tokens_per_s:,.0f}")
            return
        self.last_line_s = time.perf_counter()
        print(f"training: step {log.steps:,} tokens {log.tokens:,} loss {train_loss} "
              f"valid {valid} tok/s {tokens_per_s:,.0f}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
