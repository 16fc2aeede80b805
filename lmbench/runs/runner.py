"""``run(config)``: fit every model of a run file on its corpus, score the splits, write results.

Each model's record goes to ``<out>/<run_id>/result.json`` through ``lmbench.storage.store``
(written atomically, never overwritten, indexed), so a crash or a bad model later in the list
never leaves a half-written record. A ``[[models]]`` table with ``init`` warm-starts from a
saved model (``NeuralLM.fit(corpus, init=...)``); its checkpoint still resumes the run itself.
A table with ``[peft]`` adapts its base instead (``lmbench.runs.config.adapted_model``): only the
method's weights train, the record carries the base, the method and the trainable count
(``RunResult.adaptation``), and ``save_models`` writes the adapter file ``adapter.npz`` (the new
weights alone; ``lmbench.peft.load_adapter`` puts them back on the base).
The runner knows nothing about families: it builds, fits and evaluates through the common
interface. ``record_run`` does the same for a model built elsewhere (a user's model, a
``FunctionLM``, a Hugging Face checkpoint), so it joins the leaderboard.

Each model is moved to the run's ``device`` before it is fitted (families that cannot use it stay
on the CPU), and its record says where it ran (``RunResult.device``).

Re-running a run file does not duplicate its records: a model whose record already sits under
``out`` for the same run-file entry (same label, corpus, seed and config digest,
``config_digest``) is reported and skipped unless ``retrain``. A model's checkpoints
(``<out>/checkpoints/<corpus>-<label>/``) are removed once its record is written, unless
``keep_checkpoints``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmbench.core.device import describe_device, resolve_device
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel
from lmbench.core.io import check_writable, write_atomic
from lmbench.core.names import contained, new_run_id, safe_name
from lmbench.core.results import (
    AdaptationResult,
    EvalResult,
    GenerationResult,
    RunResult,
    ThroughputResult,
    environment,
)
from lmbench.core.tokenizers import Tokenizer
from lmbench.data.corpora import Corpus, load_corpus
from lmbench.evaluation.scoring import EvalConfig, evaluate
from lmbench.models import build_model
from lmbench.peft import AdaptedLM
from lmbench.runs.config import RunConfig, adapted_model
from lmbench.storage.store import ResultStore


def seed_everything(seed: int) -> None:
    """Seed every generator a family may draw from, before it is built."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def tokenizer_fingerprint(tokenizer: Tokenizer) -> dict[str, Any]:
    """Name, vocabulary size and a SHA-256 of the fitted vocabulary: two runs whose
    fingerprints match tokenize a text identically, so their per-block NLLs align."""
    from lmbench.core.tokenizers import tokenizer_to_json

    digest = hashlib.sha256(tokenizer_to_json(tokenizer).encode("utf-8")).hexdigest()
    return {"name": tokenizer.name, "vocab_size": tokenizer.vocab_size, "sha256": digest}


def model_config(model: LanguageModel, family: str | None = None) -> dict[str, Any]:
    """The resolved config a record stores: the family, the model's options, its tokenizer."""
    config = {"family": family or model.family, **model.config()}
    config.setdefault("tokenizer", model.tokenizer.name)
    return config


