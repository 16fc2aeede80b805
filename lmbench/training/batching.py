"""What the trainer reads: stream batches (pretraining) and per-example batches (fine-tuning).

A batch source is a pure function ``step -> batch`` plus a ``fingerprint`` of its data, so a
resumed run sees the same batches and a checkpoint of other data is refused.

Stream batches (``StreamBatches``) read one token stream ``x_0 .. x_{N-1}``; a batch is (B, T)
inputs and next-token targets, ``targets[b, t] = inputs[b, t + 1]`` along the stream:

- random windows (nanoGPT's ``get_batch``): B starts drawn uniformly from [0, N - T - 1) by a
  generator seeded with ``seed * 1_000_003 + step``;
- parallel streams (``sequential``, for families that carry state: truncated BPTT as PyTorch's
  word_language_model ``batchify``): the stream cut into B rows of ``L = (N - 1) // B`` tokens,
  step s reading tokens ``c T .. c T + T`` of every row, ``c = s mod ((L - 1) // T)``; ``c = 0``
  starts an epoch, where the carried state resets.

Per-example batches (``ExampleBatches``) read ``Example(prompt, response)`` or
``PreferencePair(prompt, chosen, rejected)`` (``lmbench.data.examples``). An example becomes
``[b] + prompt + response (+ [b])``, b the tokenizer's ``boundary_id`` (appended after the
response unless it already ends there, so a model learns where a response stops); inputs are
that sequence but its last token, targets the sequence shifted by one. The loss mask is true at
the positions whose target is a response token:

    L_SFT = - sum_{b,t} m[b,t] log p(y[b,t] | x[b,:t+1]) / sum_{b,t} m[b,t]

Rows are padded on the right to the longest in the batch (inputs with b, targets with the ignore
index -1, mask false); a pair's chosen and rejected rows are padded to one length so both can go
through one forward pass. With ``max_len`` a sequence keeps its last ``max_len`` inputs (the
prompt is cut from the left). Each epoch visits every example once, in an order drawn from
(seed, epoch); the last short batch of an epoch is dropped only if the epoch has a full one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.tokenizers import Tokenizer
from lmbench.data.examples import Example, PreferencePair

IGNORE_INDEX = -1  # targets equal to it are ignored (lmbench.core.interface)


class Batch(Protocol):
    """What the trainer needs of any batch; objectives read the fields of their own kind."""

    @property
    def n_tokens(self) -> int:
        """Tokens read (padding included): what a token budget counts."""

    @property
    def resets_state(self) -> bool:
        """Whether the state carried from the previous batch is dropped before this one."""

    def to(self, device: torch.device) -> Batch:
        """The batch with its tensors on ``device``."""


class BatchSource(Protocol):
    """``step -> batch``, a pure function of the step, and a digest of the data it reads."""

    def __call__(self, step: int) -> Batch: ...

    def fingerprint(self) -> str:
        """A hex digest of the tokenized data (checkpoints of other data are refused)."""


# ------------------------------------------------------------------------------------ streams


@dataclass(frozen=True)
class StreamBatch:
    inputs: torch.Tensor  # (B, T) ids
    targets: torch.Tensor  # (B, T) the next ids along the stream
    starts_epoch: bool = False  # parallel streams only: the carried state resets here

    @property
    def n_tokens(self) -> int:
        return self.inputs.numel()

    @property
    def resets_state(self) -> bool:
        return self.starts_epoch

    def to(self, device: torch.device) -> StreamBatch:
        return replace(self, inputs=self.inputs.to(device), targets=self.targets.to(device))


class StreamBatches:
    """Stream batches of (N,) ids (module docstring); step -> ``StreamBatch``."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, *, seed: int = 0,
                 sequential: bool = False) -> None:
        self.batch_size, self.seq_len, self.seed, self.sequential = (batch_size, seq_len, seed,
                                                                      sequential)
        B, T = batch_size, seq_len
        self.ids = torch.from_numpy(np.asarray(ids, dtype=np.int64))
        if len(self.ids) < T + 2:
            raise LmbenchError(f"the train split has {len(self.ids)} tokens; train.seq_len = {T} "
                               "needs more")
        if sequential:
            # batchify: B streams side by side, each read in order, T tokens per step
            length = (len(self.ids) - 1) // B
            if length < T + 1:
                raise LmbenchError(
                    f"the train split has {len(self.ids)} tokens; train.batch_size = {B} "
                    f"streams of train.seq_len + 1 = {T + 1} tokens need at least "
                    f"{B * (T + 1) + 1} (lower batch_size or seq_len)")
            self.streams = self.ids[: length * B + 1]
            self.stream_len = length
            self.steps_per_epoch = max(1, (length - 1) // T)

    def __call__(self, step: int) -> StreamBatch:
        B, T = self.batch_size, self.seq_len
        if self.sequential:
            chunk = step % self.steps_per_epoch
            offsets = torch.arange(B) * self.stream_len + chunk * T  # (B,)
            index = offsets[:, None] + torch.arange(T + 1)[None, :]  # (B, T+1)
            window = self.streams[index]
            return StreamBatch(window[:, :-1], window[:, 1:], chunk == 0)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        starts = torch.randint(0, len(self.ids) - T - 1, (B,), generator=generator)
        window = self.ids[starts[:, None] + torch.arange(T + 1)[None, :]]  # (B, T+1)
        return StreamBatch(window[:, :-1], window[:, 1:], False)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(b"stream")
        digest.update(self.ids.numpy().tobytes())
        return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class ExampleBatch:
    input_ids: torch.Tensor  # (B, T) ids, padded on the right with the boundary id
    target_ids: torch.Tensor  # (B, T) next ids; IGNORE_INDEX at padding
    loss_mask: torch.Tensor  # (B, T) bool: True where the target is a response token

    @property
    def n_tokens(self) -> int:
        return self.input_ids.numel()

    @property
    def resets_state(self) -> bool:
        return True  # examples are independent

    def to(self, device: torch.device) -> ExampleBatch:
        return ExampleBatch(self.input_ids.to(device), self.target_ids.to(device),
                            self.loss_mask.to(device))

    def masked_targets(self) -> torch.Tensor:
        """(B, T) targets with IGNORE_INDEX wherever the loss mask is false."""
        return torch.where(self.loss_mask, self.target_ids, IGNORE_INDEX)


@dataclass(frozen=True)
class PairBatch:
    """B prompts with a chosen and a rejected response; both (B, T), one T."""

    chosen: ExampleBatch
    rejected: ExampleBatch

    @property
    def n_tokens(self) -> int:
        return self.chosen.n_tokens + self.rejected.n_tokens

    @property
    def resets_state(self) -> bool:
        return True

    def to(self, device: torch.device) -> PairBatch:
        return PairBatch(self.chosen.to(device), self.rejected.to(device))


@dataclass(frozen=True)
class TokenizedExample:
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]  # ends with the boundary id


