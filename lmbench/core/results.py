"""Typed, frozen result records, the one schema of each JSON file, and the checks that read them.

``EvalResult`` holds the sums of one scored split; every ratio (perplexity, bits per byte, ...)
is a property derived from them, so a record can never disagree with itself. ``RunResult`` is
what ``lmbench run`` writes to ``<out>/<run_id>/result.json``; ``lmbench.storage.store`` keeps a
folder of them immutable and indexed. Beside a record, results measured later on its saved model:
``ThroughputResult`` (``lmbench bench``, ``throughput.json``) and ``GenerationResult`` (the
generation benchmark, ``generation.json``; schema in ``lmbench.evaluation.generation_results``),
which the store merges into ``RunResult.throughput`` and ``RunResult.generation``, and
``TaskResults`` (``lmbench eval-tasks``, ``tasks.json``) into ``RunResult.tasks``.

Every ``from_dict`` checks types and raises ``ValueError`` naming the field (``"metrics['test'].
n_tokens must be an integer >= 1"``), so one malformed file is reported and skipped rather than
failing a report later; every ``to_dict`` gives back the JSON it was read from. Whether a value
is a number is decided in one place, ``check_number``.
"""

from __future__ import annotations

import math
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from lmbench.core.version import __version__

LN2 = math.log(2.0)

# ---------------------------------------------------------------------------------- checks


def is_finite_number(value: Any) -> bool:
    """Whether ``check_number`` takes ``value`` as a finite number (an int or float, not a
    bool, neither NaN nor infinite)."""
    try:
        return check_number(value, "value", optional=False) is not None
    except ValueError:
        return False


def check_number(value: Any, where: str, *, finite: bool = True, optional: bool = True) -> Any:
    """``value`` unchanged if it is a number (finite unless ``finite=False``; None allowed when
    ``optional``), else ``ValueError`` naming ``where``. Ints stay ints (round trips)."""
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where} is not a number (null)")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{where} is not a number ({type(value).__name__})")
    if finite and not math.isfinite(value):
        raise ValueError(f"{where} is not a finite number ({value})")
    return value


def _integer(value: Any, where: str, *, minimum: int = 0, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{where} must be an integer >= {minimum}")
    return value


def _text(value: Any, where: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where} is not a string")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} is not an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{where} is not a list")
    return value


def _required(data: dict[str, Any], key: str, where: str = "") -> Any:
    if key not in data:
        raise ValueError(f"{where}no {key!r} key")
    return data[key]


_Record = TypeVar("_Record")


def _filled(own: _Record, other: _Record) -> _Record:
    """``own`` with what it lacks taken from ``other`` (same type): a None or empty field gets
    ``other``'s value, and mappings are merged key by key; ``own``'s values win."""
    changes = {}
    for f in fields(own):
        mine, theirs = getattr(own, f.name), getattr(other, f.name)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            changes[f.name] = {**theirs, **mine}
        elif mine is None or (isinstance(mine, tuple) and not mine):
            changes[f.name] = theirs
    return replace(own, **changes)


# ------------------------------------------------------------------------------ scoring


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
    def from_dict(cls, data: Any, where: str = "metrics") -> EvalResult:
        """A checked ``EvalResult`` (the derived figures in ``data`` are ignored); ``where``
        prefixes every error."""
        data = _object(data, where)
        for key in (f.name for f in fields(cls)):
            _required(data, key, f"{where} has ")
        for key in ("model", "corpus", "split"):
            _text(data[key], f"{where}.{key}", optional=False)
        for key in ("n_tokens", "n_bytes", "block_len"):
            _integer(data[key], f"{where}.{key}", minimum=1)
        for key in ("n_words", "n_unk"):
            _integer(data[key], f"{where}.{key}")
        if not isinstance(data["exact_likelihood"], bool):
            raise ValueError(f"{where}.exact_likelihood is not true or false")
        nll = check_number(data["nll_nats"], f"{where}.nll_nats", finite=False, optional=False)
        if math.isnan(nll):  # inf is a number here: some token had p = 0
            raise ValueError(f"{where}.nll_nats is not a number (NaN)")
        for key in ("wall_s", "tokens_per_s"):
            check_number(data[key], f"{where}.{key}", finite=False, optional=False)
        intervals = {}
        for key in ("perplexity_ci95", "bits_per_byte_ci95"):
            value = data[key]
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise ValueError(f"{where}.{key} is not a [low, high] pair")
            intervals[key] = tuple(check_number(v, f"{where}.{key}", finite=False,
                                                optional=False) for v in value)
        blocks = data["block_nll_nats"]
        if not isinstance(blocks, list | tuple):
            raise ValueError(f"{where}.block_nll_nats is not a list of numbers")
        blocks = tuple(check_number(b, f"{where}.block_nll_nats[{i}]", finite=False,
                                    optional=False) for i, b in enumerate(blocks))
        values = {f.name: data[f.name] for f in fields(cls)}
        return cls(**{**values, **intervals, "block_nll_nats": blocks})


