"""``HuggingFaceLM``: a ``transformers`` causal LM (GPT-2, Llama, ...) on lmbench's interface.

Needs the optional extra: ``pip install 'lmbench[transformers]'``.

The model's forward pass is the next-token function of a ``FunctionLM``: (B, T) ids -> its
(B, T, V) logits, positions starting at 0 in every window. Scoring therefore uses windows of the
model's context length (``n_positions`` / ``max_position_embeddings``) and carries half of it as
context (``lmbench.evaluation.scoring.plan_windows``); within one window the per-token NLL is
exactly the model's own cross-entropy loss with ``labels = input_ids``. Right padding inside a
batch is harmless: attention is causal and padded targets are ignored. The incremental state is
the context ids (no KV cache is kept between calls): correct, at O(T²) when generating.
The model computes on its network's device (``to("cuda")`` moves the network), and returns
its logits there.

The model's ids must be the tokenizer's ids:

- an lmbench ``Tokenizer`` whose ids index the model's embedding (e.g. a GPT-2 config with
  ``vocab_size=257`` over ``ByteTokenizer``, whose boundary id is 256), or
- a ``transformers`` tokenizer, wrapped by ``HuggingFaceTokenizer``: a split is encoded as one
  stream without special tokens, and the boundary (the context of the first token) is the BOS
  id, else the EOS id, as GPT-2's ``<|endoftext|>`` is used.

Example::

    from lmbench.adapters.huggingface import HuggingFaceLM
    model = HuggingFaceLM("gpt2")      # AutoModelForCausalLM + AutoTokenizer from a local cache
    lmbench.record_run(model, "wikitext2", "runs/pretrained", label="gpt2-124M",
                       eval_config=lmbench.EvalConfig(batch_size=1))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmbench.adapters.function import FunctionLM
from lmbench.core.device import resolve_device
from lmbench.core.errors import LmbenchError
from lmbench.core.io import write_text_atomic
from lmbench.core.tokenizers import (
    TOKENIZERS,
    Tokenizer,
    _printable,
    build_tokenizer,
    tokenizer_from_json,
    tokenizer_to_json,
)

_LMBENCH_TOKENIZER = "lmbench_tokenizer.json"  # written beside save_pretrained's files


def _transformers():
    try:
        import transformers
    except ImportError:
        raise LmbenchError("the Hugging Face adapter needs transformers: "
                           "pip install 'lmbench[transformers]'") from None
    return transformers


class HuggingFaceTokenizer(Tokenizer):
    """A ``transformers`` tokenizer as an lmbench ``Tokenizer`` (already fitted)."""

    is_lossless = True  # byte-level BPE / SentencePiece with byte fallback; others may not be
    fitted_ = True

    def __init__(self, hf_tokenizer) -> None:
        self.hf = hf_tokenizer
        self.name = f"hf:{getattr(hf_tokenizer, 'name_or_path', '') or 'tokenizer'}"
        boundary = hf_tokenizer.bos_token_id
        if boundary is None:
            boundary = hf_tokenizer.eos_token_id
        if boundary is None:
            raise LmbenchError(f"{self.name}: the tokenizer has neither a BOS nor an EOS token "
                               "to start a stream with")
        self.boundary_id = int(boundary)
        self.unk_id = hf_tokenizer.unk_token_id

    def fit(self, split) -> HuggingFaceTokenizer:
        return self  # pretrained: nothing to learn

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        return list(self.hf(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode_split(self, split) -> np.ndarray:
        return np.asarray(self.encode(split.text), dtype=np.int64)

    def decode(self, ids) -> str:
        return self.hf.decode([i for i in np.asarray(ids).tolist() if i != self.boundary_id])

    def token_strings(self) -> list[str]:
        return [_printable(t) for t in self.hf.convert_ids_to_tokens(list(range(len(self.hf))))]

    def config(self) -> dict[str, Any]:
        return {"name_or_path": getattr(self.hf, "name_or_path", "")}

    def state(self) -> dict[str, Any]:
        backend = getattr(self.hf, "backend_tokenizer", None)  # fast tokenizers: the whole vocab
        return {"hf_json": backend.to_str()} if backend is not None else {}

    @classmethod
    def from_state(cls, config, state) -> HuggingFaceTokenizer:
        auto = _transformers().AutoTokenizer
        return cls(auto.from_pretrained(config["name_or_path"]))


class HuggingFaceLM(FunctionLM):
    """A ``transformers`` causal LM; see the module docstring.

    Args:
        model: a ``PreTrainedModel`` with a causal-LM head, or a name or folder for
            ``AutoModelForCausalLM.from_pretrained``.
        tokenizer: an lmbench ``Tokenizer`` over the model's ids, or the name of one
            (``"byte"``, ``"char"``, ``"word"``, ``"bpe"``, as ``FunctionLM`` takes; unfitted
            ones are fitted by ``fit``), a ``transformers`` tokenizer or the name or folder of
            one for ``AutoTokenizer.from_pretrained``, or None to load that from the model's
            own name or folder.
        name: the model's name in results (default: the checkpoint name, else the model type).
        max_window: tokens per forward pass (default: the model's context length).
    """

    family = "huggingface"

    def __init__(self, model, tokenizer: Tokenizer | Any | None = None, *,
                 name: str | None = None, max_window: int | None = None) -> None:
        transformers = _transformers()
        source = ""
        if isinstance(model, (str, Path)):
            source = str(model)
            model = transformers.AutoModelForCausalLM.from_pretrained(source)
        source = source or getattr(model.config, "name_or_path", "") or ""
        if tokenizer is None:
            if not source:
                raise LmbenchError("give a tokenizer for a model built in memory")
            tokenizer = source
        if isinstance(tokenizer, str):
            tokenizer = (build_tokenizer(tokenizer) if tokenizer in TOKENIZERS
                         else transformers.AutoTokenizer.from_pretrained(tokenizer))
        if not isinstance(tokenizer, Tokenizer):
            tokenizer = HuggingFaceTokenizer(tokenizer)
        model.eval()
        window = max_window or _context_length(model.config)
        unique = {p.data_ptr(): p.numel() for p in model.parameters()}  # tied weights once
        super().__init__(self._forward, tokenizer, name=name or source or model.config.model_type,
                         n_params=sum(unique.values()), max_window=window,
                         config={"model": source, "model_type": model.config.model_type})
        self.model = model
        self.output_size = int(model.get_output_embeddings().weight.shape[0])
        if tokenizer.vocab_size > self.output_size:
            raise LmbenchError(f"tokenizer {tokenizer.name} has {tokenizer.vocab_size} ids but "
                               f"the model predicts only {self.output_size}")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> HuggingFaceLM:
        """Move the ``transformers`` network to ``device``; returns self."""
        self.model.to(resolve_device(device))
        return self

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self.model(input_ids=ids.to(self.device), use_cache=False)
        return out.logits.float()  # (B, T, V) on the network's device

    def save(self, path: str | Path) -> None:
        """``save_pretrained`` into the folder ``path``, with the tokenizer."""
        path = Path(path)
        self.model.save_pretrained(path)
        if isinstance(self.tokenizer, HuggingFaceTokenizer):
            self.tokenizer.hf.save_pretrained(path)
        else:
            write_text_atomic(path / _LMBENCH_TOKENIZER, tokenizer_to_json(self.tokenizer))
        write_text_atomic(path / "lmbench.json", json.dumps({"name": self.name}))

    @classmethod
    def load(cls, path: str | Path) -> HuggingFaceLM:
        path = Path(path)
        model = _transformers().AutoModelForCausalLM.from_pretrained(path)
        tokenizer = None
        if (path / _LMBENCH_TOKENIZER).is_file():
            tokenizer = tokenizer_from_json((path / _LMBENCH_TOKENIZER).read_text())
        meta = json.loads((path / "lmbench.json").read_text()) if (
            path / "lmbench.json").is_file() else {}
        return cls(model, tokenizer, name=meta.get("name"))


def _context_length(config) -> int | None:
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 1:
            return value
    return None