def tokenize_response(tokenizer: Tokenizer, prompt: str, response: str) -> TokenizedExample:
    """A prompt and a response as ids (module docstring: the response ends at a boundary)."""
    response_ids = list(tokenizer.encode(response))
    if not response_ids or response_ids[-1] != tokenizer.boundary_id:
        response_ids.append(tokenizer.boundary_id)
    return TokenizedExample(tuple(tokenizer.encode(prompt)), tuple(response_ids))


def collate(examples: Sequence[TokenizedExample], boundary_id: int,
            max_len: int | None = None, length: int | None = None) -> ExampleBatch:
    """Tokenized examples -> one ``ExampleBatch`` padded to the longest row (or ``length``).

    Args:
        examples: the rows.
        boundary_id: the tokenizer's boundary id (the first input, and the padding).
        max_len: keep at most this many inputs per row, cutting the prompt from the left.
        length: pad to this T instead of the longest row (at least the longest).

    Returns:
        (B, T) inputs, targets (IGNORE_INDEX at padding) and the response loss mask.
    """
    rows = []
    for example in examples:
        sequence = [boundary_id, *example.prompt_ids, *example.response_ids]
        counted = [False] * (1 + len(example.prompt_ids)) + [True] * len(example.response_ids)
        if max_len is not None:
            sequence, counted = sequence[-(max_len + 1):], counted[-(max_len + 1):]
        rows.append((sequence[:-1], sequence[1:], counted[1:]))
    T = max(len(inputs) for inputs, _, _ in rows)
    T = T if length is None else max(T, length)
    inputs = torch.full((len(rows), T), boundary_id, dtype=torch.long)  # (B, T)
    targets = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), T), dtype=torch.bool)  # (B, T)
    for b, (row_inputs, row_targets, row_counted) in enumerate(rows):
        n = len(row_inputs)
        inputs[b, :n] = torch.tensor(row_inputs)
        targets[b, :n] = torch.tensor(row_targets)
        mask[b, :n] = torch.tensor(row_counted)
    return ExampleBatch(inputs, targets, mask)


