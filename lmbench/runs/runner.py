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

A table with ``settings_from`` (a sweep's label) runs after that sweep's selection, with the
selected trial's values in place of its own (a 1,200 s rung with the 300 s rung's learning
rate); the selection is this run's, or, when ``--only`` left the sweep out, the newest one
recorded under ``out``. Its digest is of the resolved config, so it resumes like any other.

Re-running a run file does not duplicate its records: a model whose record already sits under
``out`` for the same run-file entry (same label, corpus, seed and config digest,
``config_digest``) is reported and skipped unless ``retrain``. A model's checkpoints
(``<out>/checkpoints/<corpus>-<label>/``) are removed once its record is written, unless
``keep_checkpoints``. A sweep's trial models are removed once its selection is recorded, all
but the selected trial's (``_remove_trial_models``).

Jobs and executors. A run is planned as jobs (``Job``: one model, or one trial of a sweep;
then one selection per sweep, ``lmbench.runs.sweep``), and an executor runs them: the
``LocalExecutor`` here, one after another (optionally every rank of a torchrun job together,
``lmbench.training.distributed``), or ``lmbench.runs.ray_executor.RayExecutor`` as Ray tasks.
Either way each job is ``run_job``: fit, score, write the record, then the model, then remove
the checkpoints, so both executors write the same files and the same numbers (a model's torch
threads are its ``resources.cpus`` on both).
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from lmbench.core.device import describe_device, resolve_device
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, Trainable
from lmbench.core.io import check_writable, write_atomic
from lmbench.core.names import contained, new_run_id, safe_name
from lmbench.core.results import (
    AdaptationResult,
    EvalResult,
    GenerationResult,
    RunResult,
    SettingsSource,
    SweepResult,
    ThroughputResult,
    describe_cpu,
    environment,
    train_max_seconds,
)
from lmbench.core.tokenizers import Tokenizer
from lmbench.data.corpora import Corpus, load_corpus
from lmbench.evaluation.scoring import EvalConfig, evaluate
from lmbench.models import build_model, load_model
from lmbench.peft import AdaptedLM
from lmbench.runs.config import ModelSpec, RunConfig, adapted_model
from lmbench.runs.sweep import apply_params, setting_of, trial_label, trials
from lmbench.storage.store import ResultStore
from lmbench.training.distributed import DistributedTraining

MODEL_FILE = "model.npz"  # a saved model beside its record


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


