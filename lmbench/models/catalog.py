"""The one place that lists the model families, and building or loading one by name.

Every family lives in its own file and is registered here by where it lives, so adding a
family is one line below (``docs/adding_a_family.md``). The registry is lazy: a family's module
(and torch) is imported the first time the family is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import EstimatesSize, LanguageModel
from lmbench.core.io import read_npz
from lmbench.core.limits import check_n_params
from lmbench.core.options import build_config
from lmbench.core.registry import Registry

MODELS: Registry[type[LanguageModel]] = Registry("model")
for _name, _where in {
    "ngram": "lmbench.models.ngram:NGramLM",
    "nplm": "lmbench.models.nplm:NPLMLM",
    "rnn": "lmbench.models.rnn:RNNLM",
    "lstm": "lmbench.models.rnn:LSTMLM",
    "gru": "lmbench.models.rnn:GRULM",
    "gpt": "lmbench.models.gpt:GPTLM",
    "moe": "lmbench.models.moe:MoELM",
    "bert": "lmbench.models.bert:MaskedLM",
    "seq2seq": "lmbench.models.seq2seq:Seq2SeqLM",
    "interpolation": "lmbench.combinators.interpolation:InterpolatedLM",
}.items():
    MODELS.register_lazy(_name, _where)

# Model files other than lmbench's own .npz, by suffix: path -> fitted model.
FILE_FORMATS: Registry = Registry("model file format")
FILE_FORMATS.register_lazy(".arpa", "lmbench.models.ngram:load_arpa")  # KenLM / SRILM n-grams


def notes_for(config: dict[str, Any]) -> list[str]:
    """The family's ``notes`` that apply to a record's ``config`` (its option values), each as
    ``"<family> <option>=<value>: <explanation>"``; none for a family not registered here."""
    family = config.get("family")
    if not isinstance(family, str) or family not in MODELS:
        return []
    found = []
    for key, text in MODELS.get(family).notes().items():
        option, _, value = key.partition("=")
        if str(config.get(option)) == value:
            found.append(f"{family} {key}: {text}")
    return found


def config_class_of(family: str) -> type:
    return MODELS.get(family).config_class


def build_model(family: str, **options: Any) -> LanguageModel:
    """An unfitted model of a registered family, e.g.
    ``build_model("ngram", order=5, smoothing="modified-kneser-ney", tokenizer="word")``."""
    cls = MODELS.get(family)
    return cls(build_config(cls.config_class, options, f"model {family!r}"))


def check_model(model: LanguageModel) -> None:
    """Refuse, before anything is built or trained, a model whose estimated size is above
    ``lmbench.core.limits.max_params()`` (families that declare ``EstimatesSize``)."""
    if isinstance(model, EstimatesSize):
        check_n_params(model.estimated_n_params(), f"model {model.name!r}")


def load_model(path: str | Path) -> LanguageModel:
    """Load a model saved with ``model.save(path)``, or a file in one of ``FILE_FORMATS``."""
    path = Path(path)
    if not path.is_file():
        raise LmbenchError(f"{path}: model file not found")
    if path.suffix in FILE_FORMATS:
        return FILE_FORMATS.get(path.suffix)(path)
    if path.suffix == ".json":
        raise LmbenchError(f"{path} is a JSON file, not a saved model (.npz) or .arpa")
    meta, _ = read_npz(path, "a model (or an .arpa)")
    family = meta.get("family")
    if not isinstance(family, str) or family not in MODELS:
        raise LmbenchError(f"{path}: names no registered model family ({family!r})")
    return MODELS.get(family).load(path)
