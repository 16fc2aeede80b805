"""Post-training pipelines from a TOML file: a base model, then stages (SFT, reward model, DPO,
IPO, PPO, GRPO, best-of-N), each starting from an earlier stage's model (the InstructGPT
recipe, Ouyang et al. 2022 figure 2; TRL's trainers as one file).

A pipeline file::

    name = "addition"                    # records are labelled <name>-<stage>
    seed = 0

    [task]                               # what the data, the judges and the metrics are
    kind = "verifiable"                  # or "sentiment"
    task = "addition"                    # verifiable: lmbench.alignment.verifiable
    n_train = 20000
    train_lengths = [1, 2, 3]
    held_out_lengths = [3, 4]

    [base]                               # a saved model (path = "model.npz") or a family to
    family = "gpt"                       # pretrain on the task's corpus
    options = { n_layer = 2, n_embd = 64, tokenizer = "char", train = { max_steps = 200 } }

    [[stages]]
    name = "sft"
    method = "sft"                       # sft | reward | dpo | ipo | ppo | grpo | best-of-n
    start = "base"                       # the stage whose model this one starts from (default:
    train = { max_steps = 300 }          # the previous model stage); train: TrainConfig keys

Tasks. ``verifiable``: problems of ``lmbench.tasks.synthetic`` split by length
(``lmbench.alignment.verifiable.length_splits``); SFT data = the train problems, reward = the
exact verifier, metric = greedy exact match on each held-out length. ``sentiment``:
``movie_reviews`` (``lmbench.data.reviews``); SFT data = demonstrations (a positive valid
review's line: its first words the prompt, the next words the response); preference pairs are
sampled from the stage's start model on valid-review prompts and labelled by ``labeller`` =
``gold`` (RLHF: the gold classifier stands in for people) or ``ai`` (RLAIF: the
likelihood-ratio judge of ``lmbench.alignment.judges``); an RL or best-of-N ``reward`` is
``gold`` (P(positive)), ``ai`` (the AI judge's log-odds of the continuation: RLAIF with the
judge scoring directly, Lee et al. 2023's d-RLAIF) or a reward stage; metrics
(``lmbench.alignment.task_eval``) on test-review prompts: gold score, gold-positive rate,
proxy reward, KL to the stage's start model, its perplexity of the samples, distinct-n.

Outputs under ``--out DIR``: every model stage writes an ordinary record
(``DIR/<run-id>/result.json``, scored on the task's record corpus, with the stage's metrics and
samples as its generation results) and its model (``DIR/<run-id>/model.npz``), so
``lmbench leaderboard DIR``, ``compare`` and ``generate`` work on every stage;
``DIR/.align/<name>/<stage>.json`` holds the stage's metrics, settings and training log, and
``DIR/.align/<name>/pipeline.json`` all of them (a hidden folder, which the leaderboard does
not read as records); sampled preference pairs go to ``DIR/.align/<name>/<stage>.pairs.jsonl``.
A stage whose ``<stage>.json`` exists with the same settings is not run again (its saved model
is loaded). Everything in the file is checked before anything trains: keys and types, methods,
stage references, data files; a bad value is one ``LmbenchError`` line naming the file and key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from lmbench.alignment.dpo import DPO_TRAIN, DPOConfig, train_dpo
from lmbench.alignment.grpo import GRPOConfig, train_grpo
from lmbench.alignment.judges import (
    GoldJudge,
    LikelihoodRatioJudge,
    agreement,
    fit_gold_judge,
    fit_likelihood_ratio_judge,
    label_pairs,
)
from lmbench.alignment.ppo import PPOConfig, train_ppo
from lmbench.alignment.preferences import load_preferences, make_pairs, write_preferences
from lmbench.alignment.reference import frozen_copy
from lmbench.alignment.reward import (
    REWARD_TRAIN,
    RewardConfig,
    RewardModel,
    pairwise_accuracy,
    train_reward_model,
)
from lmbench.alignment.rollout import Completion
from lmbench.alignment.sft import SFT_TRAIN, train_sft
from lmbench.alignment.task_eval import (
    best_of_n_metrics,
    policy_metrics,
    sample_continuations,
)
from lmbench.alignment.verifiable import (
    LENGTH_OPTION,
    LengthSplits,
    answers,
    example_of,
    length_splits,
    prompt_of,
    task_corpus,
    verifier_reward,
)
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, Trainable
from lmbench.core.io import check_writable, write_json_atomic
from lmbench.core.names import safe_name
from lmbench.core.options import build_config
from lmbench.core.toml import read_toml
from lmbench.data.corpora import Corpus, load_corpus
from lmbench.data.examples import Example, PreferencePair, load_examples
from lmbench.data.reviews import review_corpus, review_demonstrations, review_prompts
from lmbench.evaluation.scoring import EvalConfig
from lmbench.models.catalog import MODELS, build_model, load_model
from lmbench.runs.runner import record_run, seed_everything
from lmbench.tasks.synthetic import generate
from lmbench.training.trainer import TrainConfig

KINDS = ("verifiable", "sentiment")
MODEL_METHODS = ("sft", "dpo", "ipo", "ppo", "grpo")  # stages that produce a policy
METHODS = (*MODEL_METHODS, "reward", "best-of-n")
LABELLERS = ("gold", "ai")
N_SAMPLES_RECORDED = 8  # samples kept in a stage's record
SUMMARY_FOLDER = ".align"  # hidden: the leaderboard reads every other .json under --out


@dataclass(frozen=True)
class TaskConfig:
    """The ``[task]`` table (module docstring)."""

    kind: str
    # verifiable
    task: str = "addition"
    n_train: int = 20_000
    n_held_out: int = 300
    train_lengths: list[int] = field(default_factory=lambda: [1, 2, 3])
    held_out_lengths: list[int] = field(default_factory=lambda: [3, 4])
    # sentiment
    prompt_words: int = 5
    n_eval_prompts: int = 256  # test-review prompts every stage is measured on
    n_demonstrations: int = 2_000  # sentiment SFT examples (positive valid-review lines)
    demonstration_words: int = 12
    record_reviews: int = 20  # the record corpus: the first test reviews (ppl is costly)
    # both
    max_new_tokens: int = 24

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LmbenchError(f"task.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("n_train", "n_held_out", "prompt_words", "n_eval_prompts", "max_new_tokens",
                     "n_demonstrations", "demonstration_words", "record_reviews"):
            if getattr(self, name) < 1:
                raise LmbenchError(f"task.{name} must be >= 1, got {getattr(self, name)}")
        if not self.train_lengths or not self.held_out_lengths:
            raise LmbenchError("task.train_lengths and task.held_out_lengths need a length each")


@dataclass(frozen=True)
class BaseConfig:
    """The ``[base]`` table: a saved model, or a family pretrained on the task's corpus."""

    path: str | None = None
    family: str | None = None
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.path is None) == (self.family is None):
            raise LmbenchError("base needs exactly one of path (a saved model) or family")
        if self.family is not None and self.family not in MODELS:
            MODELS.get(self.family)  # the registry's "unknown ... did you mean" error