# ------------------------------------------------------------------------------ throughput


@dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of repeated measurements."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values) -> Spread:
        values = sorted(float(v) for v in values)
        return cls(statistics.median(values), values[0], values[-1])

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Spread:
        data = _object(data, where)
        return cls(**{key: check_number(_required(data, key, f"{where} has "), f"{where}.{key}",
                                        optional=False) for key in ("median", "low", "high")})


# ThroughputResult's measured fields: a Spread each, and one number each
THROUGHPUT_SPREADS = ("score_tokens_per_s", "score_bytes_per_s", "prefill_tokens_per_s",
                      "decode_tokens_per_s", "time_to_first_token_s", "train_tokens_per_s")
THROUGHPUT_NUMBERS = ("token_latency_p50_s", "token_latency_p95_s", "peak_rss_bytes",
                      "weight_bytes", "peak_tensor_bytes", "cache_bytes", "flops_per_token")
_THROUGHPUT_BYTES = ("peak_rss_bytes", "weight_bytes", "peak_tensor_bytes", "cache_bytes")


@dataclass(frozen=True)
class ThroughputResult:
    """One model's speed, memory and FLOP utilisation: ``<run_id>/throughput.json``
    (``lmbench.evaluation.throughput`` measures it; module docstring there).

    A measured figure is None when it was not measured: ``lmbench bench`` leaves out bytes/s
    for ids without text and training for models it cannot train; a record of
    ``record_run(throughput={...})`` holds only the figures it was given (``from_figures``).
    """

    run_id: str
    model: str  # label on the leaderboard
    family: str
    config: dict[str, Any]  # the model's resolved config
    n_params: int
    score_tokens_per_s: Spread | None
    score_bytes_per_s: Spread | None  # None when the ids came without their text
    prefill_tokens_per_s: Spread | None
    decode_tokens_per_s: Spread | None
    time_to_first_token_s: Spread | None
    token_latency_p50_s: float | None  # per decode step, over every measured step
    token_latency_p95_s: float | None
    train_tokens_per_s: Spread | None  # None: not measured (no corpus, or not trainable)
    peak_rss_bytes: int | None
    weight_bytes: int | None
    peak_tensor_bytes: int | None
    cache_bytes: int | None
    tensor_memory_source: str | None  # "cuda.max_memory_allocated" | "dispatch tracker"
    flops_per_token: float | None  # forward, at the scoring context; None: count-based
    matmul_peak_flops_per_s: dict[str, float]  # "fp32", "bf16"
    utilization: dict[str, float | None]  # achieved / peak: score, prefill, decode, train
    settings: dict[str, Any]  # BenchConfig plus the lengths actually used
    hardware: dict[str, Any]  # device, cpu, threads, torch, backend
    env: dict[str, Any] = field(default_factory=dict)
    device: str | None = None  # where it ran ("cpu", "cuda:0", ...); None: not recorded

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.device is None:  # files written before the field existed round-trip
            del data["device"]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "throughput") -> ThroughputResult:
        """A checked ``ThroughputResult``; keys this version does not know are ignored."""
        data = _object(data, where or "throughput")
        prefix, head = (f"{where}.", f"{where}: ") if where else ("", "")
        run_id = data.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"{head}no 'run_id' string")
        utilization = data.get("utilization")
        if all(data.get(name) is None for name in THROUGHPUT_SPREADS + THROUGHPUT_NUMBERS) and (
                not isinstance(utilization, dict) or all(v is None for v in utilization.values())):
            raise ValueError(f"{head}no throughput figure in it")
        values: dict[str, Any] = {"run_id": run_id}
        for key in ("model", "family"):
            values[key] = _text(_required(data, key, head), prefix + key, optional=False)
        values["config"] = _object(_required(data, "config", head), prefix + "config")
        values["n_params"] = _integer(_required(data, "n_params", head), prefix + "n_params")
        for name in THROUGHPUT_SPREADS:
            spread = data.get(name)
            values[name] = None if spread is None else Spread.from_dict(spread, prefix + name)
        for name in THROUGHPUT_NUMBERS:
            values[name] = (_integer(data.get(name), prefix + name, optional=True)
                            if name in _THROUGHPUT_BYTES
                            else check_number(data.get(name), prefix + name))
        values["tensor_memory_source"] = _text(data.get("tensor_memory_source"),
                                               prefix + "tensor_memory_source")
        for name in ("matmul_peak_flops_per_s", "utilization"):
            table = _object(data.get(name) or {}, prefix + name)
            values[name] = {k: check_number(v, f"{prefix}{name}[{k!r}]") for k, v in table.items()}
        for name in ("settings", "hardware", "env"):
            values[name] = _object(data.get(name) or {}, prefix + name)
        values["device"] = _text(data.get("device"), prefix + "device")
        return cls(**values)

    @classmethod
    def from_figures(cls, figures: Any, *, run_id: str, model: str, family: str,
                     config: dict[str, Any], n_params: int, where: str = "throughput"
                     ) -> ThroughputResult:
        """A record of figures measured elsewhere (``record_run(throughput={"decode_tokens_per_s":
        950.0})``, and ``result.json`` files that held them so): each spread's figure counts as
        one measurement (median = low = high), ``<kind>_utilization`` fills ``utilization``;
        any other name, or no figure, is an error."""
        figures = _object(figures, where)
        values: dict[str, Any] = {name: None for name in THROUGHPUT_SPREADS + THROUGHPUT_NUMBERS}
        utilization = {}
        for name, value in figures.items():
            if name in THROUGHPUT_SPREADS:
                values[name] = Spread.of([check_number(value, f"{where}[{name!r}]",
                                                       optional=False)])
            elif name in THROUGHPUT_NUMBERS:
                values[name] = check_number(value, f"{where}[{name!r}]")
            elif name.endswith("_utilization"):
                utilization[name[: -len("_utilization")]] = check_number(value,
                                                                         f"{where}[{name!r}]")
            else:
                raise ValueError(f"{where}[{name!r}] is not a throughput figure (known: "
                                 f"{', '.join(THROUGHPUT_SPREADS + THROUGHPUT_NUMBERS)}, "
                                 "<kind>_utilization)")
        if all(v is None for v in [*values.values(), *utilization.values()]):
            raise ValueError(f"{where}: no throughput figure in it")
        for name in _THROUGHPUT_BYTES:
            if values[name] is not None:
                values[name] = int(values[name])
        return cls(run_id=run_id, model=model, family=family, config=config, n_params=n_params,
                   tensor_memory_source=None, matmul_peak_flops_per_s={},
                   utilization=utilization, settings={}, hardware={}, **values)

    def figures(self) -> dict[str, float]:
        """Every measured figure as one number: each spread's median under its own name, the
        single figures, and ``<kind>_utilization``; the finite ones only (what ``lmbench
        compare`` takes ratios of)."""
        out = {name: getattr(self, name).median for name in THROUGHPUT_SPREADS
               if getattr(self, name) is not None}
        out.update({name: getattr(self, name) for name in THROUGHPUT_NUMBERS})
        out.update({f"{kind}_utilization": value for kind, value in self.utilization.items()})
        return {name: float(value) for name, value in out.items() if is_finite_number(value)}

    def filled_from(self, other: ThroughputResult) -> ThroughputResult:
        """This record with the figures it lacks taken from ``other``; its own values win."""
        return _filled(self, other)


