"""Run configuration: TOML files that reject unknown keys and wrong types.

A run file names one corpus and a list of models::

    corpus = "brown"                  # a registered corpus, or a path
    splits = ["valid", "test"]        # which splits to score
    seed = 0
    device = "auto"                   # auto | cpu | cuda | cuda:N | mps: where models train
                                      # and are scored (lmbench.core.device)

    [eval]                            # lmbench.evaluation.scoring.EvalConfig
    block_len = 1024

    [[models]]
    label = "kn5"                     # the run's name on the leaderboard
    family = "ngram"                  # a registered family (see `lmbench models`)
    order = 5                         # every other key goes to the family's config dataclass
    smoothing = "modified-kneser-ney"

    [[models]]
    label = "lstm"
    family = "lstm"
    init = "runs/a/model.npz"         # neural families: start from a saved model's weights and
                                      # tokenizer (fine-tuning; same family and architecture)
    resources = { cpus = 2, gpus = 0, memory_gb = 4 }   # what one run of it needs: a Ray task's
                                      # declared resources (lmbench run --executor ray); cpus is
                                      # also its torch thread count on either executor
    [models.sweep]                    # optional: a hyper-parameter sweep (lmbench.runs.sweep)
    method = "grid"
    [models.sweep.space]
    "train.learning_rate" = [1e-3, 3e-3]

    [[models]]
    label = "lstm-long"
    family = "lstm"
    settings_from = "lstm"            # the selected trial's values of the sweep labelled "lstm"
    train = { max_seconds = 1200 }    # (earlier in the file, same family) replace this
                                      # table's once that selection is recorded under --out

    [[models]]
    label = "gpt-lora8"
    family = "gpt"
    init = "runs/a/model.npz"         # the base: with [peft] it is frozen and only the
    train = { max_steps = 200 }       # method's new weights train (default train: the base's)
    [models.peft]                     # lmbench.peft: method = lora | adapters | ...
    method = "lora"                   # and that method's options (lmbench models lists them)
    rank = 8
    targets = ["q", "v"]

Every table is checked against a frozen dataclass: an unknown key is an error naming the file,
the table and the key (with a did-you-mean), and so is a value of the wrong type.

A ``[peft]`` table needs ``init`` (the base model, of the table's ``family``) and takes no
architecture keys (the base has its architecture); ``adapter = "file.npz"`` instead of a method
continues from a saved adapter of that base. The method is built on the base while the file is
read (``adapted_model``), so a target that matches no layer, a prompt longer than the context,
an adapter of another base or a base that cannot be adapted is refused before anything trains.

The device belongs to the run, not to a model's config: a saved model loads anywhere, and the
same run file trains on a GPU where there is one (``auto``) or where it is told (``cpu``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmbench.core.device import check_device_name
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Trainable
from lmbench.core.names import check_name
from lmbench.core.options import build_config, check_fields
from lmbench.core.toml import read_toml
from lmbench.evaluation.scoring import EvalConfig
from lmbench.models.catalog import MODELS, build_model, check_model, config_class_of, load_model
from lmbench.peft import METHODS, AdaptedLM, adapt, load_adapter, method_config
from lmbench.runs.sweep import SweepSpec, apply_params, parse_sweep, trial_label, trials
from lmbench.training.trainer import TrainConfig


@dataclass(frozen=True)
class Resources:
    """What one run of a model needs (``resources = { cpus = 1, gpus = 0, memory_gb = 2 }``):
    the resources its Ray task declares, so Ray places it where they are free; ``cpus`` (rounded
    down, at least 1) is also the number of torch threads it trains and scores with, on either
    executor, so both give the same numbers."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float | None = None  # None: not declared (Ray does not reserve memory)

    def __post_init__(self) -> None:
        if not 0 < self.cpus < math.inf:
            raise LmbenchError(f"resources.cpus must be > 0, got {self.cpus!r}")
        if not 0 <= self.gpus < math.inf:
            raise LmbenchError(f"resources.gpus must be >= 0, got {self.gpus!r}")
        if self.memory_gb is not None and not 0 < self.memory_gb < math.inf:
            raise LmbenchError(f"resources.memory_gb must be > 0, got {self.memory_gb!r}")

    @property
    def n_threads(self) -> int:
        """torch threads of a run with these resources."""
        return max(1, int(self.cpus))


@dataclass(frozen=True)
class ModelSpec:
    label: str  # name of the run on the leaderboard
    family: str  # registered family name
    options: dict[str, Any]  # fields of the family's config dataclass
    init: str | None = None  # a saved model (.npz) to warm-start from; None: from scratch
    # {"method": name, <options>}: adapt the base ``init`` with lmbench.peft; None: no method
    peft: dict[str, Any] | None = None
    resources: Resources | None = None  # None: not declared (Ray: one CPU; local: as is)
    sweep: SweepSpec | None = None  # a hyper-parameter sweep over ``options`` (runs.sweep)
    # the label of a sweep earlier in the file: its selected trial's values replace these
    # options once that selection is recorded (lmbench.runs.runner.run); None: as written
    settings_from: str | None = None