@dataclass(frozen=True)
class PairsConfig:
    """Where a stage's preference pairs come from: a JSONL file, or sampled from the stage's
    start model on ``n`` valid-review prompts and labelled by ``labeller``."""

    path: str | None = None
    labeller: str = "gold"
    n: int = 1_000

    def __post_init__(self) -> None:
        if self.labeller not in LABELLERS:
            raise LmbenchError(f"pairs.labeller must be one of {', '.join(LABELLERS)}, got "
                               f"{self.labeller!r}")
        if self.n < 1:
            raise LmbenchError(f"pairs.n must be >= 1, got {self.n}")


@dataclass(frozen=True)
class StageConfig:
    """One ``[[stages]]`` table (module docstring)."""

    name: str
    method: str
    start: str | None = None  # default: the previous model stage, else the base
    data: str | None = None  # sft: an Example JSONL instead of the task's own data
    pairs: PairsConfig | None = None  # reward, dpo, ipo
    reward: str | None = None  # ppo, grpo, best-of-n: "gold", "verifier" or a reward stage
    n: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])  # best-of-n sizes
    curve: list[int] = field(default_factory=list)  # reward: also train on the first k pairs
    n_prompts: int = 2_000  # ppo, grpo: RL prompts (verifiable: per length of ``lengths``)
    lengths: list[int] = field(default_factory=list)  # verifiable RL problem lengths; default:
    # the held-out lengths (their train-seed problems, never a held-out question)
    n_held_out_pairs: int = 256  # reward: gold-labelled pairs on test prompts for accuracy
    train: dict = field(default_factory=dict)  # TrainConfig keys
    options: dict = field(default_factory=dict)  # the method's own settings

    def __post_init__(self) -> None:
        safe_name(self.name, "stage name")
        if self.method not in METHODS:
            raise LmbenchError(f"stage {self.name!r}: method must be one of "
                               f"{', '.join(METHODS)}, got {self.method!r}")
        if any(n < 1 for n in self.n) or any(k < 1 for k in self.curve):
            raise LmbenchError(f"stage {self.name!r}: n and curve must list sizes >= 1, got "
                               f"{self.n} and {self.curve}")
        if self.n_held_out_pairs < 1 or self.n_prompts < 1 or any(k < 1 for k in self.lengths):
            raise LmbenchError(f"stage {self.name!r}: n_held_out_pairs, n_prompts and lengths "
                               "must be >= 1")