# ------------------------------------------------------------------------------ generation


@dataclass(frozen=True)
class GenerationEstimate:
    """A generation metric of one decoding: its value and 95% interval over the prompts (None
    where undefined, e.g. MAUVE of the human row) and how the interval was computed."""

    value: float | None
    ci95: tuple[float | None, float | None]
    method: str | None  # "bootstrap", "jackknife", "" (no interval)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci95": list(self.ci95), "method": self.method}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> GenerationEstimate:
        interval = data.get("ci95", [None, None]) if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(interval, list) or len(interval) != 2:
            raise ValueError(f"{where} is not {{value: number, ci95: [low, high]}}")
        return cls(check_number(data.get("value"), f"{where}.value"),
                   (check_number(interval[0], f"{where}.ci95"),
                    check_number(interval[1], f"{where}.ci95")),
                   _text(data.get("method"), f"{where}.method"))


@dataclass(frozen=True)
class GenerationRow:
    """One decoding strategy of the generation benchmark (or the human reference)."""

    label: str
    description: str | None
    metrics: dict[str, GenerationEstimate]
    n_tokens: int | None  # continuation tokens produced
    wall_s: float | None  # None for the human row
    decode_tokens_per_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "description": self.description,
                "metrics": {k: e.to_dict() for k, e in self.metrics.items()},
                "n_tokens": self.n_tokens, "wall_s": self.wall_s,
                "decode_tokens_per_s": self.decode_tokens_per_s}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> GenerationRow:
        if not isinstance(data, dict) or not isinstance(data.get("label"), str):
            raise ValueError(f"{where} has no 'label' string")
        metrics = _object(data.get("metrics"), f"{where}.metrics")
        return cls(label=data["label"],
                   description=_text(data.get("description"), f"{where}.description"),
                   metrics={name: GenerationEstimate.from_dict(entry,
                                                               f"{where}.metrics[{name!r}]")
                            for name, entry in metrics.items()},
                   n_tokens=_integer(data.get("n_tokens"), f"{where}.n_tokens", optional=True),
                   wall_s=check_number(data.get("wall_s"), f"{where}.wall_s"),
                   decode_tokens_per_s=check_number(data.get("decode_tokens_per_s"),
                                                    f"{where}.decode_tokens_per_s"))