def config_digest(config: dict[str, Any]) -> str:
    """A SHA-256 of a record's config (as JSON with sorted keys): equal digests, same run-file
    entry (tuples and lists alike, as the record's JSON holds them)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_record(model: LanguageModel, corpus: Corpus, metrics: dict, *, label: str,
                seed: int, fit_s: float, env: dict | None = None, family: str | None = None,
                generation: GenerationResult | dict | None = None,
                throughput: ThroughputResult | dict | None = None,
                adaptation: AdaptationResult | None = None) -> RunResult:
    """The ``RunResult`` of a fitted and scored model (not yet written); ``generation`` and
    ``throughput`` as records or as JSON objects (``GenerationResult.from_dict``; figures for
    ``ThroughputResult.from_figures``), checked (``LmbenchError``); ``adaptation`` for a model
    adapted with ``lmbench.peft``."""
    config = model_config(model, family)
    run_id, n_params = new_run_id(corpus.name, label), int(model.n_params())
    try:
        if isinstance(generation, dict):
            generation = GenerationResult.from_dict(generation)
        if isinstance(throughput, dict):
            throughput = ThroughputResult.from_figures(
                throughput, run_id=run_id, model=label, family=str(config["family"]),
                config=config, n_params=n_params)
    except ValueError as error:
        raise LmbenchError(f"record of {label!r}: {error}") from None
    return RunResult(
        run_id=run_id, model=label, corpus=corpus.name, config=config,
        seed=seed, n_params=n_params, fit_s=float(fit_s), metrics=metrics,
        env=env or environment(), train_log=model.training_log(),
        tokenizer=tokenizer_fingerprint(model.tokenizer), throughput=throughput,
        generation=generation, device=describe_device(model.device), adaptation=adaptation,
    )


def record_run(model: LanguageModel, corpus: Corpus | str, out_dir: str | Path, *,
               label: str | None = None, splits: Sequence[str] = ("test",),
               eval_config: EvalConfig | None = None, seed: int = 0, fit_s: float = 0.0,
               data_dir=None, generation: GenerationResult | dict | None = None,
               throughput: ThroughputResult | dict | None = None,
               metrics: dict[str, EvalResult] | None = None) -> RunResult:
    """Score an already fitted model on ``splits`` and write its record under ``out_dir``, where
    ``lmbench leaderboard out_dir`` ranks it beside the built-in families.

    Args:
        model: any ``LanguageModel`` (a user's subclass, ``lmbench.adapters.FunctionLM``,
            ``lmbench.adapters.huggingface.HuggingFaceLM``), already fitted.
        corpus: a ``Corpus`` or a corpus name / path for ``load_corpus``.
        out_dir: the results folder (``lmbench.storage.store.ResultStore``).
        label: the row's name on the leaderboard (default: ``model.name``).
        fit_s: training time to show, if the model was trained elsewhere.
        generation: optional ``{"samples": [{"prompt", "text"}], "metrics": {name: value}}``
            (or a ``GenerationResult``).
        throughput: optional figures measured elsewhere, e.g. ``{"decode_tokens_per_s":
            812.0}`` (names of ``ThroughputResult``'s figures), or a ``ThroughputResult``.
        metrics: ``EvalResult``s already computed by ``lmbench.evaluate`` for this model and
            corpus, keyed by split: they are recorded as they are, not scored again (the splits
            of ``splits`` not among them are scored).

    Returns:
        The ``RunResult`` written to ``<out_dir>/<run_id>/result.json``.
    """
    if isinstance(corpus, str):
        corpus = load_corpus(corpus, data_dir)
    safe_name(label or model.name, "label")  # before scoring: a bad label fails first
    safe_name(corpus.name, "corpus name")
    check_writable(out_dir)
    eval_config = eval_config or EvalConfig()
    given = dict(metrics or {})
    for split, result in given.items():
        if (result.split, result.corpus, result.model) != (split, corpus.name, model.name):
            raise LmbenchError(f"metrics[{split!r}] scored {result.model!r} on {result.corpus!r} "
                               f"{result.split!r}, not {model.name!r} on {corpus.name!r} {split!r}")
    metrics = {split: given.get(split) or evaluate(model, corpus, split, eval_config)
               for split in dict.fromkeys([*given, *splits])}
    result = make_record(model, corpus, metrics, label=label or model.name, seed=seed,
                         fit_s=fit_s, generation=generation, throughput=throughput)
    ResultStore(out_dir).put(result)
    return result


def _finished(records: Sequence[RunResult], label: str, seed: int, digest: str,
              splits: Sequence[str]) -> RunResult | None:
    """The record among ``records`` of this run-file entry that scored ``splits``, if any."""
    for record in records:
        if (record.model == label and record.seed == seed and set(splits) <= set(record.metrics)
                and config_digest(record.config) == digest):
            return record
    return None


def run(config: RunConfig, out_dir: str | Path, save_models: bool = False, log=print, *,
        retrain: bool = False, keep_checkpoints: bool = False) -> list[RunResult]:
    """Fit and evaluate each model of ``config``; returns its records under ``out_dir``.

    A model with a record already under ``out_dir`` (same label, corpus, seed and config) is
    skipped and its record returned, unless ``retrain``; checkpoints are removed once a record
    is written, unless ``keep_checkpoints`` (module docstring).

    Before any training: every split exists, every name that becomes a path is checked and
    mapped to its folder name (``lmbench.core.names.safe_name``) and ``out_dir`` is writable.
    After each fit the record is written first, then (``save_models``) the model, so a model
    that fails to save never loses the record of its training."""
    out_dir = Path(out_dir)
    device = resolve_device(config.device)  # an absent GPU fails before anything trains
    corpus = load_corpus(config.corpus, config.data_dir)
    for split in config.splits:
        corpus.split(split)  # fail before any training if a split is missing
    corpus_folder = safe_name(corpus.name, "corpus name")
    checkpoints = {spec.label: contained(out_dir, "checkpoints",
                                         f"{corpus_folder}-{safe_name(spec.label, 'label')}")
                   for spec in config.models}
    check_writable(out_dir)
    env = environment()
    store = ResultStore(out_dir)
    # earlier records of this corpus, read once (check_writable leaves no folder it made)
    earlier = store.records(corpus=corpus.name) if out_dir.is_dir() and not retrain else []
    results = []
    for spec in config.models:
        seed_everything(config.seed)
        if spec.peft is None:
            model = build_model(spec.family, **spec.options).to(device)
        else:
            model = adapted_model(spec).to(device)
        digest = config_digest(model_config(model, spec.family))
        done = _finished(earlier, spec.label, config.seed, digest, config.splits)
        if done is not None:
            log(f"{spec.label}: already in {out_dir / done.run_id}, skipped; --retrain to run "
                "again")
            results.append(done)
            continue
        log(f"[{spec.label}] fitting on {corpus.name} train ({describe_device(model.device)}) "
            "...")
        started = time.perf_counter()
        warm_start = {}  # init: a Trainable (checked); an adapted model holds its base
        if spec.init is not None and spec.peft is None:
            warm_start = {"init": spec.init}
        model.fit(corpus, checkpoint_dir=checkpoints[spec.label], **warm_start)
        fit_s = time.perf_counter() - started
        metrics = {split: evaluate(model, corpus, split, config.eval) for split in config.splits}
        adapter, adaptation = None, None
        if isinstance(model, AdaptedLM):
            adapter = _adapter_bytes(model)
            adaptation = adaptation_result(model, str(spec.init), len(adapter))
        result = make_record(model, corpus, metrics, label=spec.label, seed=config.seed,
                             fit_s=fit_s, env=env, family=spec.family, adaptation=adaptation)
        try:
            record = store.put(result)
        except OSError as error:
            raise LmbenchError(f"{out_dir}: cannot write the record of {spec.label!r} "
                               f"({error.strerror or error})") from None
        if save_models and adapter is not None:
            _save_adapter(adapter, contained(out_dir, result.run_id, "adapter.npz"), record)
        elif save_models:
            _save_model(model, contained(out_dir, result.run_id, "model.npz"), record)
        checkpoint_dir = checkpoints[spec.label]
        if not keep_checkpoints and checkpoint_dir.is_dir():
            shutil.rmtree(checkpoint_dir)
            if not any(checkpoint_dir.parent.iterdir()):
                checkpoint_dir.parent.rmdir()
        shown = ", ".join(f"{s} ppl {m.perplexity:.2f}" for s, m in metrics.items())
        log(f"[{spec.label}] fit {fit_s:.1f}s; {shown}")
        results.append(result)
    return results


def adaptation_result(model: AdaptedLM, base_model: str, adapter_bytes: int | None
                      ) -> AdaptationResult:
    """What a record says about an adapted model: its base, method, trainable parameters."""
    manifest = model.manifest()
    return AdaptationResult(base_model=base_model, base_digest=str(manifest["base_digest"]),
                            method=str(manifest["method"]), options=dict(manifest["config"]),
                            n_trainable=int(model.n_trainable()),
                            n_base_params=int(model.base.n_params()),
                            adapter_bytes=adapter_bytes)


def _adapter_bytes(model: AdaptedLM) -> bytes:
    """The adapter file's bytes (``AdaptedLM.save``), written to a temporary folder first so
    the record can say its size before anything is written beside it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "adapter.npz"
        model.save(path)
        return path.read_bytes()


def _save_adapter(data: bytes, path: Path, record: Path) -> None:
    try:
        write_atomic(path, lambda handle: handle.write(data))
    except OSError as error:
        raise LmbenchError(f"{path}: cannot save the adapter ({error.strerror or error}); its "
                           f"record is written ({record})") from None


def _save_model(model: LanguageModel, path: Path, record: Path) -> None:
    """``model.save(path)``; a failing write (disk full, no permission) is a one-line error
    that says the record is kept."""
    try:
        model.save(path)
    except OSError as error:
        raise LmbenchError(f"{path}: cannot save the model ({error.strerror or error}); its "
                           f"record is written ({record})") from None
