"""Any lmbench ``LanguageModel`` inside EleutherAI's lm-evaluation-harness (Gao et al., "A
framework for few-shot language model evaluation", v0.4), as the lm-eval model ``lmbench``.

Needs the optional extra: ``pip install 'lmbench[lm-eval]'`` (tested with lm-eval 0.4.13).

lm-eval 0.4.13 finds models only in its own registry (no entry points, and ``--include_path``
adds tasks, not models), so the model is registered when this module is imported, and its
command line runs lm-eval's own with the registration done::

    python -m lmbench.adapters.lm_eval_harness --model lmbench \
        --model_args path=runs/x/model.npz --tasks TASK --include_path my_tasks/

(every lm-eval option as usual; ``path`` is a ``model.npz``, an ``.arpa`` file or a run folder
saved with ``--save-models``). From Python, ``lm_eval.simple_evaluate(model=LmbenchLM(model),
tasks=[...])`` takes a model in memory.

The three request kinds, on lmbench's conventions (``lmbench.core.interface``):

- ``loglikelihood(context, continuation)``: the pair is encoded as lm-eval's causal models do
  (``TemplateLM._encode_pair``: trailing spaces of the context move to the continuation, the
  whole text is encoded and cut after the context's tokens); the model reads the boundary id,
  the context and the continuation, as it reads the start of a stream, and returns
  ``(sum of ln p(continuation tokens), whether each is the argmax)``. Only the last
  ``max_window`` inputs are read when a pair is longer (lm-eval's left truncation).
- ``loglikelihood_rolling(text)``: ``-sum`` of ``lmbench.evaluation.scoring.score_stream`` on
  the text's tokens, so each document is scored from the boundary id exactly as
  ``lmbench.evaluate`` scores a split (its windows, ``plan_windows``; every token once).
- ``generate_until(context, gen_kwargs)``: ``lmbench.inference.sampling.sample_batch`` from
  the context, stopping at the boundary id (lm-eval's end-of-text) or at a stop string of
  ``until``, cut before it; greedy unless ``do_sample`` (``temperature``, ``top_p``, ``top_k``
  as in Hugging Face generate), at most ``max_gen_toks`` tokens (default 256). Requests whose
  contexts have the same length and options are decoded in one batch.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.inference.sampling import SamplingConfig, sample_batch
from lmbench.models.catalog import load_model
from lmbench.storage.references import resolve_model

try:
    # lm-eval fills its registry with its own models (lazily) only when the registry is empty at
    # the first lookup; importing lm_eval.models first keeps them (``hf``, ...) beside ours.
    import lm_eval.models  # noqa: F401
    from lm_eval.__main__ import cli_evaluate
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
except ImportError:
    raise LmbenchError("the lm-evaluation-harness adapter needs lm-eval: "
                       "pip install 'lmbench[lm-eval]'") from None

GENERATION_OPTIONS = ("until", "max_gen_toks", "max_new_tokens", "do_sample", "temperature",
                      "top_p", "top_k")
DEFAULT_BATCH_SIZE = 8


def _batch_size(value: Any) -> int:
    """lm-eval's ``--batch_size`` (an int, a digit string, or ``auto``) as an int."""
    if value is None or str(value).startswith("auto"):
        return DEFAULT_BATCH_SIZE
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise LmbenchError(f"lmbench model: batch_size must be a positive integer or 'auto', got "
                           f"{value!r}") from None
    if size < 1:
        raise LmbenchError(f"lmbench model: batch_size must be >= 1, got {size}")
    return size