# ----------------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One record to make: fit ``spec`` (a run-file model, or one trial of a sweep with the
    trial's options and label) and score ``splits``; or, for a sweep's selected trial, load the
    trial's saved ``model_file`` and score every split; where that file is gone, fit the trial's
    settings again, timed and marked in the record (``SweepResult.refitted``)."""

    spec: ModelSpec
    splits: tuple[str, ...]
    sweep: SweepResult | None = None
    model_file: str | None = None  # a selection: the selected trial's model.npz
    fit_s: float | None = None  # a selection: the trial's training time (its model loaded)
    settings_from: SettingsSource | None = None  # the sweep selection its settings came from

    @property
    def label(self) -> str:
        return self.spec.label


@dataclass(frozen=True)
class JobContext:
    """What every job of one run shares (plain values: it travels to Ray workers)."""

    config: RunConfig
    out_dir: str
    save_models: bool = False
    keep_checkpoints: bool = False
    env: dict[str, Any] = field(default_factory=dict)
    default_threads: int | None = None  # torch threads of a model without declared resources
    token: str = ""  # this run's, unique: jobs of one run in one process read the corpus once


class Executor(Protocol):
    """Runs jobs (``run_job`` each) and gives back the records made and, by label, the jobs that
    failed; ``LocalExecutor`` runs them here one after another, ``lmbench.runs.ray_executor``
    as Ray tasks."""

    def execute(self, jobs: Sequence[Job], context: JobContext, log: Callable[[str], None]
                ) -> tuple[list[RunResult], dict[str, str]]: ...


class LocalExecutor:
    """Every job in this process, in order; the first failure stops the run (nothing of the
    failing job is written). With ``parallel`` (``lmbench.training.distributed``, under
    torchrun) every rank trains each neural model together and rank 0 alone writes."""

    def __init__(self, parallel: DistributedTraining | None = None) -> None:
        self.parallel = parallel

    def execute(self, jobs: Sequence[Job], context: JobContext, log: Callable[[str], None]
                ) -> tuple[list[RunResult], dict[str, str]]:
        results = []
        for job in jobs:
            result = run_job(context, job, log, parallel=None if job.model_file else
                             self.parallel)
            if result is not None:
                results.append(result)
        return results, {}


def run_job(context: JobContext, job: Job, log: Callable[[str], None] = print, *,
            parallel: DistributedTraining | None = None) -> RunResult | None:
    """Fit (or load) and score one job's model and write its record (then its model, then its
    checkpoints removed) exactly as ``run`` does for a model; returns the record, or None on a
    rank of ``parallel`` that does not write. Its torch threads are its declared
    ``resources.cpus`` (else ``context.default_threads``, else as they are)."""
    resources = job.spec.resources
    threads = resources.n_threads if resources is not None else context.default_threads
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_job(context, job, log, parallel)
    finally:
        torch.set_num_threads(previous)


def _run_job(context: JobContext, job: Job, log: Callable[[str], None],
             parallel: DistributedTraining | None) -> RunResult | None:
    config, out_dir, spec = context.config, Path(context.out_dir), job.spec
    device = resolve_device(config.device)
    corpus = _corpus(config.corpus, config.data_dir, context.token)
    checkpoint_dir = _checkpoint_dir(out_dir, corpus.name, spec.label)
    seed_everything(config.seed)
    sweep = job.sweep
    if job.model_file is not None and Path(job.model_file).is_file():
        model = load_model(job.model_file).to(device)
        fit_s = job.fit_s or 0.0
    else:
        if job.model_file is not None:  # a selection whose trial's model is gone: refit it
            log(f"[{spec.label}] {job.model_file} is gone: fitting the selected trial's settings "
                "again (the record says refitted)")
            sweep = replace(sweep, refitted=True)
        model = _build(spec).to(device)
        log(f"[{spec.label}] fitting on {corpus.name} train ({describe_device(model.device)}) "
            "...")
        started = time.perf_counter()
        # init: a Trainable (checked); an adapted model holds its base already
        options: dict[str, Any] = {}
        if spec.init is not None and spec.peft is None:
            options["init"] = spec.init
        if parallel is not None and isinstance(model, Trainable):
            options["parallel"] = parallel
        model.fit(corpus, checkpoint_dir=checkpoint_dir, **options)  # a Trainable (checked)
        fit_s = time.perf_counter() - started
    if parallel is not None and not parallel.is_writer:
        return None  # rank 0 scores and writes
    metrics = {split: evaluate(model, corpus, split, config.eval) for split in job.splits}
    adapter, adaptation = None, None
    if isinstance(model, AdaptedLM):
        adapter = _adapter_bytes(model)
        adaptation = adaptation_result(model, str(spec.init), len(adapter))
    result = make_record(model, corpus, metrics, label=spec.label, seed=config.seed,
                         fit_s=fit_s, env=context.env, family=spec.family, adaptation=adaptation)
    result = replace(result, sweep=sweep, settings_from=job.settings_from)
    try:
        record = ResultStore(out_dir).put(result)
    except OSError as error:
        raise LmbenchError(f"{out_dir}: cannot write the record of {spec.label!r} "
                           f"({error.strerror or error})") from None
    if context.save_models and adapter is not None:
        _save_adapter(adapter, contained(out_dir, result.run_id, "adapter.npz"), record)
    elif context.save_models or (job.sweep is not None and not job.sweep.selected):
        # a trial keeps its model until its sweep's selection has scored it
        _save_model(model, contained(out_dir, result.run_id, MODEL_FILE), record)
    if not context.keep_checkpoints and checkpoint_dir.is_dir():
        shutil.rmtree(checkpoint_dir)
        if not any(checkpoint_dir.parent.iterdir()):
            checkpoint_dir.parent.rmdir()
    shown = ", ".join(f"{s} ppl {m.perplexity:.2f}" for s, m in metrics.items())
    log(f"[{spec.label}] fit {fit_s:.1f}s; {shown}")
    return result


@functools.lru_cache(maxsize=1)
def _corpus(name: str, data_dir: str | None, token: str) -> Corpus:
    """The corpus of the run ``token``, read once per process (the driver, or a Ray worker
    running several jobs of one run); another run reads it again."""
    return load_corpus(name, data_dir)


def _checkpoint_dir(out_dir: Path, corpus_name: str, label: str) -> Path:
    return contained(out_dir, "checkpoints",
                     f"{safe_name(corpus_name, 'corpus name')}-{safe_name(label, 'label')}")


def _jobs_of(spec: ModelSpec, splits: tuple[str, ...]) -> list[Job]:
    """The jobs of one run-file model before any selection: itself, or its sweep's trials."""
    if spec.sweep is None:
        return [Job(spec, splits)]
    values = trials(spec.sweep)
    return [Job(replace(spec, label=trial_label(spec.label, number), sweep=None,
                        options=apply_params(spec.options, params)), ("valid",),
                SweepResult(spec.label, number, len(values), params, False, spec.sweep.metric))
            for number, params in enumerate(values)]