@dataclass(frozen=True)
class GenerationSettings:
    """What a generation benchmark's metrics were measured with (None: not recorded)."""

    n_prompts: int | None = None  # prompts used
    split: str | None = None
    prompt_len: int | None = None
    continuation_len: int | None = None
    seed: int | None = None
    metric_unit: str | None = None  # "words" | "tokens"
    n_bootstrap: int | None = None
    n_groups: int | None = None
    batch_size: int | None = None  # prompts decoded at once

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> GenerationSettings:
        data = _object(data, where)
        return cls(**{f.name: (_text(data.get(f.name), f"{where}.{f.name}")
                               if f.name in ("split", "metric_unit") else
                               _integer(data.get(f.name), f"{where}.{f.name}", optional=True))
                      for f in fields(cls)})


_GENERATION_TEXT = ("kind", "run_id", "model", "corpus", "command", "created", "git_commit",
                    "family", "tokenizer", "judge", "judge_file", "features", "strategy")


@dataclass(frozen=True)
class GenerationResult:
    """A run's generation results: ``<run_id>/generation.json`` (the generation benchmark's
    sidecar, schema 1 in ``lmbench.evaluation.generation_results``), or what a record holds of
    its own (``record_run(generation={"samples": [...], "metrics": {...}})``). Every field may be
    missing from a record's own; a sidecar has them all.
    """

    kind: str | None = None  # "lmbench generation results" in a sidecar
    schema: int | None = None  # the sidecar's schema version; None: a record's own results
    run_id: str | None = None
    model: str | None = None  # the generation report's label of the model
    corpus: str | None = None
    command: str | None = None
    created: str | None = None
    git_commit: str | None = None
    family: str | None = None
    tokenizer: str | None = None
    judge: str | None = None  # the judge's family
    judge_file: str | None = None  # the judge's model file; None: the model itself
    features: str | None = None  # MAUVE features
    config: GenerationSettings | None = None
    strategy: str | None = None  # the headline decoding (the row ``metrics`` come from)
    metrics: dict[str, float | None] = field(default_factory=dict)  # headline, by metric key
    decode_tokens_per_s: float | None = None  # pure-sampling decode speed
    rows: tuple[GenerationRow, ...] = ()  # every decoding, the human reference first
    samples: tuple[dict[str, str], ...] = ()  # {"prompt", "human" | "text", <strategy>: ...}
    extra: dict[str, Any] = field(default_factory=dict)  # keys of no field, kept as they are

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: a sidecar (``schema`` set) with every key; a record's own results
        with the keys it has."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (self.schema is None and (value is None or value == {}
                                                              or value == ())):
                continue
            if f.name == "config":
                value = None if value is None else value.to_dict()
            elif f.name == "rows":
                value = [row.to_dict() for row in value]
            elif f.name in ("metrics", "samples"):
                value = [dict(s) for s in value] if f.name == "samples" else dict(value)
            out[f.name] = value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Any, where: str = "generation") -> GenerationResult:
        """A checked ``GenerationResult``; messages name the key (``metrics['mauve'] is not a
        number``), prefixed by ``where`` when it is not empty."""
        data = _object(data, where or "generation")
        prefix = f"{where}." if where else ""
        values: dict[str, Any] = {key: _text(data.get(key), prefix + key)
                                  for key in _GENERATION_TEXT}
        values["schema"] = _integer(data.get("schema"), prefix + "schema", optional=True)
        if data.get("config") is not None:
            values["config"] = GenerationSettings.from_dict(data["config"], prefix + "config")
        metrics = _object(data.get("metrics", {}), prefix + "metrics")
        values["metrics"] = {name: check_number(value, f"{prefix}metrics[{name!r}]")
                             for name, value in metrics.items()}
        values["decode_tokens_per_s"] = check_number(data.get("decode_tokens_per_s"),
                                                     prefix + "decode_tokens_per_s")
        rows = _list(data.get("rows", []), prefix + "rows")
        values["rows"] = tuple(GenerationRow.from_dict(row, f"{prefix}rows[{i}]")
                               for i, row in enumerate(rows))
        samples = data.get("samples", [])
        if not isinstance(samples, list) or not all(
                isinstance(s, dict) and all(isinstance(t, str) for t in s.values())
                for s in samples):
            raise ValueError(f"{prefix}samples is not a list of objects of strings")
        values["samples"] = tuple(dict(s) for s in samples)
        known = {f.name for f in fields(cls)} - {"extra"}
        values["extra"] = {k: v for k, v in data.items() if k not in known}
        return cls(**values)

    def filled_from(self, other: GenerationResult) -> GenerationResult:
        """These results with what they lack taken from ``other`` (a record's own results over
        a sidecar's): a missing field, and each metric it lacks; its own values win."""
        return _filled(self, other)


