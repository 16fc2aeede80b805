"""lmbench: language models from statistical to neural, on one interface and one evaluator.

    import lmbench
    corpus = lmbench.load_corpus("brown")
    model = lmbench.build_model("ngram", order=5, smoothing="modified-kneser-ney", tokenizer="word")
    model.fit(corpus)
    result = lmbench.evaluate(model, corpus, split="test")  # result.perplexity, .bits_per_byte
    model.save_arpa("brown5.arpa"); same = lmbench.load_arpa("brown5.arpa")

    mine = lmbench.FunctionLM(my_next_token_logprobs, tokenizer="byte")   # any model
    lmbench.record_run(mine.fit(corpus), corpus, "runs/mine")   # -> lmbench leaderboard runs/mine
    lmbench.compare("runs/mine/<run-a>", "runs/mine/<run-b>").p_value
"""

import importlib

from lmbench.core.version import __version__

# The package face, resolved on first use (PEP 562) so that `import lmbench` (and so every
# `lmbench` command, `--help` included) does not import torch until something needs it.
_FACE = {
    "Budget": "lmbench.core.interface", "Capabilities": "lmbench.core.interface",
    "LanguageModel": "lmbench.core.interface", "LmbenchError": "lmbench.core.errors",
    "EvalResult": "lmbench.core.results", "RunResult": "lmbench.core.results",
    "Corpus": "lmbench.data.corpora", "Split": "lmbench.data.corpora",
    "load_corpus": "lmbench.data.corpora",
    "MODELS": "lmbench.models.catalog", "build_model": "lmbench.models.catalog",
    "load_model": "lmbench.models.catalog", "load_arpa": "lmbench.models.ngram",
    "FunctionLM": "lmbench.adapters.function",
    "EvalConfig": "lmbench.evaluation.scoring", "evaluate": "lmbench.evaluation.scoring",
    "Comparison": "lmbench.evaluation.significance", "compare": "lmbench.evaluation.significance",
    "SamplingConfig": "lmbench.inference.sampling", "generate": "lmbench.inference.sampling",
    "record_run": "lmbench.runs.runner", "ResultStore": "lmbench.storage.store",
}

__all__ = ["__version__", *sorted(_FACE)]


def __getattr__(name: str):
    if name in _FACE:
        value = getattr(importlib.import_module(_FACE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lmbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_FACE])
