"""The documented upper limits: nothing lmbench runs grows without bound unless the user says so.

Each limit is checked where its option is validated (the option's help and its dataclass field
comment name it), so a mistaken value is a one-line ``LmbenchError`` before any work starts:

- ``MAX_NEW_TOKENS``: tokens one generation may add (``lmbench generate --max-new-tokens``,
  ``generate``/``sample``/``beam_search``).
- ``MAX_BEAM_WIDTH``, ``MAX_BEST_OF``: beams of beam search (``--beam``) and samples of best-of-N
  (``--best-of``); each step costs that many model rows.
- ``MAX_EVAL_BOOTSTRAP``: resamples of the evaluator's block bootstrap (``EvalConfig.n_bootstrap``;
  it draws them at once, n_bootstrap x n_blocks int64 indices, 8 bytes each).
- ``MAX_COMPARE_BOOTSTRAP``: resamples of ``lmbench compare`` (drawn in chunks; time only).
- Model size: a neural model whose parameters, estimated from its config before any weight
  exists, exceed ``max_params()`` is refused before training. The default is the smaller of
  ``DEFAULT_MAX_PARAMS`` and what this machine's memory holds at ``TRAIN_BYTES_PER_PARAM``
  (fp32 weights, gradients and AdamW's two moments; activations come on top); the environment
  variable ``LMBENCH_MAX_PARAMS`` (e.g. ``LMBENCH_MAX_PARAMS=5e9``) replaces it.
"""

from __future__ import annotations

import os

from lmbench.core.errors import LmbenchError

MAX_NEW_TOKENS = 100_000
MAX_BEAM_WIDTH = 256
MAX_BEST_OF = 1024
MAX_EVAL_BOOTSTRAP = 100_000
MAX_COMPARE_BOOTSTRAP = 1_000_000

DEFAULT_MAX_PARAMS = 1e9  # 16 GB of training state before activations: beyond one machine's run
TRAIN_BYTES_PER_PARAM = 16  # fp32 weights + gradients + AdamW first and second moments
MAX_PARAMS_ENV = "LMBENCH_MAX_PARAMS"


def check_at_most(value: int, limit: int, name: str) -> None:
    """Refuse ``value > limit`` with a one-line error naming the option ``name``."""
    if value > limit:
        raise LmbenchError(f"{name} must be <= {limit:,} (lmbench's documented limit), "
                           f"got {value:,}")


def physical_memory_bytes() -> int | None:
    """This machine's RAM, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None


def max_params() -> float:
    """The largest model lmbench builds (module docstring)."""
    given = os.environ.get(MAX_PARAMS_ENV)
    if given is not None:
        try:
            return float(given)
        except ValueError:
            raise LmbenchError(f"${MAX_PARAMS_ENV} must be a number, got {given!r}") from None
    memory = physical_memory_bytes()
    return DEFAULT_MAX_PARAMS if memory is None else min(DEFAULT_MAX_PARAMS,
                                                         memory / TRAIN_BYTES_PER_PARAM)


def check_n_params(n_params: int, what: str) -> None:
    """Refuse a model of ``n_params`` parameters above ``max_params()``, naming ``what`` and the
    option that raises the limit."""
    limit = max_params()
    if n_params > limit:
        need_gb = n_params * TRAIN_BYTES_PER_PARAM / 1e9
        raise LmbenchError(
            f"{what}: about {n_params:.3g} parameters ({need_gb:,.0f} GB to train with AdamW in "
            f"fp32, before activations), above the limit of {limit:.3g}; make the model smaller "
            f"or set {MAX_PARAMS_ENV} to raise the limit")