@dataclass(frozen=True)
class PipelineConfig:
    """A whole pipeline file (module docstring)."""

    name: str
    task: TaskConfig
    base: BaseConfig
    stages: list[StageConfig]
    seed: int = 0
    data_dir: str | None = None


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and check a pipeline TOML file; every error names the file and the key."""
    path = Path(path)
    return parse_pipeline(read_toml(path, "pipeline"), str(path), base_dir=path.parent)


def parse_pipeline(data: dict[str, Any], where: str = "pipeline", *,
                   base_dir: Path | None = None) -> PipelineConfig:
    """A checked ``PipelineConfig`` from a parsed TOML table (relative paths are read from
    ``base_dir``, else the working directory)."""
    try:
        return _parse(dict(data), where, base_dir or Path.cwd())
    except LmbenchError as error:
        message = str(error)
        raise LmbenchError(message if message.startswith(where) else f"{where}: {message}"
                           ) from None


def _parse(data: dict[str, Any], where: str, base_dir: Path) -> PipelineConfig:
    for key in ("name", "task", "base", "stages"):
        if key not in data:
            raise LmbenchError(f"missing key {key!r}")
    if not isinstance(data["stages"], list) or not data["stages"]:
        raise LmbenchError("'stages' must be a non-empty list of [[stages]] tables")
    stages = []
    for i, table in enumerate(data["stages"]):
        if not isinstance(table, dict):
            raise LmbenchError(f"stages[{i}] must be a table")
        table = dict(table)
        if isinstance(table.get("pairs"), dict):
            table["pairs"] = _resolved(build_config(PairsConfig, table["pairs"],
                                                    f"stages[{i}].pairs"), base_dir)
        stage = build_config(StageConfig, table, f"stages[{i}]")
        if stage.data is not None:
            stage = replace(stage, data=str(_path(stage.data, base_dir)))
        build_config(TrainConfig, stage.train, f"stages[{i}].train")
        stages.append(stage)
    data = {**data, "stages": stages}
    config = build_config(PipelineConfig, data, "pipeline")
    safe_name(config.name, "name")
    base = config.base
    if base.path is not None:
        base = replace(base, path=str(_path(base.path, base_dir)))
        if not Path(base.path).is_file():
            raise LmbenchError(f"base.path: {base.path}: model file not found")
    config = replace(config, base=base)
    _check_stages(config)
    return config


def _path(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _resolved(pairs: PairsConfig, base_dir: Path) -> PairsConfig:
    return pairs if pairs.path is None else replace(pairs, path=str(_path(pairs.path, base_dir)))


def _check_stages(config: PipelineConfig) -> None:
    """Stage references, rewards and data, all before anything trains."""
    seen: dict[str, str] = {"base": "base"}
    kind = config.task.kind
    for stage in config.stages:
        where = f"stage {stage.name!r}"
        if stage.name in seen:
            raise LmbenchError(f"{where}: a stage (or the base) already has this name")
        if stage.start is not None and stage.start not in seen:
            raise LmbenchError(f"{where}: start {stage.start!r} is no earlier stage (have: "
                               f"{', '.join(seen)})")
        if stage.start is not None and seen[stage.start] in ("reward", "best-of-n"):
            raise LmbenchError(f"{where}: start {stage.start!r} is a {seen[stage.start]} stage, "
                               "not a policy")
        if stage.method in ("ppo", "grpo", "best-of-n"):
            allowed = ["gold", "ai"] if kind == "sentiment" else ["verifier"]
            allowed += [n for n, m in seen.items() if m == "reward"]
            if stage.reward not in allowed:
                raise LmbenchError(f"{where}: reward must be one of {', '.join(allowed)}, got "
                                   f"{stage.reward!r}")
        elif stage.reward is not None:
            raise LmbenchError(f"{where}: reward is for ppo, grpo and best-of-n stages")
        if stage.method in ("reward", "dpo", "ipo"):
            if stage.pairs is None:
                raise LmbenchError(f"{where}: a {stage.method} stage needs a pairs table")
            if stage.pairs.path is not None:
                load_preferences(stage.pairs.path)  # one-line errors naming file and field
            elif kind != "sentiment":
                raise LmbenchError(f"{where}: pairs need a path (sampled pairs are for the "
                                   "sentiment task)")
        elif stage.pairs is not None:
            raise LmbenchError(f"{where}: pairs are for reward, dpo and ipo stages")
        if stage.data is not None:
            if stage.method != "sft":
                raise LmbenchError(f"{where}: data is for sft stages")
            examples = load_examples(stage.data)
            if not isinstance(examples[0], Example):
                raise LmbenchError(f"{where}: data {stage.data} holds preference pairs; an sft "
                                   "stage reads prompt/response examples")
        _check_options(stage, config.task)
        seen[stage.name] = stage.method


def _check_options(stage: StageConfig, task: TaskConfig) -> None:
    """Build the method's config from ``options`` now, so a bad value (kl_coef < 0,
    group_size < 2, an unknown key) fails before anything trains."""
    where = f"stage {stage.name!r} options"
    if stage.method in ("dpo", "ipo"):
        options = {**stage.options, **({"loss": "ipo"} if stage.method == "ipo" else {})}
        build_config(DPOConfig, options, where)
    elif stage.method in ("grpo", "ppo"):
        config_class = GRPOConfig if stage.method == "grpo" else PPOConfig
        build_config(config_class, {"max_new_tokens": task.max_new_tokens, **stage.options},
                     where)
    elif stage.method == "reward":
        build_config(RewardConfig, stage.options, where)
    elif stage.options:
        raise LmbenchError(f"{where}: a {stage.method} stage takes no options (got "
                           f"{', '.join(stage.options)})")


# ------------------------------------------------------------------------------------ running


@dataclass
class _Context:
    """What the stages share while a pipeline runs."""

    config: PipelineConfig
    out: Path
    log: Callable[[str], None]
    record_corpus: Corpus
    splits: LengthSplits | None = None
    gold: GoldJudge | None = None
    models: dict[str, Path] = field(default_factory=dict)  # stage -> model.npz
    rewards: dict[str, Any] = field(default_factory=dict)  # reward stage -> reward model
    summaries: dict[str, dict] = field(default_factory=dict)
    ai_judge: LikelihoodRatioJudge | None = None
    rl_problems: list = field(default_factory=list)  # verifiable RL prompts' problems


def run_pipeline(config: PipelineConfig, out_dir: str | Path, *,
                 log: Callable[[str], None] = print) -> dict[str, dict]:
    """Run every stage of ``config`` (module docstring); returns each stage's summary.

    Args:
        config: a checked pipeline (``load_pipeline``).
        out_dir: the results folder.
        log: where progress lines go.

    Returns:
        Stage name -> its summary (what ``<name>/<stage>.json`` holds).
    """
    out = Path(out_dir)
    check_writable(out)
    seed_everything(config.seed)
    task = config.task
    if task.kind == "verifiable":
        splits = length_splits(task.task, n_train=task.n_train, n_held_out=task.n_held_out,
                               train_lengths=task.train_lengths,
                               held_out_lengths=sorted({*task.held_out_lengths}),
                               seed=config.seed, data_dir=config.data_dir)
        held = [p for length in sorted(splits.held_out) for p in splits.held_out[length]]
        record_corpus = task_corpus(held, name=f"{task.task}-held-out", held_out=True)
        context = _Context(config, out, log, record_corpus, splits=splits)
    else:
        context = _Context(config, out, log, review_corpus(task.record_reviews,
                                                           config.data_dir))
        log("fitting the gold judge on the train reviews' labels ...")
        context.gold = fit_gold_judge(config.data_dir)
    _run_base(context)
    previous = "base"
    for stage in config.stages:
        start = stage.start or previous
        _run_stage(context, stage, start)
        if stage.method in MODEL_METHODS:
            previous = stage.name
    write_json_atomic(_folder(context) / "pipeline.json",
                      {"name": config.name, "stages": context.summaries})
    return context.summaries


def _folder(context: _Context) -> Path:
    return context.out / SUMMARY_FOLDER / safe_name(context.config.name, "name")


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def _settings(config: Any) -> dict[str, Any]:
    """A config's fields that differ from their defaults (nested configs likewise): what a
    stage's identity is made of, so a new option with a default keeps finished stages valid."""
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        default = (f.default if f.default is not MISSING else
                   f.default_factory() if f.default_factory is not MISSING else MISSING)
        if is_dataclass(value):
            value = _settings(value)
        if default is MISSING or value != default:
            out[f.name] = value
    return out


