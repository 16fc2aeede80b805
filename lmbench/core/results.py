"""Typed, frozen result records and their JSON files (written atomically).

``EvalResult`` holds the sums of one scored split; every ratio (perplexity, bits per byte, ...)
is a property derived from them, so a record can never disagree with itself. ``RunResult`` is
what ``lmbench run`` writes to ``<out>/<run_id>/result.json``; ``lmbench.storage.store`` keeps a folder of
them immutable and indexed.
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
    # where the model trained and was scored: "cpu", "cuda:0 (NVIDIA H200)"
    # (lmbench.core.device.describe_device); None in records written before it existed
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = {split: r.to_dict() for split, r in self.metrics.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        values = dict(data)
        values["metrics"] = {s: EvalResult.from_dict(r) for s, r in data["metrics"].items()}
        return cls(**values)


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
