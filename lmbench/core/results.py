"""Typed, frozen result records and their JSON files (written atomically).

``EvalResult`` holds the sums of one scored split; every ratio (perplexity, bits per byte, ...)
is a property derived from them, so a record can never disagree with itself. ``RunResult`` is
what ``lmbench run`` writes to ``<out>/<run_id>/result.json``; ``lmbench.storage.store`` keeps a
folder of them immutable and indexed.
"""

from __future__ import annotations

import math
import platform
import subprocess
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lmbench.core.version import __version__

LN2 = math.log(2.0)


@dataclass(frozen=True)
class EvalResult:
    """Sums over one split, and the metrics derived from them (natural logs throughout)."""

    model: str
    corpus: str
    split: str
    nll_nats: float  # Σ -ln p over all scored tokens
    n_tokens: int
    n_bytes: int  # UTF-8 bytes of the split's raw text
    n_words: int  # words + one end-of-sentence per sentence
    n_unk: int  # scored tokens that are <unk>
    exact_likelihood: bool  # False: pseudo-likelihood; perplexity is then pseudo-perplexity
    perplexity_ci95: tuple[float, float]
    bits_per_byte_ci95: tuple[float, float]
    wall_s: float
    tokens_per_s: float
    block_len: int  # tokens per block of block_nll_nats
    block_nll_nats: tuple[float, ...] = field(repr=False)  # per-block sums, for paired tests

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll_nats / self.n_tokens)

    @property
    def bits_per_token(self) -> float:
        return self.nll_nats / (LN2 * self.n_tokens)

    @property
    def bits_per_byte(self) -> float:
        return self.nll_nats / (LN2 * self.n_bytes)

    @property
    def word_perplexity(self) -> float:
        return math.exp(self.nll_nats / self.n_words)

    @property
    def unk_rate(self) -> float:
        return self.n_unk / self.n_tokens

    DERIVED = ("perplexity", "bits_per_token", "bits_per_byte", "word_perplexity", "unk_rate")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update({name: getattr(self, name) for name in self.DERIVED})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for key in ("perplexity_ci95", "bits_per_byte_ci95", "block_nll_nats"):
            values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True)
class RunResult:
    """One trained-and-evaluated model: what ``<out>/<run_id>/result.json`` holds."""

    run_id: str
    model: str
    corpus: str
    config: dict[str, Any]  # the resolved model config (tokenizer included)
    seed: int
    n_params: int
    fit_s: float
    metrics: dict[str, EvalResult]  # keyed by split
    env: dict[str, Any]  # versions, hardware, git commit, time
    train_log: dict[str, Any] | None = None  # neural families: steps, tokens, seconds, curve
    # {"name", "vocab_size", "sha256" of the fitted vocabulary}: paired comparisons need the
    # same tokenization (lmbench.evaluation.significance); None in records written before it existed
    tokenizer: dict[str, Any] | None = None
    # extra figures, e.g. decode_tokens_per_s (lmbench bench's throughput.json merged on reading)
    throughput: dict[str, float] | None = None
    # {"samples": [{"prompt": str, "text": str}, ...], "metrics": {name: float}, "config": {}};
    # a generation benchmark's results arrive later as a sidecar, merged on reading
    # (lmbench.storage.store; the schema is lmbench.evaluation.generation_results')
    generation: dict[str, Any] | None = None

    @property
    def undertrained(self) -> str | None:
        """Why this run's training stopped too early to be ranked like the others
        (``undertrained_reason``), or None."""
        return undertrained_reason(self.train_log, self.config.get("train"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = {split: r.to_dict() for split, r in self.metrics.items()}
        data["undertrained"] = self.undertrained  # derived, for readers of the JSON
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        values = dict(data)
        values.pop("undertrained", None)  # derived from train_log and config
        values["metrics"] = {s: EvalResult.from_dict(r) for s, r in data["metrics"].items()}
        return cls(**values)


# Beside max_seconds, a max_steps this large is the run files' "no step limit" (TOML has no null):
# the equal-time ladders (baselines/brown.toml, ...) are bound by the clock, not by steps.
NO_STEP_LIMIT = 100_000
UNDERTRAINED_SHARE = 0.5  # of max_steps, when max_seconds stopped the run first


def undertrained_reason(train_log: dict[str, Any] | None, train: dict[str, Any] | None
                        ) -> str | None:
    """Why a run's training is too short to mean what its configuration says, or None.

    Undertrained is either of:

    - fewer steps than ``warmup_steps``: the learning rate never reached its peak;
    - stopped by ``max_seconds`` after fewer than ``UNDERTRAINED_SHARE`` x ``max_steps`` steps,
      where ``max_steps`` is a target (below ``NO_STEP_LIMIT``): a slow or busy machine cut the
      run short of its own step budget.

    Args:
        train_log: ``RunResult.train_log`` (``TrainLog.to_dict()``; None for untrained families).
        train: the ``train`` table of the record's config (``TrainConfig`` as a dict).
    """
    if not train_log or not isinstance(train, dict) or "steps" not in train_log:
        return None
    steps, stopped_by = train_log["steps"], train_log.get("stopped_by") or "?"
    warmup, max_steps = train.get("warmup_steps") or 0, train.get("max_steps")
    if steps < warmup:
        return f"{steps} steps, fewer than its {warmup} warm-up steps (stopped by {stopped_by})"
    if (stopped_by == "max_seconds" and max_steps and max_steps < NO_STEP_LIMIT
            and steps < UNDERTRAINED_SHARE * max_steps):
        return (f"max_seconds stopped it at {steps} of its {max_steps} steps "
                f"({steps / max_steps:.0%})")
    return None


def environment() -> dict[str, Any]:
    """Versions, hardware and code revision, recorded with every run."""
    import numpy
    import torch

    return {
        "lmbench": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "packages": _package_versions(),
        "cpu": _cpu_model(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _package_versions() -> dict[str, str]:
    """Installed versions of the packages a result can depend on (absent ones left out)."""
    from importlib import metadata

    versions = {}
    for name in ("pandas", "tokenizers", "nltk", "transformers", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