@dataclass(frozen=True)
class RunConfig:
    corpus: str
    models: tuple[ModelSpec, ...]
    splits: tuple[str, ...] = ("valid", "test")
    seed: int = 0
    data_dir: str | None = None
    device: str = "auto"  # where every model trains and is scored (lmbench.core.device)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if not self.splits:
            raise LmbenchError("'splits' is empty: splits must name at least one of "
                               "train/valid/test")
        if not 0 <= self.seed < 2**32:
            raise LmbenchError(f"'seed' must be in [0, 2**32 - 1] (numpy's seed range), got "
                               f"{self.seed}")


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run file (see the module docstring)."""
    return parse_config(read_toml(path, "config"), str(path))


def parse_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a parsed run file; every error message starts with ``where``."""
    try:
        return _parse_config(data, where)
    except LmbenchError as error:
        if str(error).startswith(where):
            raise
        raise LmbenchError(f"{where}: {error}") from None


def _parse_config(data: dict[str, Any], where: str) -> RunConfig:
    data = dict(data)
    eval_data = data.pop("eval", {})
    model_tables = data.pop("models", None)
    top = {k: v for k, v in data.items()}
    check_fields(RunConfig, {**top, "models": (), "eval": EvalConfig()}, where)
    if "corpus" not in top:
        raise LmbenchError(f"{where}: missing key 'corpus' (a corpus name or path)")
    if "device" in top:
        check_device_name(top["device"])
    if not isinstance(eval_data, dict):
        raise LmbenchError(f"{where}: [eval] must be a table")
    check_fields(EvalConfig, eval_data, f"{where} [eval]")
    if not isinstance(model_tables, list) or not model_tables:
        raise LmbenchError(f"{where}: needs at least one [[models]] table")
    specs, labels = [], set()
    for number, table in enumerate(model_tables, start=1):
        table = dict(table)
        init = table.pop("init", None)
        peft = table.pop("peft", None)
        resources_table, sweep_table = table.pop("resources", None), table.pop("sweep", None)
        settings_from = table.pop("settings_from", None)
        family = table.pop("family", None)
        if not isinstance(family, str):
            raise LmbenchError(f"{where} [[models]] #{number}: missing key 'family' (a string)")
        label = table.pop("label", None) or _default_label(family, table)
        if not isinstance(label, str):
            raise LmbenchError(f"{where} [[models]] #{number}: 'label' must be a string")
        check_name(label, f"{where} [[models]] #{number}: label")
        if label in labels:
            raise LmbenchError(f"{where} [[models]] #{number}: label {label!r} is used twice")
        labels.add(label)
        _check_options(family, table, where, f"{where} [[models]] {label!r}")
        _check_init(init, family, f"{where} [[models]] {label!r}")
        resources = _resources(resources_table, f"{where} [[models]] {label!r}")
        sweep = None
        if sweep_table is not None:
            sweep = parse_sweep(sweep_table, f"{where} [[models]] {label!r}")
            if "valid" not in top.get("splits", ("valid",)):
                raise LmbenchError(f"{where}: 'splits' must include \"valid\" for the sweep of "
                                   f"{label!r} (its trials are selected on the valid split)")
            for number_, params in enumerate(trials(sweep)):
                name = trial_label(label, number_)
                if name in labels:
                    raise LmbenchError(f"{where} [[models]] {label!r}: trial label {name!r} is "
                                       "used twice")
                labels.add(name)
                _check_options(family, apply_params(table, params), where,
                               f"{where} [[models]] {label!r} trial {number_} {params}")
        if settings_from is not None:
            _check_settings_from(settings_from, table, family, sweep, peft, specs,
                                 f"{where} [[models]] {label!r}")
        spec = ModelSpec(label, family, table, init, peft, resources, sweep, settings_from)
        if peft is not None:
            if sweep is not None:
                raise LmbenchError(f"{where} [[models]] {label!r}: a [peft] table cannot be "
                                   "swept yet (give each setting its own [[models]] table)")
            _check_peft(spec, f"{where} [[models]] {label!r}")
        specs.append(spec)
    if "splits" in top:
        top["splits"] = tuple(top["splits"])
    return RunConfig(models=tuple(specs), eval=EvalConfig(**eval_data), **top)


def _check_options(family: str, options: dict[str, Any], where: str, table: str) -> None:
    """Keys, types and values (ranges, names, sizes) of one model's options, before anything
    runs; errors start with ``table``."""
    try:
        build_config(config_class_of(family), options, table)
        check_model(build_model(family, **options))
    except LmbenchError as error:
        if str(error).startswith(where):
            raise
        raise LmbenchError(f"{table}: {error}") from None