def _done(context: _Context, stage: str, digest: str) -> dict | None:
    """The summary of a finished stage with these settings, if its model is still there."""
    path = _folder(context) / f"{stage}.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    files = [summary.get(key) for key in ("model_path", "reward_model_path")]
    if summary.get("digest") != digest or any(f is not None and not Path(f).is_file()
                                              for f in files):
        return None
    return summary


def _base_corpus(context: _Context) -> Corpus:
    if context.splits is not None:
        return task_corpus(context.splits.train, name=context.config.task.task)
    return load_corpus("movie_reviews", context.config.data_dir)


def _run_base(context: _Context) -> None:
    config = context.config
    digest = _digest({"base": _settings(config.base), "task": _settings(config.task),
                      "seed": config.seed})
    done = _done(context, "base", digest)
    if done is not None:
        context.log("base: finished earlier, reusing its model")
        context.models["base"], context.summaries["base"] = Path(done["model_path"]), done
        return
    started = time.perf_counter()
    if config.base.path is not None:
        model = load_model(config.base.path)
        train_log = None
    else:
        context.log(f"base: pretraining {config.base.family} on the task's corpus ...")
        model = build_model(config.base.family, **config.base.options)
        model.fit(_base_corpus(context), valid=False)
        train_log = model.training_log()
    _finish(context, "base", "base", digest, model, model, time.perf_counter() - started,
            {"train_log": train_log})