# ---------------------------------------------------------------------------------- tasks


TASK_RESULTS_KIND = "lmbench task results"
_TASK_TEXT = ("task", "kind", "metric", "mode", "split", "fingerprint")


@dataclass(frozen=True)
class TaskScore:
    """One task evaluated one way (``lmbench.tasks.evaluator``): its metrics with 95%
    intervals, and per example whether the headline metric was met (the pairing of
    ``compare``). ``fingerprint`` hashes the prompts and targets: two scores with the same
    fingerprint asked the same questions the same way."""

    task: str
    kind: str  # "generate", "multiple_choice", "rolling"
    metric: str  # the headline metric: "exact_match", "acc", "perplexity"
    mode: str  # "direct", "cot", "self-consistency"
    num_fewshot: int
    split: str
    n_examples: int
    metrics: dict[str, float]  # exact_match, exact_match_flexible / acc, acc_norm / perplexity
    ci95: dict[str, tuple[float, float]]  # 95% interval of each metric that has one
    fingerprint: str
    prompt: dict[str, Any] = field(default_factory=dict)  # PromptConfig.to_dict()
    correct: tuple[bool, ...] = ()  # per example, the headline metric (empty: rolling)
    prefill_tokens: int = 0  # tokens read to reach every question (the preamble once if cached)
    prefill_tokens_uncached: int = 0  # what reading each prompt whole would have read
    wall_s: float = 0.0
    examples_file: str | None = None  # the per-example JSONL, relative to the sidecar

    @property
    def key(self) -> str:
        """What identifies the score within a model's results: ``addition 8-shot cot``."""
        return f"{self.task} {self.num_fewshot}-shot {self.mode}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ci95"] = {k: list(v) for k, v in self.ci95.items()}
        data["correct"] = [int(c) for c in self.correct]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TaskScore:
        data = _object(data, where)
        values: dict[str, Any] = {k: _text(_required(data, k, f"{where}: "), f"{where}.{k}",
                                           optional=False) for k in _TASK_TEXT}
        for key in ("num_fewshot", "n_examples", "prefill_tokens", "prefill_tokens_uncached"):
            values[key] = _integer(data.get(key, 0), f"{where}.{key}")
        values["metrics"] = {k: check_number(v, f"{where}.metrics[{k!r}]", optional=False)
                             for k, v in _object(data.get("metrics"), f"{where}.metrics").items()}
        intervals = {}
        for k, v in _object(data.get("ci95", {}), f"{where}.ci95").items():
            if not isinstance(v, list) or len(v) != 2:
                raise ValueError(f"{where}.ci95[{k!r}] is not [low, high]")
            intervals[k] = (check_number(v[0], f"{where}.ci95[{k!r}]", optional=False),
                            check_number(v[1], f"{where}.ci95[{k!r}]", optional=False))
        values["ci95"] = intervals
        values["prompt"] = _object(data.get("prompt", {}), f"{where}.prompt")
        correct = _list(data.get("correct", []), f"{where}.correct")
        if not all(c in (0, 1) and not isinstance(c, float) for c in correct):
            raise ValueError(f"{where}.correct is not a list of 0 / 1")
        values["correct"] = tuple(bool(c) for c in correct)
        values["wall_s"] = check_number(data.get("wall_s", 0.0), f"{where}.wall_s",
                                        optional=False)
        values["examples_file"] = _text(data.get("examples_file"), f"{where}.examples_file")
        return cls(**values)