@register_model("lmbench")
class LmbenchLM(TemplateLM):
    """An lmbench model as an lm-eval ``LM`` (module docstring).

    Args:
        model: a ``LanguageModel`` in memory, or None to load ``path``.
        path: a saved model (``model.npz``, ``.arpa``) or a run folder holding one.
        batch_size: requests per model call (lm-eval's ``--batch_size``; ``auto`` = 8).
        device: where the model computes (``cpu``, ``cuda``, ``auto``; lm-eval's ``--device``,
            whose default ``cuda:0`` means the CPU where torch sees no GPU, as for ``hf``).
        max_gen_toks: the generation length when a request gives none.
        seed: sampled generations draw from ``seed + the request's index``.
    """

    def __init__(self, model: LanguageModel | None = None, path: str | None = None,
                 batch_size: int | str | None = None, max_batch_size: int | None = None,
                 device: str | None = None, max_gen_toks: int = 256, seed: int = 0) -> None:
        super().__init__()
        if (model is None) == (path is None):
            raise LmbenchError("lmbench model: give exactly one of model (in memory) or path= "
                               "(model_args path=MODEL.npz)")
        if model is None:
            model = load_model(resolve_model(str(path)).path)
        if device is not None:
            if str(device).startswith("cuda") and not torch.cuda.is_available():
                device = "auto"  # lm-eval's default --device is cuda:0; its hf model falls back
            model.to(device)
        self.model = model
        self.batch_size_ = _batch_size(batch_size)
        self.max_gen_toks = int(max_gen_toks)
        self.seed = int(seed)

    # TemplateLM's tokenization hooks ------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.model.tokenizer.boundary_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None,
                   **kwargs) -> list[int]:
        return list(self.model.tokenizer.encode(string))

    def tok_decode(self, ids: Sequence[int]) -> str:
        return self.model.tokenizer.decode(list(ids))

    @property
    def tokenizer_name(self) -> str:
        return self.model.tokenizer.name

    # loglikelihood ----------------------------------------------------------------------------

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs
                              ) -> list[tuple[float, bool]]:
        """((context, continuation), context ids, continuation ids) -> (ln p, is greedy)."""
        window = self.model.capabilities.max_window
        rows = []
        for (context, _), context_ids, continuation_ids in requests:
            if not continuation_ids:
                raise LmbenchError(f"lmbench model: a loglikelihood request's continuation "
                                   f"encodes to no tokens (context {context[-40:]!r})")
            # An empty context arrives as [boundary] already (TemplateLM.loglikelihood).
            lead = [] if context == "" else [self.eot_token_id]
            full = [*lead, *context_ids, *continuation_ids]
            inputs = full[:-1] if window is None else full[:-1][-window:]
            if len(continuation_ids) > len(inputs):
                raise LmbenchError(f"lmbench model: a continuation of {len(continuation_ids)} "
                                   f"tokens is longer than the model's window ({window})")
            rows.append((inputs, list(continuation_ids)))
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(rows)
        for start in range(0, len(order), self.batch_size_):
            chunk = order[start : start + self.batch_size_]
            for index, value in zip(chunk, self._score_rows([rows[i] for i in chunk])):
                results[index] = value
                self.cache_hook.add_partial("loglikelihood", requests[index][0], value)
        return results

    def _score_rows(self, rows: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """One model call over right-padded rows of (inputs, continuation targets)."""
        width = max(len(inputs) for inputs, _ in rows)
        input_ids = torch.full((len(rows), width), self.eot_token_id, dtype=torch.long)  # (B, T)
        for row, (inputs, _) in enumerate(rows):
            input_ids[row, : len(inputs)] = torch.tensor(inputs)
        with torch.inference_mode():
            logits, _ = self.model.logits(input_ids, None)  # (B, T, V)
        logprobs = torch.log_softmax(logits.double(), dim=-1).cpu()  # (B, T, V)
        out = []
        for row, (inputs, targets) in enumerate(rows):
            positions = torch.arange(len(inputs) - len(targets), len(inputs))  # (K,)
            target = torch.tensor(targets)  # (K,)
            picked = logprobs[row, positions].gather(-1, target[:, None])[:, 0]  # (K,)
            greedy = bool((logprobs[row, positions].argmax(dim=-1) == target).all())
            out.append((float(picked.sum()), greedy))
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """ln p of each whole text, scored from the boundary id as ``lmbench.evaluate`` scores
        a split (the same windows, every token once)."""
        config = EvalConfig(batch_size=self.batch_size_, progress=False)
        results = []
        for request in requests:
            (text,) = request.args
            ids = self.tok_encode(text)
            value = -float(score_stream(self.model, ids, config).sum()) if ids else 0.0
            results.append(value)
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, value)
        return results

    # generation -----------------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Continuations of each context, cut before the first stop string (module docstring)."""
        prepared = []
        for request in requests:
            context, gen_kwargs = request.args
            prepared.append((self.tok_encode(context), *self._generation_options(gen_kwargs)))
        groups: dict[tuple, list[int]] = {}
        for index, (ids, sampling, max_new, until) in enumerate(prepared):
            key = (len(ids), repr(sampling), max_new, until)
            groups.setdefault(key, []).append(index)
        results = [""] * len(requests)
        for (_, _, max_new, until), indices in groups.items():
            for start in range(0, len(indices), self.batch_size_):
                chunk = indices[start : start + self.batch_size_]
                drawn = sample_batch(
                    self.model, [prepared[i][0] for i in chunk], max_new,
                    sampler=prepared[chunk[0]][1], seeds=[self.seed + i for i in chunk],
                    stop_ids=[self.eot_token_id], stop_strings=until)
                for index, sample in zip(chunk, drawn):
                    results[index] = sample.text
                    self.cache_hook.add_partial("generate_until", requests[index].args,
                                                sample.text)
        return results

    def _generation_options(self, gen_kwargs: dict | None
                            ) -> tuple[SamplingConfig, int, tuple[str, ...]]:
        """lm-eval's generation kwargs -> (sampling config, max new tokens, stop strings)."""
        options = dict(gen_kwargs or {})
        unknown = sorted(set(options) - set(GENERATION_OPTIONS))
        if unknown:
            raise LmbenchError(f"lmbench model: generation option {unknown[0]!r} is not supported "
                               f"(supported: {', '.join(GENERATION_OPTIONS)})")
        until = options.get("until") or ()
        until = (until,) if isinstance(until, str) else tuple(until)
        max_new = int(options.get("max_gen_toks", options.get("max_new_tokens",
                                                              self.max_gen_toks)))
        temperature = float(options.get("temperature", 0.0) or 0.0)
        do_sample = bool(options.get("do_sample", temperature > 0))
        if not do_sample:
            temperature = 0.0
        elif temperature == 0.0:
            temperature = 1.0  # do_sample without a temperature: the model's distribution
        sampling = SamplingConfig(temperature=temperature, top_p=float(options.get("top_p", 1.0)),
                                  top_k=None if options.get("top_k") in (None, 0)
                                  else int(options["top_k"]))
        return sampling, max_new, tuple(s for s in until if s)


def main(argv: Sequence[str] | None = None) -> None:
    """lm-eval's command line (``lm_eval ...``) with the ``lmbench`` model registered."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