def _run_stage(context: _Context, stage: StageConfig, start: str) -> None:
    digest = _digest({"stage": _settings(stage), "start": start,
                      "start_digest": context.summaries[start]["digest"]})
    done = _done(context, stage.name, digest)
    if done is not None:
        context.log(f"{stage.name}: finished earlier, reusing it")
        context.summaries[stage.name] = done
        if done.get("model_path"):
            context.models[stage.name] = Path(done["model_path"])
        if done.get("reward_model_path"):
            context.rewards[stage.name] = RewardModel.load(done["reward_model_path"])
        return
    context.log(f"{stage.name}: {stage.method} from {start} ...")
    started = time.perf_counter()
    policy = load_model(context.models[start])
    reference = frozen_copy(policy)  # pi_ref: the stage's start model, frozen
    runner = _METHODS[stage.method]
    model, extra = runner(context, stage, policy, reference)
    seconds = time.perf_counter() - started
    if model is None:  # best-of-n: no new model; the summary holds the measurements
        summary = {"stage": stage.name, "method": stage.method, "start": start,
                   "digest": digest, "seconds": seconds, **extra}
        write_json_atomic(_folder(context) / f"{stage.name}.json", summary)
        context.summaries[stage.name] = summary
        return
    _finish(context, stage.name, stage.method, digest, model, reference, seconds,
            {"start": start, **extra})


def _finish(context: _Context, stage: str, method: str, digest: str, model: LanguageModel,
            reference: LanguageModel, seconds: float, extra: dict) -> None:
    """Measure a stage's model, write its record, model and summary."""
    metrics, samples = _measure(context, model, reference, seed=context.config.seed)
    label = f"{context.config.name}-{stage}"
    record = record_run(model, context.record_corpus, context.out, label=label,
                        splits=("test",), eval_config=EvalConfig(progress=False, n_bootstrap=100),
                        seed=context.config.seed, fit_s=seconds,
                        generation={"metrics": _numbers(metrics), "samples": samples})
    model_path = context.out / record.run_id / "model.npz"
    model.save(model_path)
    summary = {"stage": stage, "method": method, "digest": digest, "run_id": record.run_id,
               "label": label, "model_path": str(model_path), "seconds": seconds,
               "metrics": metrics, "samples": samples, **extra}
    write_json_atomic(_folder(context) / f"{stage}.json", summary)
    context.models[stage], context.summaries[stage] = model_path, summary
    context.log(f"{stage}: {_brief(metrics)}")


def _numbers(metrics: dict) -> dict[str, float | None]:
    return {k: v for k, v in metrics.items() if v is None or isinstance(v, (int, float))}


def _brief(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                     if isinstance(v, float) and not isinstance(v, bool))