def _check_settings_from(source: Any, table: dict[str, Any], family: str,
                         sweep: SweepSpec | None, peft: Any, earlier: list[ModelSpec],
                         where: str) -> None:
    """``settings_from`` names a sweep of the same family earlier in the file, and each of its
    trials' values makes valid options of this table (so whichever is selected will run)."""
    if not isinstance(source, str):
        raise LmbenchError(f"{where}: 'settings_from' must be a string (the label of a sweep "
                           f"earlier in the file), got {type(source).__name__}")
    if sweep is not None or peft is not None:
        raise LmbenchError(f"{where}: 'settings_from' takes one setting from another sweep; "
                           f"it cannot be combined with a [{'sweep' if sweep else 'peft'}] "
                           "table")
    swept = {spec.label: spec for spec in earlier if spec.sweep is not None}
    if source not in swept:
        raise LmbenchError(f"{where}: settings_from {source!r} is not the label of a sweep "
                           "earlier in the file; sweeps before it: "
                           + (", ".join(swept) or "none"))
    if swept[source].family != family:
        raise LmbenchError(f"{where}: settings_from {source!r} is a sweep of family "
                           f"{swept[source].family!r}; this table's family is {family!r}")
    for number, params in enumerate(trials(swept[source].sweep)):
        _check_options(family, apply_params(table, params), where,
                       f"{where} with {source!r} trial {number} {params}")


def _resources(table: Any, where: str) -> Resources | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise LmbenchError(f"{where}: 'resources' must be a table ({{ cpus = 1, gpus = 0, "
                           "memory_gb = 2 }})")
    check_fields(Resources, table, f"{where} resources")
    try:
        return Resources(**table)
    except LmbenchError as error:
        raise LmbenchError(f"{where}: {error}") from None


def _check_init(init: Any, family: str, where: str) -> None:
    if init is None:
        return
    if not isinstance(init, str):
        raise LmbenchError(f"{where}: 'init' must be a string (a saved model's .npz), got "
                           f"{type(init).__name__}")
    if not issubclass(MODELS.get(family), Trainable):
        raise LmbenchError(f"{where}: 'init' needs a neural family; {family!r} does not train "
                           "from saved weights")
    if not Path(init).is_file():
        raise LmbenchError(f"{where}: init {init!r}: saved model not found")


def _check_peft(spec: ModelSpec, where: str) -> None:
    """A ``[peft]`` table's shape, then the method built on its base (module docstring)."""
    if not isinstance(spec.peft, dict):
        raise LmbenchError(f"{where}: 'peft' must be a table ([models.peft])")
    if spec.init is None:
        raise LmbenchError(f"{where}: [peft] needs init = a saved base model (.npz) to adapt")
    extra = sorted(key for key in spec.options if key != "train")
    if extra:
        raise LmbenchError(f"{where}: with [peft] the architecture is the base's; key "
                           f"{extra[0]!r} does not apply (only 'train' may be given)")
    try:
        adapted_model(spec)
    except LmbenchError as error:
        raise LmbenchError(f"{where} [peft]: {error}") from None


def adapted_model(spec: ModelSpec) -> AdaptedLM:
    """The base ``spec.init`` with ``spec.peft``'s method added (``lmbench.peft.adapt``), to be
    fitted; its train config is the base's with the keys of the table's ``train`` replaced.

    Raises:
        LmbenchError: a missing or non-neural base, a base of another family than
            ``spec.family``, an unknown method or option, or a method the base refuses.
    """
    peft = dict(spec.peft or {})
    adapter = peft.pop("adapter", None)
    method = peft.pop("method", None)
    if adapter is not None:
        if not isinstance(adapter, str):
            raise LmbenchError(f"'adapter' must be a string (an adapter file), got {adapter!r}")
        if method is not None or peft:
            key = "method" if method is not None else sorted(peft)[0]
            raise LmbenchError(f"with adapter = {adapter!r} the method and its options come "
                               f"from that file; key {key!r} does not apply")
    elif not isinstance(method, str):
        raise LmbenchError("missing key 'method' (a string: " + ", ".join(METHODS) + ")")
    base = load_model(spec.init)
    if not isinstance(base, Trainable):
        raise LmbenchError(f"init {spec.init!r}: a {base.name} model is not neural; peft "
                           "adapts a neural base")
    if base.name != spec.family:
        raise LmbenchError(f"init {spec.init!r} is a {base.name} model, the table says family "
                           f"{spec.family!r}")
    train = build_config(TrainConfig, {**asdict(base.train_config()),
                                       **spec.options.get("train", {})}, "train")
    if adapter is None:
        return adapt(base, method_config(method, peft), train=train)
    saved = load_adapter(base, adapter)  # refuses an adapter of another base
    adapted = adapt(base, saved.method, train=train)
    weights = saved.adapter_state()
    with torch.no_grad():
        for name, parameter in adapted.adapter_state().items():
            parameter.copy_(weights[name])
    return adapted


def _default_label(family: str, options: dict[str, Any]) -> str:
    parts = [family] + [f"{k}={v}" for k, v in sorted(options.items()) if not isinstance(v, dict)]
    return "-".join(str(p) for p in parts)