def sweep_value(record: RunResult, metric: str) -> float:
    """A trial's selection metric (``SWEEP_METRICS``, the valid split; lower is better)."""
    valid = record.metrics["valid"]
    return valid.perplexity if metric == "valid_ppl" else valid.bits_per_byte


def _selection(spec: ModelSpec, trial_records: Sequence[RunResult], out_dir: Path,
               splits: tuple[str, ...]) -> Job:
    """The job that scores the best of a sweep's trials on every split (module docstring)."""
    metric = spec.sweep.metric
    n_settings = None
    if spec.sweep.average_over:  # the setting with the best mean; its first trial is scored
        settings: dict[tuple, list[RunResult]] = {}
        for record in sorted(trial_records, key=lambda r: r.sweep.trial):
            settings.setdefault(setting_of(spec.sweep, record.sweep.params), []).append(record)
        n_settings = len(settings)
        best = min(settings.values(), key=lambda group: (
            statistics.fmean(sweep_value(r, metric) for r in group), group[0].sweep.trial))[0]
    else:
        best = min(trial_records, key=lambda r: (sweep_value(r, metric), r.sweep.trial))
    trial = best.sweep
    trial_spec = replace(spec, label=spec.label, sweep=None,
                         options=apply_params(spec.options, trial.params))
    # n_trials: the sweep's now (trials recorded before its grid was widened say fewer)
    chosen = replace(trial, selected=True, n_trials=len(trial_records), n_settings=n_settings)
    return Job(trial_spec, splits, chosen,
               model_file=str(contained(out_dir, best.run_id, MODEL_FILE)), fit_s=best.fit_s)


