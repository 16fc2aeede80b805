"""Hyper-parameter sweeps of a run file: a ``[models.sweep]`` table turns one model into trials.

::

    [[models]]
    label = "gpt-60s"
    family = "gpt"
    n_layer = 2
    train = { max_seconds = 60, learning_rate = 1e-3 }   # every trial's budget
    [models.sweep]
    method = "grid"            # "grid" (every combination) or "random"
    n_trials = 6               # random only (grid: the product of the lists)
    seed = 0                   # random only
    metric = "valid_ppl"       # or "valid_bpb"; lower is better, on the valid split only
    [models.sweep.space]       # dotted keys reach nested options; a list = the values to try
    "train.learning_rate" = [1e-3, 3e-3, 1e-2]
    n_embd = [128, 256]
    # random search also takes { log_uniform = [lo, hi] }, { uniform = [lo, hi] },
    # { choice = [...] } (a plain list is a choice)

A grid may name keys of its space to average over rather than choose among, as a grid search
averages over cross-validation folds: ``average_over = ["train.seed"]`` with ``"train.seed" =
[0, 1]`` runs every setting of the other keys once per seed, and selects the setting whose
trials have the lowest mean ``metric`` (the first on a tie), so a choice between settings
within one seed's noise is made on two. The setting's first trial (the lowest trial number) is
the selected one, scored on test, whichever of its trials scored best on valid.

Grid search takes every combination in the order the keys are written (the last key varies
fastest), as ``itertools.product``; random search draws each trial's values, key by key, from
``numpy.random.default_rng(seed)`` (Bergstra & Bengio 2012, "Random search for hyper-parameter
optimization"), so the trials are a pure function of the table. Trial ``i`` is an ordinary run of
the model's options with its values set (``apply_params``), recorded as ``<label>-trial-<i>``
with its valid split scored; the trial with the lowest ``metric`` (the first on a tie) is then
scored on every split of the run file, test included, and recorded as ``<label>`` with
``sweep.selected`` true (``lmbench.core.results.SweepResult``): the test split is scored once,
for the selected trial only, so selection never sees it (``lmbench.runs.runner``).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmbench.core.errors import LmbenchError
from lmbench.core.options import check_fields
from lmbench.core.results import SWEEP_METRICS

METHODS = ("grid", "random")
DISTRIBUTIONS = ("log_uniform", "uniform", "choice")
RESERVED_KEYS = ("label", "family", "init", "resources", "sweep")  # not options of a model
MAX_TRIALS = 100_000


@dataclass(frozen=True)
class SweepSpec:
    """A parsed ``[models.sweep]`` table (module docstring)."""

    method: str = "grid"
    n_trials: int | None = None  # random only; grid: the product of the lists' lengths
    seed: int = 0  # random only
    metric: str = "valid_ppl"  # one of lmbench.core.results.SWEEP_METRICS
    space: dict[str, Any] = field(default_factory=dict)  # dotted option -> values
    # grid keys whose values are repeats (seeds) to average over, not choices
    average_over: list[str] = field(default_factory=list)


def trial_label(label: str, trial: int) -> str:
    """The record label of trial ``trial`` (0-based) of the sweep ``label``."""
    return f"{label}-trial-{trial}"


def parse_sweep(table: Any, where: str) -> SweepSpec:
    """A checked ``SweepSpec`` from a ``[models.sweep]`` table; ``LmbenchError`` naming ``where``
    and the key otherwise."""
    if not isinstance(table, dict):
        raise LmbenchError(f"{where}: [models.sweep] must be a table")
    check_fields(SweepSpec, table, f"{where} [sweep]")
    spec = SweepSpec(**table)
    if spec.method not in METHODS:
        raise LmbenchError(f"{where} [sweep]: method must be one of {', '.join(METHODS)}, got "
                           f"{spec.method!r}")
    if spec.metric not in SWEEP_METRICS:
        raise LmbenchError(f"{where} [sweep]: metric must be one of {', '.join(SWEEP_METRICS)} "
                           f"(the valid split; lower is better), got {spec.metric!r}")
    if not spec.space:
        raise LmbenchError(f"{where} [sweep]: needs a [space] table with at least one option")
    for key, values in spec.space.items():
        _check_axis(spec.method, key, values, f"{where} [sweep.space]")
    if spec.method == "grid":
        if spec.n_trials is not None:
            raise LmbenchError(f"{where} [sweep]: n_trials is for method = \"random\"; a grid "
                               "runs the product of its lists")
        n_trials = math.prod(len(values) for values in spec.space.values())
    else:
        if spec.n_trials is None or spec.n_trials < 1:
            raise LmbenchError(f"{where} [sweep]: method = \"random\" needs n_trials >= 1")
        n_trials = spec.n_trials
    if spec.average_over:
        if spec.method != "grid":
            raise LmbenchError(f"{where} [sweep]: average_over is for method = \"grid\" (random "
                               "trials do not repeat a setting)")
        if not isinstance(spec.average_over, list) or any(
                key not in spec.space for key in spec.average_over):
            raise LmbenchError(f"{where} [sweep]: average_over must list keys of [sweep.space], "
                               f"got {spec.average_over!r}")
        if set(spec.space) <= set(spec.average_over):
            raise LmbenchError(f"{where} [sweep]: average_over leaves no key of [sweep.space] to "
                               "choose among")
    if n_trials > MAX_TRIALS:
        raise LmbenchError(f"{where} [sweep]: {n_trials:,} trials; at most {MAX_TRIALS:,}")
    if not 0 <= spec.seed < 2**32:
        raise LmbenchError(f"{where} [sweep]: seed must be in [0, 2**32 - 1], got {spec.seed}")
    return spec


def _check_axis(method: str, key: str, values: Any, where: str) -> None:
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise LmbenchError(f"{where}: {key!r} is not an option name (dotted keys: "
                           "\"train.learning_rate\")")
    if key.split(".")[0] in RESERVED_KEYS:
        raise LmbenchError(f"{where}: {key!r} cannot be swept (not a model option)")
    if isinstance(values, list):
        if not values:
            raise LmbenchError(f"{where}: {key!r} is an empty list; give the values to try")
        return
    if method == "grid":
        raise LmbenchError(f"{where}: {key!r} must be a list of values for a grid")
    if not isinstance(values, dict) or len(values) != 1 or next(iter(values)) not in DISTRIBUTIONS:
        raise LmbenchError(f"{where}: {key!r} must be a list or one of {{ log_uniform = [lo, hi] "
                           "}, { uniform = [lo, hi] }, { choice = [...] }")
    (name, argument), = values.items()
    if name == "choice":
        if not isinstance(argument, list) or not argument:
            raise LmbenchError(f"{where}: {key!r} choice must be a non-empty list")
        return
    numbers = isinstance(argument, list) and len(argument) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in argument)
    if not numbers or not argument[0] < argument[1]:
        raise LmbenchError(f"{where}: {key!r} {name} must be [lo, hi] with finite lo < hi")
    if name == "log_uniform" and argument[0] <= 0:
        raise LmbenchError(f"{where}: {key!r} log_uniform needs lo > 0, got {argument[0]}")


def setting_of(spec: SweepSpec, params: dict[str, Any]) -> tuple:
    """A trial's setting: its values of the keys the sweep chooses among (``average_over``'s
    keys left out), the key its trials are averaged under."""
    return tuple((key, repr(value)) for key, value in params.items()
                 if key not in spec.average_over)


def trials(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every trial's values, by dotted option name, in trial order (module docstring)."""
    keys = list(spec.space)
    if spec.method == "grid":
        return [dict(zip(keys, combination))
                for combination in itertools.product(*(spec.space[k] for k in keys))]
    rng = np.random.default_rng(spec.seed)
    drawn = []
    for _ in range(spec.n_trials or 0):
        drawn.append({key: _draw(rng, spec.space[key]) for key in keys})
    return drawn


def _draw(rng: np.random.Generator, values: Any) -> Any:
    if isinstance(values, list):
        values = {"choice": values}
    (name, argument), = values.items()
    if name == "choice":
        return argument[int(rng.integers(len(argument)))]
    low, high = float(argument[0]), float(argument[1])
    if name == "uniform":
        return float(rng.uniform(low, high))
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def apply_params(options: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of a model's ``options`` with each dotted key of ``params`` set
    (``"train.learning_rate"`` sets ``options["train"]["learning_rate"]``)."""
    options = copy.deepcopy(options)
    for key, value in params.items():
        *parents, name = key.split(".")
        table = options
        for parent in parents:
            table = table.setdefault(parent, {})
            if not isinstance(table, dict):
                raise LmbenchError(f"sweep key {key!r}: {parent!r} is not a table of options")
        table[name] = value
    return options