@dataclass(frozen=True)
class TaskResults:
    """A run's task evaluations: ``<run_id>/tasks.json``, the sidecar ``lmbench eval-tasks``
    writes beside a record (merged into ``RunResult.tasks`` on reading), one ``TaskScore`` per
    (task, shots, mode)."""

    run_id: str
    model: str
    family: str | None = None
    created: str | None = None
    git_commit: str | None = None
    device: str | None = None
    scores: tuple[TaskScore, ...] = ()
    kind: str = TASK_RESULTS_KIND
    schema: int = 1

    def score(self, key: str) -> TaskScore | None:
        return next((s for s in self.scores if s.key == key), None)

    def merged(self, newer: TaskResults) -> TaskResults:
        """These scores with ``newer``'s added, a newer score replacing one of the same key."""
        keys = {s.key for s in newer.scores}
        kept = tuple(s for s in self.scores if s.key not in keys)
        return replace(newer, scores=kept + newer.scores)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, scores=()))
        data["scores"] = [s.to_dict() for s in self.scores]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "tasks") -> TaskResults:
        data = _object(data, where or "tasks")
        prefix = f"{where}." if where else ""
        if data.get("kind") != TASK_RESULTS_KIND:
            raise ValueError(f"{prefix}kind is not {TASK_RESULTS_KIND!r}")
        values: dict[str, Any] = {k: _text(data.get(k), prefix + k)
                                  for k in ("family", "created", "git_commit", "device")}
        for key in ("run_id", "model"):
            values[key] = _text(_required(data, key, prefix), prefix + key, optional=False)
        values["schema"] = _integer(data.get("schema"), prefix + "schema", minimum=1)
        scores = _list(data.get("scores", []), prefix + "scores")
        values["scores"] = tuple(TaskScore.from_dict(s, f"{prefix}scores[{i}]")
                                 for i, s in enumerate(scores))
        return cls(**values)

    def filled_from(self, other: TaskResults) -> TaskResults:
        """A record's own results over a sidecar's: the sidecar's scores of other keys added."""
        return other.merged(self)


# ------------------------------------------------------------------------------ run records


SWEEP_METRICS = ("valid_ppl", "valid_bpb")  # selection metrics of a sweep (lower is better)


@dataclass(frozen=True)
class SweepResult:
    """A record's place in a hyper-parameter sweep (``lmbench.runs.sweep``): trial ``trial`` of
    ``n_trials`` of the sweep ``label`` with ``params`` (dotted option -> value). A trial's own
    record (model ``<label>-trial-<i>``) has ``selected`` false and the valid split only; the
    sweep's selected trial is written once more as ``<label>`` with ``selected`` true and every
    split of the run file, test included (test is scored for it alone). The selection scores
    the trial's saved model; where that file is gone (a sweep finished on another machine), it
    fits the trial's settings again and says so with ``refitted``: its figures, valid included,
    are then the refit's, and its training seconds are the refit's own."""

    label: str  # the sweep's label: the [[models]] table's
    trial: int  # 0-based
    n_trials: int
    params: dict[str, Any]  # the trial's values, by dotted option name ("train.learning_rate")
    selected: bool  # the sweep's choice by ``metric`` (and the record holding test metrics)
    metric: str = "valid_ppl"  # one of SWEEP_METRICS
    refitted: bool = False  # a selection whose model was fitted again, not the trial's own
    # a sweep that averaged its metric over repeats (``average_over``): the settings it chose
    # among, each the mean of n_trials / n_settings trials; None: every trial a setting
    n_settings: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("refitted", "n_settings"):
            if not data[name]:
                del data[name]  # records without them read and write back unchanged
        return data

    def choice_text(self) -> str:
        """What the selection chose among: "best of 6 trials", or "best of 3 settings, each
        the mean of 2 trials"."""
        if self.n_settings is None:
            return f"best of {self.n_trials} trials"
        return (f"best of {self.n_settings} settings, each the mean of "
                f"{self.n_trials // self.n_settings} trials")

    @classmethod
    def from_dict(cls, data: Any, where: str = "sweep") -> SweepResult:
        data = _object(data, where)
        n_trials = _integer(_required(data, "n_trials", f"{where}: "), f"{where}.n_trials",
                            minimum=1)
        trial = _integer(_required(data, "trial", f"{where}: "), f"{where}.trial")
        if trial >= n_trials:
            raise ValueError(f"{where}.trial must be < n_trials ({n_trials}), got {trial}")
        selected = _required(data, "selected", f"{where}: ")
        if not isinstance(selected, bool):
            raise ValueError(f"{where}.selected must be true or false")
        metric = _text(data.get("metric", "valid_ppl"), f"{where}.metric", optional=False)
        if metric not in SWEEP_METRICS:
            raise ValueError(f"{where}.metric must be one of {', '.join(SWEEP_METRICS)}, got "
                             f"{metric!r}")
        refitted = data.get("refitted", False)
        if not isinstance(refitted, bool):
            raise ValueError(f"{where}.refitted must be true or false")
        if refitted and not selected:
            raise ValueError(f"{where}.refitted is for a selected trial's record only")
        n_settings = data.get("n_settings")
        if n_settings is not None:
            n_settings = _integer(n_settings, f"{where}.n_settings", minimum=1)
            if n_trials % n_settings:
                raise ValueError(f"{where}.n_settings must divide n_trials ({n_trials}), got "
                                 f"{n_settings}")
        return cls(label=_text(_required(data, "label", f"{where}: "), f"{where}.label",
                               optional=False),
                   trial=trial, n_trials=n_trials,
                   params=_object(_required(data, "params", f"{where}: "), f"{where}.params"),
                   selected=selected, metric=metric, refitted=refitted, n_settings=n_settings)