def _longest(examples: Sequence[TokenizedExample], max_len: int | None) -> int:
    longest = max(len(e.prompt_ids) + len(e.response_ids) for e in examples)
    return longest if max_len is None else min(longest, max_len)


class ExampleBatches:
    """Per-example batches (module docstring); step -> ``ExampleBatch`` (for ``Example``s) or
    ``PairBatch`` (for ``PreferencePair``s).

    Args:
        examples: all of one kind.
        tokenizer: a fitted tokenizer (the model's).
        batch_size: examples per step.
        seed: the order of each epoch.
        max_len: the longest input row (a Transformer's block size); None: no limit.
    """

    def __init__(self, examples: Sequence[Example] | Sequence[PreferencePair],
                 tokenizer: Tokenizer, batch_size: int, *, seed: int = 0,
                 max_len: int | None = None) -> None:
        if not examples:
            raise LmbenchError("per-example batches need at least one example")
        if batch_size < 1:
            raise LmbenchError(f"batch_size must be >= 1, got {batch_size}")
        kinds = {type(e) for e in examples}
        if len(kinds) > 1 or not kinds <= {Example, PreferencePair}:
            raise LmbenchError("examples must be all Example or all PreferencePair, got "
                               f"{', '.join(sorted(k.__name__ for k in kinds))}")
        self.pairs = kinds == {PreferencePair}
        self.boundary_id, self.batch_size, self.seed, self.max_len = (
            tokenizer.boundary_id, batch_size, seed, max_len)
        if self.pairs:
            self.rows = [(tokenize_response(tokenizer, e.prompt, e.chosen),
                          tokenize_response(tokenizer, e.prompt, e.rejected)) for e in examples]
        else:
            self.rows = [(tokenize_response(tokenizer, e.prompt, e.response),) for e in examples]
        self.steps_per_epoch = max(1, len(self.rows) // batch_size)

    def __call__(self, step: int) -> ExampleBatch | PairBatch:
        epoch, index = divmod(step, self.steps_per_epoch)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.rows), generator=generator)
        picked = [self.rows[i] for i in order[index * self.batch_size:
                                              (index + 1) * self.batch_size].tolist()]
        if not self.pairs:
            return collate([row[0] for row in picked], self.boundary_id, self.max_len)
        chosen, rejected = [row[0] for row in picked], [row[1] for row in picked]
        T = max(_longest(chosen, self.max_len), _longest(rejected, self.max_len))
        return PairBatch(collate(chosen, self.boundary_id, self.max_len, T),
                         collate(rejected, self.boundary_id, self.max_len, T))

    def fingerprint(self) -> str:
        digest = hashlib.sha256(b"pairs" if self.pairs else b"examples")
        for row in self.rows:
            for example in row:
                digest.update(repr((example.prompt_ids, example.response_ids)).encode())
        return digest.hexdigest()[:16]
