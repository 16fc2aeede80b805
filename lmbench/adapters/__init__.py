"""Adapters that put models built elsewhere on lmbench's interface.

- ``FunctionLM`` (``function.py``): a plain function ``(B, T) ids -> (B, T, V)`` next-token
  log-probabilities.
- ``HuggingFaceLM`` (``huggingface.py``, needs the ``transformers`` extra): a causal LM from
  ``transformers``; import it from ``lmbench.adapters.huggingface``.

Either is then scored by ``lmbench.evaluate`` and recorded for the leaderboard by
``lmbench.record_run`` exactly like a built-in family (``docs/evaluator_api.md``).
"""

from lmbench.adapters.function import FunctionLM

__all__ = ["FunctionLM"]