def _measure(context: _Context, model: LanguageModel, reference: LanguageModel, *, seed: int,
             reward=None) -> tuple[dict, list[dict]]:
    """The task's metrics of a policy (module docstring) and a few samples."""
    task = context.config.task
    if context.splits is not None:
        metrics: dict[str, Any] = {}
        samples: list[dict] = []
        for length, problems in sorted(context.splits.held_out.items()):
            responses = answers(model, problems, max_new_tokens=task.max_new_tokens)
            right = [p.verify(r) for p, r in zip(problems, responses)]
            metrics[f"exact_match_len{length}"] = sum(right) / max(1, len(problems))
            samples += [{"prompt": prompt_of(p), "text": r, "answer": p.answer}
                        for p, r in list(zip(problems, responses))[:N_SAMPLES_RECORDED // 2]]
        return metrics, samples
    prompts = review_prompts("test", task.prompt_words, data_dir=context.config.data_dir,
                             limit=task.n_eval_prompts)
    measured, drawn = policy_metrics(model, reference, prompts,
                                     max_new_tokens=task.max_new_tokens,
                                     gold=context.gold.positive_probability, reward=reward,
                                     seed=seed)
    samples = [{"prompt": p, "text": t} for p, t in
               list(zip(drawn.prompts, drawn.texts))[:N_SAMPLES_RECORDED]]
    return measured.to_dict(), samples


# ------------------------------------------------------------------------------------ methods


def _train_config(stage: StageConfig, defaults: TrainConfig) -> TrainConfig:
    """The stage's ``train`` table over the method's defaults (no validation passes)."""
    base = {**asdict(defaults), "eval_every": 10**9, "progress": False, "bf16": False}
    return build_config(TrainConfig, {**base, **stage.train}, f"stage {stage.name!r} train")


def _sft_examples(context: _Context, stage: StageConfig) -> list[Example]:
    if stage.data is not None:
        return list(load_examples(stage.data))
    if context.splits is not None:
        return [example_of(p) for p in context.splits.train]
    task = context.config.task
    return review_demonstrations("valid", task.prompt_words, task.demonstration_words,
                                 data_dir=context.config.data_dir,
                                 limit=task.n_demonstrations)


def _trainable(model: LanguageModel, stage: StageConfig) -> LanguageModel:
    if not isinstance(model, Trainable):
        raise LmbenchError(f"stage {stage.name!r}: a {stage.method} stage trains a torch model; "
                           f"{model.name} is not Trainable")
    return model


def _run_sft(context: _Context, stage: StageConfig, policy: LanguageModel,
             reference: LanguageModel) -> tuple[LanguageModel, dict]:
    """Supervised fine-tuning, the response-only loss (``lmbench.alignment.sft``)."""
    policy = _trainable(policy, stage)
    examples = _sft_examples(context, stage)
    log = train_sft(policy, examples, _train_config(stage, SFT_TRAIN))
    return policy, {"n_examples": len(examples), "train_log": log.to_dict()}


def _run_dpo(context: _Context, stage: StageConfig, policy: LanguageModel,
             reference: LanguageModel) -> tuple[LanguageModel, dict]:
    """DPO (or IPO) on the stage's pairs against the frozen start model."""
    policy = _trainable(policy, stage)
    options = {**stage.options, **({"loss": "ipo"} if stage.method == "ipo" else {})}
    config = build_config(DPOConfig, options, f"stage {stage.name!r} options")
    pairs, info = sample_pairs(context, stage, policy)
    log = train_dpo(policy, pairs, config, reference=reference,
                    train_config=_train_config(stage, DPO_TRAIN),
                    checkpoint_dir=_folder(context) / f"{stage.name}.checkpoint")
    return policy, {**info, "options": asdict(config), "train_log": log.to_dict()}


def _rl_prompts(context: _Context, stage: StageConfig, n: int) -> list[str]:
    """RL prompts: valid-review prompts (sentiment), or train problems of the stage's
    ``lengths`` (verifiable; none of them a held-out question)."""
    task = context.config.task
    if context.splits is None:
        return review_prompts("valid", task.prompt_words, data_dir=context.config.data_dir,
                              limit=n)
    held = {p.question for ps in context.splits.held_out.values() for p in ps}
    by_length = []
    for length in stage.lengths or sorted(context.splits.held_out):
        drawn = generate(task.task, n, context.config.seed * 1_000 + 500 + length,
                         **{LENGTH_OPTION[task.task]: length})
        by_length.append([p for p in drawn if p.question not in held])
    # interleaved, so every step's prompts mix the lengths
    problems = [p for row in itertools.zip_longest(*by_length) for p in row if p is not None]
    context.rl_problems = problems
    return [prompt_of(p) for p in problems]


def _completion_reward(context: _Context, name: str):
    """``Sequence[Completion] -> rewards`` for the RL trainers, from ``_reward_function``."""
    reward = _reward_function(context, name)

    def score(completions: Sequence[Completion]) -> list[float]:
        return [float(r) for r in reward([c.prompt for c in completions],
                                         [c.text for c in completions])]

    return score


def _run_policy_optimisation(context: _Context, stage: StageConfig, policy: LanguageModel,
                             reference: LanguageModel) -> tuple[LanguageModel, dict]:
    """GRPO or PPO from the stage's reward (the verifier, the gold or AI judge, a reward
    model)."""
    policy = _trainable(policy, stage)
    config_class, trainer = ((GRPOConfig, train_grpo) if stage.method == "grpo"
                             else (PPOConfig, train_ppo))
    options = {"max_new_tokens": context.config.task.max_new_tokens, **stage.options}
    config = build_config(config_class, options, f"stage {stage.name!r} options")
    prompts = _rl_prompts(context, stage, stage.n_prompts)
    if stage.reward in context.rewards:
        reward = context.rewards[stage.reward].reward_function(policy)
    else:
        reward = _completion_reward(context, stage.reward)
    log = trainer(policy, prompts, reward, config, reference=reference,
                  checkpoint_dir=_folder(context) / f"{stage.name}.checkpoint")
    return policy, {"reward": stage.reward, "n_prompts": len(prompts),
                    "options": asdict(config), "train_log": log.to_dict()}


def _run_reward(context: _Context, stage: StageConfig, policy: LanguageModel,
                reference: LanguageModel) -> tuple[None, dict]:
    """A reward model on the start model (Bradley-Terry on the stage's pairs); its pairwise
    accuracy on gold-labelled pairs of test prompts, also for the first k pairs of ``curve``."""
    pairs, info = sample_pairs(context, stage, policy)
    held_out = _held_out_pairs(context, stage, policy)
    config = build_config(RewardConfig, stage.options, f"stage {stage.name!r} options")
    train_config = _train_config(stage, REWARD_TRAIN)
    curve = []
    for k in sorted({*(k for k in stage.curve if k < len(pairs))}):
        model = train_reward_model(policy, pairs[:k], config, train_config=train_config)
        curve.append({"n_pairs": k, "accuracy": pairwise_accuracy(model, held_out)})
        context.log(f"{stage.name}: {k} pairs: held-out pairwise accuracy "
                    f"{curve[-1]['accuracy']:.3f}")
    model = train_reward_model(policy, pairs, config, train_config=train_config)
    accuracy = pairwise_accuracy(model, held_out)
    curve.append({"n_pairs": len(pairs), "accuracy": accuracy})
    context.log(f"{stage.name}: {len(pairs)} pairs: held-out pairwise accuracy {accuracy:.3f}")
    path = _folder(context) / f"{stage.name}.reward.npz"
    model.save(path)
    context.rewards[stage.name] = model
    return None, {**info, "reward_model_path": str(path), "held_out_pairs": len(held_out),
                  "pairwise_accuracy": accuracy, "curve": curve}


def _held_out_pairs(context: _Context, stage: StageConfig, policy: LanguageModel
                    ) -> list[PreferencePair]:
    """Pairs of the start model's continuations of test prompts, labelled by the gold judge."""
    task = context.config.task
    prompts = review_prompts("test", task.prompt_words, data_dir=context.config.data_dir)
    prompts = prompts[-stage.n_held_out_pairs:]  # not the first ones, which measure stages
    drawn = sample_continuations(policy, prompts, max_new_tokens=task.max_new_tokens,
                                 n_per_prompt=2, seed=context.config.seed + 29)
    grouped = [list(drawn.texts[2 * i:2 * i + 2]) for i in range(len(prompts))]
    return list(make_pairs(prompts, grouped, context.gold).pairs)


def _reward_function(context: _Context, name: str):
    """(prompts, texts) -> rewards for ``gold``, ``verifier`` or a reward stage."""
    if name == "gold":
        return lambda prompts, texts: context.gold.positive_probability(list(texts))
    if name == "verifier":
        splits = context.splits
        problems = [*splits.train, *[p for ps in splits.held_out.values() for p in ps],
                    *context.rl_problems]
        verify = verifier_reward(problems)
        return lambda prompts, texts: [verify(p, t) for p, t in zip(prompts, texts)]
    if name == "ai":  # the AI judge's log-odds of the continuation (direct RLAIF)
        judge = _ai_judge(context)
        return lambda prompts, texts: [float(judge.log_odds(p, [t])[0])
                                       for p, t in zip(prompts, texts)]
    model = context.rewards[name]  # a reward stage (checked when the file was read)
    return lambda prompts, texts: model.score_texts(list(prompts), list(texts)).tolist()


def _ai_judge(context: _Context) -> LikelihoodRatioJudge:
    if context.ai_judge is None:
        context.log("fitting the AI judge (likelihood ratio of sentence_polarity n-grams) ...")
        context.ai_judge = fit_likelihood_ratio_judge(context.config.data_dir)
    return context.ai_judge


def _run_best_of_n(context: _Context, stage: StageConfig, policy: LanguageModel,
                   reference: LanguageModel) -> tuple[None, dict]:
    """Best-of-N against the stage's reward, for every N of ``n`` (no new model)."""
    task = context.config.task
    reward = _reward_function(context, stage.reward)
    if context.splits is not None:
        raise LmbenchError(f"stage {stage.name!r}: best-of-n is measured on the sentiment task")
    prompts = review_prompts("test", task.prompt_words, data_dir=context.config.data_dir,
                             limit=task.n_eval_prompts)
    points = []
    swept = best_of_n_metrics(policy, prompts, stage.n, reward,
                              max_new_tokens=task.max_new_tokens,
                              gold=context.gold.positive_probability, seed=context.config.seed)
    for n, (measured, drawn) in zip(stage.n, swept):
        points.append({"n": n, **measured.to_dict(),
                       "samples": [{"prompt": p, "text": t} for p, t in
                                   list(zip(drawn.prompts, drawn.texts))[:4]]})
        context.log(f"{stage.name}: n={n}: {_brief(measured.to_dict())}")
    return None, {"reward": stage.reward, "points": points}


def sample_pairs(context: _Context, stage: StageConfig, policy: LanguageModel
                 ) -> tuple[list[PreferencePair], dict]:
    """A stage's preference pairs (``PairsConfig``) and how they were labelled."""
    pairs_config = stage.pairs
    if pairs_config.path is not None:
        return load_preferences(pairs_config.path), {"pairs_path": pairs_config.path}
    task = context.config.task
    prompts = review_prompts("valid", task.prompt_words, data_dir=context.config.data_dir,
                             limit=pairs_config.n)
    drawn = sample_continuations(policy, prompts, max_new_tokens=task.max_new_tokens,
                                 n_per_prompt=2, seed=context.config.seed + 17)
    grouped = [list(drawn.texts[2 * i:2 * i + 2]) for i in range(len(prompts))]
    judge = context.gold
    if pairs_config.labeller == "ai":
        judge = _ai_judge(context)
    labelled = make_pairs(prompts, grouped, judge)
    info: dict[str, Any] = {"labeller": pairs_config.labeller, "n_pairs": len(labelled.pairs),
                            "skipped": labelled.skipped,
                            "swap_consistency": labelled.labels.swap_consistency}
    if pairs_config.labeller == "ai":
        kept = [(p, c[0], c[1]) for p, c in zip(prompts, grouped)
                if c[0] != c[1] and c[0].strip() and c[1].strip()]
        gold_labels = label_pairs(context.gold, *map(list, zip(*kept)))
        info["judge_gold_agreement"] = agreement(labelled.labels, gold_labels)
    path = _folder(context) / f"{stage.name}.pairs.jsonl"
    write_preferences(path, labelled.pairs)
    info["pairs_path"] = str(path)
    return list(labelled.pairs), info


_METHODS: dict[str, Callable] = {"sft": _run_sft, "dpo": _run_dpo, "ipo": _run_dpo,
                                 "grpo": _run_policy_optimisation,
                                 "ppo": _run_policy_optimisation, "reward": _run_reward,
                                 "best-of-n": _run_best_of_n}


def available_methods() -> tuple[str, ...]:
    """The methods this build can run."""
    return tuple(_METHODS)


def check_runnable(config: PipelineConfig) -> None:
    """Refuse a pipeline naming a method this build cannot run, before anything trains."""
    for stage in config.stages:
        if stage.method not in _METHODS:
            raise LmbenchError(f"stage {stage.name!r}: method {stage.method!r} is not available "
                               f"in this build (available: {', '.join(_METHODS)})")


def _env_data_dir(config: PipelineConfig, data_dir: str | os.PathLike | None) -> PipelineConfig:
    return config if data_dir is None else replace(config, data_dir=str(data_dir))


def prepare(path: str | Path, data_dir: str | os.PathLike | None = None) -> PipelineConfig:
    """``load_pipeline`` + ``--data-dir`` + ``check_runnable``: what ``lmbench align`` runs."""
    config = _env_data_dir(load_pipeline(path), data_dir)
    check_runnable(config)
    return config


def stage_names(config: PipelineConfig) -> Sequence[str]:
    return ["base", *[s.name for s in config.stages]]