def run(config: RunConfig, out_dir: str | Path, save_models: bool = False, log=print, *,
        retrain: bool = False, keep_checkpoints: bool = False, executor: Executor | None = None
        ) -> list[RunResult]:
    """Fit and evaluate each model of ``config``; returns its records under ``out_dir``.

    A model with a record already under ``out_dir`` (same label, corpus, seed and config) is
    skipped and its record returned, unless ``retrain``; checkpoints are removed once a record
    is written, unless ``keep_checkpoints`` (module docstring). A model with a sweep runs its
    trials, then scores the selected one (``lmbench.runs.sweep``); the records come back in
    the run file's order, each sweep's trials before its selected record.

    ``executor`` runs the jobs: ``LocalExecutor()`` (the default: here, one after another) or
    ``lmbench.runs.ray_executor.RayExecutor``; the jobs write the same records either way. Jobs
    that fail on an executor that carries on (Ray) are reported by label at the end, as one
    ``LmbenchError``, after every other record is written.

    Before any training: every split exists, every name that becomes a path is checked and
    mapped to its folder name (``lmbench.core.names.safe_name``) and ``out_dir`` is writable.
    After each fit the record is written first, then (``save_models``) the model, so a model
    that fails to save never loses the record of its training. A wall-clock sweep resumed on
    another machine than its recorded trials is warned of (``other_machine_trials``)."""
    out_dir = Path(out_dir)
    executor = executor or LocalExecutor()
    local = isinstance(executor, LocalExecutor)
    # an absent GPU fails before anything trains (a Ray cluster's workers decide for themselves)
    device = resolve_device(config.device) if local else torch.device("cpu")
    token = secrets.token_hex(8)
    corpus = _corpus(config.corpus, config.data_dir, token)
    for split in config.splits:
        corpus.split(split)  # fail before any training if a split is missing
    for spec in config.models:
        _checkpoint_dir(out_dir, corpus.name, spec.label)
    check_writable(out_dir)
    context = JobContext(config, str(out_dir), save_models, keep_checkpoints, environment(),
                         token=token)
    store = ResultStore(out_dir)
    # earlier records of this corpus, read once (check_writable leaves no folder it made)
    earlier = store.records(corpus=corpus.name) if out_dir.is_dir() and not retrain else []

    def pending(jobs: Sequence[Job], done: dict[str, RunResult]) -> list[Job]:
        todo = []
        for job in jobs:
            seed_everything(config.seed)
            model = _build(job.spec).to(device)
            digest = config_digest(model_config(model, job.spec.family))
            record = _finished(earlier, job.label, config.seed, digest, job.splits)
            if record is not None and (record.sweep is not None) == (job.sweep is not None):
                log(f"{job.label}: already in {out_dir / record.run_id}, skipped; --retrain to "
                    "run again")
                done[job.label] = record
            else:
                todo.append(job)
        return todo

    done: dict[str, RunResult] = {}
    plan = {spec.label: _jobs_of(spec, config.splits) for spec in config.models
            if spec.settings_from is None}
    todo = pending([j for js in plan.values() for j in js], done)
    for warning in other_machine_trials(plan, done, todo, context.env):
        log(f"warning: {warning}")
    made, failed = executor.execute(todo, context, log)
    done.update((record.model, record) for record in made)
    selections = []
    for spec in config.models:
        trial_records = [done.get(job.label) for job in plan.get(spec.label, ())]
        if spec.sweep is not None and all(r is not None for r in trial_records):
            selections.append(_selection(spec, trial_records, out_dir, config.splits))
    if selections:
        made, failed_selections = executor.execute(pending(selections, done), context, log)
        done.update((record.model, record) for record in made)
        failed.update(failed_selections)
        if not save_models:  # a sweep's trial models were kept for its selection only
            for job in selections:
                if job.label in done:
                    _remove_trial_models(out_dir, done, plan[job.label], job.sweep.trial)
    inherited = []  # models whose settings are another sweep's selection: now it is recorded
    inheriting = [spec for spec in config.models if spec.settings_from is not None]
    # another sitting's selections: the records from before this run (read once; --retrain
    # ignores them for skipping, not for settings)
    read_again = retrain and inheriting and out_dir.is_dir()
    before = store.records(corpus=corpus.name) if read_again else earlier
    for spec in inheriting:
        source = _selected_record(spec.settings_from, config, done, before)
        if source is None:
            failed[spec.label] = (f"its settings come from the sweep {spec.settings_from!r}, "
                                  f"which has no selected trial under {out_dir} yet; run it "
                                  "first")
            continue
        shown = ", ".join(f"{name} = {value!r}" for name, value in source.sweep.params.items())
        log(f"{spec.label}: the settings of the selected trial of {spec.settings_from!r} "
            f"({shown}; {source.run_id})")
        taken = SettingsSource(spec.settings_from, source.run_id, dict(source.sweep.params))
        plan[spec.label] = [replace(job, settings_from=taken) for job in _jobs_of(
            replace(spec, settings_from=None, options=apply_params(spec.options, taken.params)),
            config.splits)]
        inherited += plan[spec.label]
    if inherited:
        made, failed_inherited = executor.execute(pending(inherited, done), context, log)
        done.update((record.model, record) for record in made)
        failed.update(failed_inherited)
    if failed:
        shown = "; ".join(f"{label} ({reason})" for label, reason in failed.items())
        raise LmbenchError(f"{len(failed)} run(s) failed, their records not written: {shown}; "
                           "the same command resumes them (finished ones are skipped)")
    results = []
    for spec in config.models:
        labels = [job.label for job in plan.get(spec.label, ())]
        labels += [spec.label] if spec.sweep is not None else []
        results += [done[label] for label in labels if label in done]
    return results