@dataclass(frozen=True)
class SettingsSource:
    """Where a run's swept settings came from: a ``[[models]]`` table with ``settings_from``
    (``lmbench.runs.config``) ran with the selected trial of sweep ``sweep`` (record ``run_id``)
    and its ``params`` in place of the table's own. What ``RunResult.settings_from`` holds."""

    sweep: str  # the sweep's label
    run_id: str  # the record of its selected trial
    params: dict[str, Any]  # the values taken, by dotted option name ("train.learning_rate")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "settings_from") -> SettingsSource:
        data = _object(data, where)
        return cls(sweep=_text(_required(data, "sweep", f"{where}: "), f"{where}.sweep",
                               optional=False),
                   run_id=_text(_required(data, "run_id", f"{where}: "), f"{where}.run_id",
                                optional=False),
                   params=_object(_required(data, "params", f"{where}: "), f"{where}.params"))


@dataclass(frozen=True)
class AdaptationResult:
    """How a run adapted a saved base model with a parameter-efficient method (``lmbench.peft``):
    what ``RunResult.adaptation`` holds; None on runs trained from scratch or fully fine-tuned."""

    base_model: str  # the base model file as given (a path)
    base_digest: str  # the base's content digest (lmbench.peft.content_digest), as adapters
    # name their base in their file
    method: str  # lora | adapters | prompt | prefix (lmbench.peft.METHODS)
    options: dict[str, Any]  # the method's options (rank, alpha, targets, ...)
    n_trainable: int  # parameters the method trained (the base's stay frozen)
    n_base_params: int  # parameters of the base model
    adapter_bytes: int | None = None  # size of the adapter file alone; None when not saved

    @property
    def trainable_fraction(self) -> float:
        """n_trainable / n_base_params."""
        return self.n_trainable / max(1, self.n_base_params)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trainable_fraction": self.trainable_fraction}

    @classmethod
    def from_dict(cls, data: Any) -> AdaptationResult:
        """A checked ``AdaptationResult``, or ``ValueError`` saying why ``data`` is not one."""
        if not isinstance(data, dict):
            raise ValueError("'adaptation' is not an object")
        kinds = {"base_model": str, "base_digest": str, "method": str, "options": dict,
                 "n_trainable": int, "n_base_params": int}
        for key, kind in kinds.items():
            value = _required(data, key, "adaptation: ")
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"adaptation: {key!r} has the wrong type "
                                 f"({type(value).__name__})")
        size = data.get("adapter_bytes")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise ValueError("adaptation: 'adapter_bytes' is not an integer")
        return cls(**{key: data[key] for key in kinds}, adapter_bytes=size)


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
    metrics: dict[str, EvalResult]  # keyed by split; at least one
    env: dict[str, Any]  # versions, hardware, git commit, time
    train_log: dict[str, Any] | None = None  # neural families: steps, tokens, seconds, curve
    # {"name", "vocab_size", "sha256" of the fitted vocabulary}: paired comparisons need the
    # same tokenization (lmbench.evaluation.significance); None in records written before it existed
    tokenizer: dict[str, Any] | None = None
    # speed and memory: figures recorded with the run, and lmbench bench's throughput.json
    # merged in on reading (lmbench.storage.store)
    throughput: ThroughputResult | None = None
    # generation samples and metrics recorded with the run, and a generation benchmark's
    # generation.json merged in on reading
    generation: GenerationResult | None = None
    # where the model trained and was scored: "cpu", "cuda:0 (NVIDIA H200)"
    # (lmbench.core.device.describe_device); None in records written before it existed
    device: str | None = None
    # the base model and parameter-efficient method of an adapted run (lmbench.peft); None for
    # other runs and records written before it existed (and then left out of the JSON)
    adaptation: AdaptationResult | None = None
    # a trial of a hyper-parameter sweep, or its selected trial (SweepResult); None otherwise
    # and in records written before sweeps existed
    sweep: SweepResult | None = None
    # task evaluations (lmbench eval-tasks), from a tasks.json sidecar merged in on reading
    tasks: TaskResults | None = None
    # a run whose swept settings are another sweep's selection (settings_from); None otherwise
    # and in records written before it existed (and then left out of the JSON)
    settings_from: SettingsSource | None = None

    @property
    def undertrained(self) -> str | None:
        """Why this run's training stopped too early to be ranked like the others
        (``undertrained_reason``), or None."""
        return undertrained_reason(self.train_log, self.config.get("train"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, metrics={}, throughput=None, generation=None,
                              adaptation=None, sweep=None, tasks=None, settings_from=None))
        data["metrics"] = {split: r.to_dict() for split, r in self.metrics.items()}
        if self.adaptation is None:  # records of other runs write back unchanged
            del data["adaptation"]
        else:
            data["adaptation"] = self.adaptation.to_dict()
        data["throughput"] = None if self.throughput is None else self.throughput.to_dict()
        data["generation"] = None if self.generation is None else self.generation.to_dict()
        if self.device is None:  # records from before devices were recorded write back unchanged
            del data["device"]
        if self.sweep is None:  # nor do records outside a sweep
            del data["sweep"]
        else:
            data["sweep"] = self.sweep.to_dict()
        if self.tasks is None:  # records without task results write back unchanged
            del data["tasks"]
        else:
            data["tasks"] = self.tasks.to_dict()
        if self.settings_from is None:  # nor do records with their own settings
            del data["settings_from"]
        else:
            data["settings_from"] = self.settings_from.to_dict()
        if self.undertrained is not None:  # derived from train_log and config, for JSON readers
            data["undertrained"] = self.undertrained
        return data

    @classmethod
    def from_dict(cls, data: Any) -> RunResult:
        """A checked ``RunResult``, or ``ValueError`` saying why ``data`` is not a record. Keys
        this version does not know are ignored (records written by a newer lmbench still load);
        a ``throughput`` of bare figures (``{"decode_tokens_per_s": 950.0}``, as records held
        them before it was a ``ThroughputResult``) is read by ``ThroughputResult.from_figures``
        (names it does not know ignored)."""
        if not isinstance(data, dict):
            raise ValueError(f"top level is a JSON {type(data).__name__}, not an object")
        expected = {"run_id": str, "model": str, "corpus": str, "config": dict, "seed": int,
                    "n_params": int, "fit_s": (int, float), "metrics": dict, "env": dict}
        for key, kind in expected.items():
            value = _required(data, key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"{key!r} has the wrong type ({type(value).__name__})")
        check_number(data["fit_s"], "fit_s", optional=False)
        if not data["metrics"]:
            raise ValueError("'metrics' is empty (no split was scored)")
        values = {key: data[key] for key in expected}
        values["metrics"] = {split: EvalResult.from_dict(m, f"metrics[{split!r}]")
                             for split, m in data["metrics"].items()}
        for key in ("train_log", "tokenizer", "throughput", "generation"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise ValueError(f"{key!r} is not an object")
            values[key] = data.get(key)
        throughput = values["throughput"]
        if throughput is not None and "run_id" in throughput:
            values["throughput"] = ThroughputResult.from_dict(throughput)
        elif throughput is not None:
            known = set(THROUGHPUT_SPREADS + THROUGHPUT_NUMBERS)
            figures = {k: v for k, v in throughput.items()
                       if k in known or k.endswith("_utilization")}
            values["throughput"] = None if not figures else ThroughputResult.from_figures(
                figures, run_id=values["run_id"], model=values["model"],
                family=str(values["config"].get("family", "")), config=values["config"],
                n_params=values["n_params"])
        if values["generation"] is not None:
            values["generation"] = GenerationResult.from_dict(values["generation"])
        device = data.get("device")
        if device is not None and not isinstance(device, str):
            raise ValueError(f"'device' is not a string ({type(device).__name__})")
        adaptation = data.get("adaptation")
        if adaptation is not None:
            adaptation = AdaptationResult.from_dict(adaptation)
        sweep = None if data.get("sweep") is None else SweepResult.from_dict(data["sweep"])
        tasks = None if data.get("tasks") is None else TaskResults.from_dict(data["tasks"])
        source = data.get("settings_from")
        source = None if source is None else SettingsSource.from_dict(source)
        return cls(**values, device=device, adaptation=adaptation, sweep=sweep, tasks=tasks,
                   settings_from=source)


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

    from lmbench.core.device import cpu_isa

    return {
        "lmbench": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "packages": _package_versions(),
        "cpu": _cpu_model(),
        "cpu_isa": cpu_isa(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def train_max_seconds(config: dict[str, Any]) -> float | None:
    """The wall-clock budget, ``train.max_seconds``, of a record's ``config`` or a run file's
    model options (None without one: n-grams, step budgets). Such a run's steps, and so its
    figures, depend on the machine it ran on."""
    train = config.get("train")
    budget = train.get("max_seconds") if isinstance(train, dict) else None
    return None if budget is None else float(budget)


def describe_cpu(env: dict[str, Any]) -> str:
    """The CPU an ``environment()`` names: its model name, with its family, model and matmul
    extensions where recorded (``cpu_isa``; one name can cover two CPU generations), and its
    threads, e.g. ``"AMD EPYC (family 25 model 1: avx2), 2 threads"``."""
    name = str(env.get("cpu") or "unrecorded")
    if env.get("cpu_isa"):
        name = f"{name} ({env['cpu_isa']})"
    return f"{name}, {env['threads']} threads" if env.get("threads") else name


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
