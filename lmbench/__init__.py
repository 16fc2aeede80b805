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

__version__ = "0.1.0"

from lmbench.adapters import FunctionLM  # noqa: E402
from lmbench.data.corpora import Corpus, Split, load_corpus  # noqa: E402
from lmbench.errors import LmbenchError  # noqa: E402
from lmbench.evaluation.scoring import EvalConfig, evaluate  # noqa: E402
from lmbench.interface import Budget, Capabilities, LanguageModel  # noqa: E402
from lmbench.models import MODELS, build_model, load_arpa, load_model  # noqa: E402
from lmbench.results import EvalResult, RunResult  # noqa: E402
from lmbench.runner import record_run  # noqa: E402
from lmbench.sampling import SamplingConfig, generate  # noqa: E402
from lmbench.significance import Comparison, compare  # noqa: E402
from lmbench.store import ResultStore  # noqa: E402

__all__ = [
    "MODELS", "Budget", "Capabilities", "Corpus", "EvalConfig", "EvalResult", "LanguageModel",
    "LmbenchError", "RunResult", "Split", "build_model", "evaluate", "load_arpa", "load_corpus",
    "load_model", "SamplingConfig", "generate",
    "Comparison", "FunctionLM", "ResultStore", "compare", "record_run",
]