def other_machine_trials(plan: dict[str, list[Job]], done: dict[str, RunResult],
                         todo: Sequence[Job], env: dict[str, Any]) -> list[str]:
    """One line per wall-clock sweep (``train.max_seconds``) that this run would finish on
    another machine than its recorded trials ran on (``describe_cpu`` of their ``env``): its
    trials would compare unequal steps, which the selection cannot see."""
    here, pending_labels, lines = describe_cpu(env), {job.label for job in todo}, []
    for sweep_label, jobs in plan.items():
        timed = any(train_max_seconds(job.spec.options) is not None for job in jobs)
        if not timed or not any(job.sweep is not None and job.label in pending_labels
                                for job in jobs):
            continue
        elsewhere = sorted({describe_cpu(done[job.label].env) for job in jobs
                            if job.label in done} - {here})
        if elsewhere:
            lines.append(f"{sweep_label}: its recorded trials ran on {'; '.join(elsewhere)}, and "
                         f"this machine is {here}: a wall-clock rung's trials would have unequal "
                         "steps; remove its trial records to run them all here")
    return lines


def _selected_record(sweep_label: str, config: RunConfig, done: dict[str, RunResult],
                     before: Sequence[RunResult]) -> RunResult | None:
    """The selected record of the sweep ``sweep_label``: this run's, when the sweep is one of
    its models (``--only`` left it in); else the newest selection of that sweep with the run's
    seed among ``before``, the corpus's records under the results folder from before this run
    (run earlier, e.g. ``--only`` in another sitting)."""
    if any(spec.label == sweep_label for spec in config.models):
        record = done.get(sweep_label)
        return record if record is not None and record.sweep is not None else None
    chosen = [record for record in before
              if record.sweep is not None and record.sweep.selected
              and record.sweep.label == sweep_label and record.seed == config.seed]
    return max(chosen, key=lambda record: (str(record.env.get("created", "")), record.run_id),
               default=None)


def _remove_trial_models(out_dir: Path, done: dict[str, RunResult],
                         trial_jobs: Sequence[Job], selected_trial: int) -> None:
    """Delete the saved models of a sweep's trials once its selection is recorded, but the
    selected trial's: a grid widened later selects again, and where the same trial wins, the
    selection loads its model and scores the figures it had instead of training it again (a
    wall-clock refit lands elsewhere: the committed ladders' refits moved by up to 14%)."""
    for job in trial_jobs:
        if job.label in done and job.sweep.trial != selected_trial:
            contained(out_dir, done[job.label].run_id, MODEL_FILE).unlink(missing_ok=True)


def _build(spec: ModelSpec) -> LanguageModel:
    """The unfitted model of a run-file entry: its family's, or its base adapted by [peft]."""
    return build_model(spec.family, **spec.options) if spec.peft is None else adapted_model(spec)


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
