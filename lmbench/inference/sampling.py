"""Sampling as composition: logits processors, a ``Sampler``, and ``generate``.

A *logits processor* is any ``Callable[[Tensor, Tensor], Tensor]``: it takes the ids read so far
``input_ids`` (B, T) and the next-token scores ``logits`` (B, V) and returns new (B, V) scores
(HF transformers' ``LogitsProcessor`` protocol). The processors here are frozen dataclasses that
validate their arguments in ``__post_init__`` and never modify their inputs. A removed token gets
``filter_value = -inf``; ``min_tokens_to_keep`` (>= 1) tokens of highest score always survive a
filter, so a distribution can never be emptied by top-k, top-p or min-p.

- ``Temperature(t)``: z / t (t > 0). t < 1 sharpens, t > 1 flattens; t -> 0 tends to argmax.
- ``TopK(k)``: keep the k largest scores (Fan et al. 2018).
- ``TopP(p)``: nucleus sampling (Holtzman et al. 2019): keep the smallest set of most probable
  tokens whose probability sums to at least p; a token is kept iff the mass strictly above it
  is < p.
- ``MinP(p)``: keep tokens with probability >= p * max probability (Nguyen et al. 2024).
- ``RepetitionPenalty(r)``: CTRL's penalty (Keskar et al. 2019) on every id already in
  ``input_ids``: z / r where z > 0, z * r where z <= 0 (the sign-aware form of HF transformers;
  CTRL divides, which would *raise* a negative score).
- ``NoRepeatNGram(n)``: ban any token that would complete an n-gram already in ``input_ids``
  (fairseq's ``--no-repeat-ngram-size``).
- ``BadWords(sequences)``: HF transformers' ``bad_words_ids`` (``NoBadWordsLogitsProcessor``):
  a one-token sequence is never drawn; the last id of a longer one is banned whenever its other
  ids are the last ids read, so the whole sequence never appears. ``bad_words_ids(tokenizer,
  words, ban_unk=True)`` turns words (and the tokenizer's ``<unk>``) into such sequences.

``build_sampler(SamplingConfig)`` fixes the order: bans and penalties -> temperature -> top-k
-> top-p -> min-p, so truncation always acts on the tempered distribution. ``temperature = 0``
means greedy (argmax after the bans and penalties; the truncations never remove the argmax, so
they are dropped).

``generate`` feeds the boundary id and the prompt in one ``model.logits`` call, then one call per
new token with the state the model returned, so no family re-reads its prefix. With
``use_cache=False`` it instead re-reads the whole prefix (the last ``max_window`` ids for a
windowed model) at every step: slower, and the reference the cached path must equal. A
``torch.Generator`` seeded from ``seed`` makes the output a function of (model, prompt, sampler,
seed) alone. Processors see the ids the model has read: boundary, prompt, then the new tokens.
``next_logits`` brings the scores to the CPU, where ids, processors and generators live, so a
model on any device samples the same way (and a seed draws alike on the CPU and a GPU).

``stop_ids`` end a row when drawn; ``stop_strings`` (HF's ``stop_strings``) end it once the
decoded continuation contains one of them, and ``Sample.text`` is then cut before the first
occurrence (the ids keep every token drawn, the one that completed the stop string included).

``sample_batch`` continues B prompts of one length P together: one (B, 1 + P) call, then one
(B, 1) call per step, with row b drawn by a generator of its own seeded from ``seeds[b]``
(``Sampler.draw_rows``). Every processor acts row by row, so row b equals ``sample`` of prompt b
with seed ``seeds[b]`` whenever the model's batched logits equal its one-row logits: exactly for
the n-gram family, up to float rounding for neural ones. ``sample`` is the batch of one.
Beam search and best-of-N live in ``lmbench.inference.decoding``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, SelectsStateRows, State
from lmbench.core.limits import MAX_NEW_TOKENS, check_at_most
from lmbench.core.tokenizers import Tokenizer

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B,T), (B,V) -> (B,V)
NEG_INF = float("-inf")


def _check_keep(min_tokens_to_keep: int) -> None:
    if not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
        raise LmbenchError(
            f"min_tokens_to_keep must be an integer >= 1, got {min_tokens_to_keep!r}")


def _protect_top(remove: torch.Tensor, logits: torch.Tensor, keep: int) -> torch.Tensor:
    """``remove`` (B, V) with the ``keep`` highest-scoring tokens of each row set to False."""
    top = torch.topk(logits, min(keep, logits.shape[-1]), dim=-1).indices  # (B, keep)
    return remove.scatter(-1, top, False)


# ---------------------------------------------------------------------------------- processors


@dataclass(frozen=True)
class Temperature:
    """Divide the scores by ``temperature`` (> 0). For greedy decoding use
    ``SamplingConfig(temperature=0)`` or ``Sampler(greedy=True)``."""

    temperature: float

    def __post_init__(self) -> None:
        if not self.temperature > 0:  # also rejects NaN
            raise LmbenchError(f"Temperature needs a value > 0, got {self.temperature}; for greedy "
                               "decoding use SamplingConfig(temperature=0) or Sampler(greedy=True)")

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature


@dataclass(frozen=True)
class TopK:
    """Keep the ``max(k, min_tokens_to_keep)`` highest scores (Fan et al. 2018); among equal
    scores the lower ids, so ``TopK(1)`` is exactly greedy."""

    k: int
    min_tokens_to_keep: int = 1
    filter_value: float = NEG_INF

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise LmbenchError(f"top_k must be an integer >= 1, got {self.k!r}")
        _check_keep(self.min_tokens_to_keep)

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        k = max(self.k, self.min_tokens_to_keep)
        if k >= logits.shape[-1]:
            return logits
        # exactly k survive; a stable sort breaks ties towards the lower id, as argmax does
        order = torch.sort(logits, dim=-1, descending=True, stable=True).indices  # (B, V)
        remove = torch.ones_like(logits, dtype=torch.bool).scatter(-1, order[..., :k], False)
        return logits.masked_fill(remove, self.filter_value)


@dataclass(frozen=True)
class TopP:
    """Nucleus sampling (Holtzman et al. 2019): keep the smallest set of most probable tokens
    whose total probability is >= ``p``, ``p`` in (0, 1]. Practice uses 0.9-0.95."""

    p: float
    min_tokens_to_keep: int = 1
    filter_value: float = NEG_INF

    def __post_init__(self) -> None:
        if not 0 < self.p <= 1:
            raise LmbenchError(f"top_p must be in (0, 1], got {self.p}")
        _check_keep(self.min_tokens_to_keep)

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.p >= 1:  # the whole distribution; skip the float round-off of the cumsum
            return logits
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
        probs = torch.softmax(sorted_logits.double(), dim=-1)
        mass_above = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked higher
        remove_sorted = mass_above >= self.p
        remove_sorted[..., : self.min_tokens_to_keep] = False
        remove = remove_sorted.scatter(-1, order, remove_sorted)  # back to vocabulary order
        return logits.masked_fill(remove, self.filter_value)


@dataclass(frozen=True)
class MinP:
    """Keep tokens whose probability is >= ``p`` times the top probability (Nguyen et al.
    2024, "Turning Up the Heat: Min-p Sampling"); ``p`` in [0, 1], 0 keeps everything."""

    p: float
    min_tokens_to_keep: int = 1
    filter_value: float = NEG_INF

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise LmbenchError(f"min_p must be in [0, 1], got {self.p}")
        _check_keep(self.min_tokens_to_keep)

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.p == 0:
            return logits
        logprobs = torch.log_softmax(logits.double(), dim=-1)  # (B, V)
        threshold = logprobs.max(dim=-1, keepdim=True).values + math.log(self.p)
        remove = logprobs < threshold  # never the argmax, so one token always survives
        if self.min_tokens_to_keep > 1:
            remove = _protect_top(remove, logits, self.min_tokens_to_keep)
        return logits.masked_fill(remove, self.filter_value)


@dataclass(frozen=True)
class RepetitionPenalty:
    """CTRL's repetition penalty (Keskar et al. 2019) on every id in ``input_ids``:
    z / penalty where z > 0, z * penalty otherwise. ``penalty`` > 0; 1 is a no-op, > 1
    discourages repeats."""

    penalty: float

    def __post_init__(self) -> None:
        if not self.penalty > 0:
            raise LmbenchError(f"repetition_penalty must be > 0, got {self.penalty}")

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] == 0:
            return logits
        seen = logits.gather(-1, input_ids)  # (B, T)
        penalised = torch.where(seen > 0, seen / self.penalty, seen * self.penalty)
        return logits.scatter(-1, input_ids, penalised)


@dataclass(frozen=True)
class NoRepeatNGram:
    """Ban every token that would complete an ``n``-gram already present in ``input_ids``
    (``n`` = 1 bans every id already read)."""

    n: int
    filter_value: float = NEG_INF

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise LmbenchError(f"no_repeat_ngram_size must be an integer >= 1, got {self.n!r}")

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        n = self.n
        banned = torch.zeros(logits.shape, dtype=torch.bool)
        for b, row in enumerate(input_ids.tolist()):
            if len(row) < n - 1:
                continue
            prefix = row[len(row) - n + 1:] if n > 1 else []
            for i in range(len(row) - n + 1):  # every earlier n-gram whose first n-1 ids match
                if row[i : i + n - 1] == prefix:
                    banned[b, row[i + n - 1]] = True
        return logits.masked_fill(banned.to(logits.device), self.filter_value)


def _id_sequences(sequences: object) -> tuple[tuple[int, ...], ...]:
    """``sequences`` as a tuple of non-empty tuples of ids >= 0 (a copy: the input is kept)."""
    if isinstance(sequences, (str, bytes)) or not isinstance(sequences, Sequence):
        raise LmbenchError(f"bad_words_ids must be a sequence of id sequences, got {sequences!r}")
    out = []
    for sequence in sequences:
        if isinstance(sequence, (str, bytes)) or not isinstance(sequence, Sequence) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in sequence):
            raise LmbenchError("bad_words_ids must hold sequences of token ids >= 0, got "
                               f"{sequence!r}")
        if not sequence:
            raise LmbenchError("bad_words_ids holds an empty sequence; every banned sequence "
                               "needs at least one id")
        out.append(tuple(int(i) for i in sequence))
    return tuple(out)


@dataclass(frozen=True)
class BadWords:
    """Never generate any of ``sequences`` (HF transformers' ``bad_words_ids``, as its
    ``NoBadWordsLogitsProcessor``): a one-id sequence is always banned; the last id of a longer
    one is banned in a row whose last ids read are the sequence's other ids. ``sequences`` is
    copied into tuples, so lists may be given."""

    sequences: tuple[tuple[int, ...], ...]
    filter_value: float = NEG_INF

    def __post_init__(self) -> None:
        object.__setattr__(self, "sequences", _id_sequences(self.sequences))

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        V = logits.shape[-1]
        banned = torch.zeros(logits.shape, dtype=torch.bool)  # (B, V)
        always = [s[0] for s in self.sequences if len(s) == 1 and s[0] < V]
        banned[:, always] = True
        longer = [s for s in self.sequences if len(s) > 1 and s[-1] < V]
        if longer:
            for b, row in enumerate(input_ids.tolist()):
                for s in longer:
                    if len(row) >= len(s) - 1 and tuple(row[len(row) - len(s) + 1:]) == s[:-1]:
                        banned[b, s[-1]] = True
        return logits.masked_fill(banned.to(logits.device), self.filter_value)


def bad_words_ids(tokenizer: Tokenizer, words: Sequence[str] = (), *,
                  ban_unk: bool = False) -> tuple[tuple[int, ...], ...]:
    """The id sequences that ban ``words`` (and the tokenizer's ``<unk>`` with ``ban_unk``),
    for ``SamplingConfig(bad_words_ids=...)``.

    A word that is one of the tokenizer's token strings (``"<unk>"``, ``"</s>"``) is that id;
    any other is the ids ``tokenizer.encode`` gives it (a word tokenizer's closing ``</s>``
    dropped), one sequence per word: several ids ban the whole sequence, not its parts.

    Args:
        tokenizer: the fitted tokenizer of the model that will generate.
        words: the texts to ban.
        ban_unk: also ban ``tokenizer.unk_id``.

    Raises:
        LmbenchError: a word encodes to nothing or to ``<unk>`` (it is not in the vocabulary),
            or ``ban_unk`` for a tokenizer without ``<unk>``.
    """
    sequences: list[tuple[int, ...]] = []
    if ban_unk:
        if tokenizer.unk_id is None:
            raise LmbenchError(f"the {tokenizer.name} tokenizer has no <unk> to ban; every text "
                               "is encoded without it")
        sequences.append((tokenizer.unk_id,))
    index = {token: i for i, token in enumerate(tokenizer.token_strings())}
    for word in words:
        if word in index:
            sequences.append((index[word],))
            continue
        ids = tokenizer.encode(word)
        if ids and ids[-1] == tokenizer.boundary_id and not word.endswith("\n"):
            ids = ids[:-1]
        if not ids:
            raise LmbenchError(f"cannot ban {word!r}: the {tokenizer.name} tokenizer encodes it "
                               "to no tokens")
        if tokenizer.unk_id is not None and tokenizer.unk_id in ids:
            raise LmbenchError(f"cannot ban {word!r}: it is not in the model's vocabulary (it is "
                               "read as <unk>; ban <unk> itself with ban_unk / --ban-unk)")
        sequences.append(tuple(ids))
    return tuple(sequences)


@dataclass(frozen=True)
class StopStrings:
    """Texts that end generation once the decoded continuation contains one (HF's
    ``stop_strings``); ``cut`` returns a text up to, not including, the first occurrence."""

    strings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.strings, str):
            raise LmbenchError(f"stop_strings must be a sequence of strings, got {self.strings!r}"
                               f"; write ({self.strings!r},) for one")
        strings = tuple(self.strings)
        if not all(isinstance(s, str) and s for s in strings):
            raise LmbenchError(f"stop_strings must be non-empty strings, got {strings!r}")
        object.__setattr__(self, "strings", strings)

    def found(self, text: str) -> bool:
        """Whether ``text`` contains a stop string."""
        return any(s in text for s in self.strings)

    def cut(self, text: str) -> str:
        """``text`` before the first stop string in it (all of it when there is none)."""
        ends = [i for i in (text.find(s) for s in self.strings) if i >= 0]
        return text[: min(ends)] if ends else text


# ------------------------------------------------------------------------------------- sampler


@dataclass(frozen=True)
class Sampler:
    """Apply ``processors`` in order, then take the argmax (``greedy``) or draw from the
    softmax of the result (ancestral sampling; no processors = the model's distribution)."""

    processors: tuple[LogitsProcessor, ...] = ()
    greedy: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "processors", tuple(self.processors))

    def process(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and (B, V) scores -> the processed (B, V) scores."""
        for processor in self.processors:
            logits = processor(input_ids, logits)
        return logits

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, T) ids and (B, V) scores -> (B,) next ids, every row drawn with ``generator``."""
        scores = self._checked(input_ids, logits)
        if self.greedy:
            return scores.argmax(dim=-1)
        probs = torch.softmax(scores.double(), dim=-1)  # (B, V); float64 so tiny p stay > 0
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def draw_rows(self, input_ids: torch.Tensor, logits: torch.Tensor,
                  generators: Sequence[torch.Generator]) -> torch.Tensor:
        """(B, T) ids and (B, V) scores -> (B,) next ids, row b drawn with ``generators[b]``
        alone: it equals ``self(input_ids[b:b+1], logits[b:b+1], generators[b])``, whatever
        the other rows of the batch hold (every processor acts row by row)."""
        if len(generators) != logits.shape[0]:
            raise LmbenchError(f"draw_rows needs one generator per row: {len(generators)} "
                               f"generators for {logits.shape[0]} rows")
        scores = self._checked(input_ids, logits)
        if self.greedy:
            return scores.argmax(dim=-1)
        probs = torch.softmax(scores.double(), dim=-1)  # (B, V)
        return torch.cat([torch.multinomial(probs[b : b + 1], 1, generator=generator)[:, 0]
                          for b, generator in enumerate(generators)])  # (B,)

    def _checked(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The processed (B, V) scores; an error if a row has nothing left."""
        scores = self.process(input_ids, logits)
        if torch.isneginf(scores).all(dim=-1).any():
            raise LmbenchError("every token was filtered out (check no_repeat_ngram_size and "
                               "the other processors)")
        return scores


@dataclass(frozen=True)
class SamplingConfig:
    """The usual decoding knobs; ``build_sampler`` turns them into a ``Sampler``. Defaults are
    pure ancestral sampling from the model's own distribution."""

    temperature: float = 1.0  # 0: greedy (argmax); otherwise > 0
    top_k: int | None = None  # keep the k most likely tokens; None: off
    top_p: float = 1.0  # nucleus mass in (0, 1]; 1: off
    min_p: float = 0.0  # keep p >= min_p * p_max, in [0, 1]; 0: off
    repetition_penalty: float = 1.0  # CTRL penalty on ids already read; 1: off
    no_repeat_ngram_size: int = 0  # ban repeated n-grams of this size; 0: off
    min_tokens_to_keep: int = 1  # top-k / top-p / min-p never keep fewer
    bad_words_ids: tuple[tuple[int, ...], ...] = ()  # id sequences never generated (BadWords)

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise LmbenchError(f"temperature must be >= 0 (0 means greedy), got {self.temperature}")
        if isinstance(self.no_repeat_ngram_size, bool) or not isinstance(
                self.no_repeat_ngram_size, int) or self.no_repeat_ngram_size < 0:
            raise LmbenchError("no_repeat_ngram_size must be an integer >= 0, got "
                               f"{self.no_repeat_ngram_size!r}")
        _check_keep(self.min_tokens_to_keep)
        object.__setattr__(self, "bad_words_ids", _id_sequences(self.bad_words_ids))
        build_sampler(self)  # the processors validate the rest


def build_sampler(config: SamplingConfig) -> Sampler:
    """The processors of ``config`` in the fixed order bans and penalties -> temperature ->
    top-k -> top-p -> min-p, skipping the ones set to their no-op value."""
    c = config
    processors: list[LogitsProcessor] = []
    if c.bad_words_ids:
        processors.append(BadWords(c.bad_words_ids))
    if c.repetition_penalty != 1:
        processors.append(RepetitionPenalty(c.repetition_penalty))
    if c.no_repeat_ngram_size:
        processors.append(NoRepeatNGram(c.no_repeat_ngram_size))
    greedy = c.temperature == 0
    # Build (and so validate) the truncations even for greedy, which then drops them.
    truncations: list[LogitsProcessor] = []
    if c.top_k is not None:
        truncations.append(TopK(c.top_k, c.min_tokens_to_keep))
    if c.top_p != 1:
        truncations.append(TopP(c.top_p, c.min_tokens_to_keep))
    if c.min_p != 0:
        truncations.append(MinP(c.min_p, c.min_tokens_to_keep))
    if not greedy:
        if c.temperature != 1:
            processors.append(Temperature(c.temperature))
        processors.extend(truncations)
    return Sampler(tuple(processors), greedy=greedy)


def as_sampler(sampler: Sampler | SamplingConfig | None) -> Sampler:
    """A ``Sampler`` from a sampler, a config, or None (pure ancestral sampling)."""
    if sampler is None:
        return Sampler()
    if isinstance(sampler, SamplingConfig):
        return build_sampler(sampler)
    return sampler


# ---------------------------------------------------------------------------------- generation


def next_logits(model: LanguageModel, context: torch.Tensor, n_new: int, state: State,
                use_cache: bool) -> tuple[torch.Tensor, State]:
    """The (B, V) next-token scores after each row of ``context`` (B, T), on the CPU, and the
    state to continue from (on the model's device).

    With the cache, only the last ``n_new`` ids are fed, continuing ``state``; without it, the
    whole context (its last ``max_window`` ids for a windowed model) from no state."""
    window = model.capabilities.max_window
    feed = context[:, -n_new:] if use_cache else context
    if window is not None and (state is None or not use_cache):
        feed = feed[:, -window:]  # a prompt (or prefix) longer than one call accepts
    logits, new_state = model.logits(feed, state if use_cache else None)
    last = logits[:, -1].cpu()  # (B, V), from the model's device
    if torch.isnan(last).any() or torch.isposinf(last).any():  # -inf is p = 0: valid
        raise LmbenchError(f"model {model.name!r} returned NaN or +inf next-token scores; it is "
                           "broken")
    return last, (new_state if use_cache else None)


def prompt_batch(model: LanguageModel, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
    """The (B, 1 + P) ids a batch of ``prompts`` is read from: the boundary id, then the prompt.
    Every prompt must have the same length P (rows of a batch advance in lockstep)."""
    lengths = sorted({len(p) for p in prompts})
    if len(lengths) > 1:
        raise LmbenchError(f"prompts of one batch must have one length, got lengths {lengths}; "
                           "decode prompts of different lengths in separate calls")
    boundary = model.tokenizer.boundary_id
    return torch.tensor([[boundary, *map(int, p)] for p in prompts], dtype=torch.long)


@dataclass(frozen=True)
class Sample:
    """One sampled continuation, the model's own ln p of each token (before processors), and
    its decoded text, cut before the first stop string when one was given."""

    ids: list[int]
    logprobs: list[float]
    text: str


def sample(model: LanguageModel, prompt_ids: Sequence[int], max_new_tokens: int, *,
           sampler: Sampler | SamplingConfig | None = None, seed: int = 0, use_cache: bool = True,
           stop_ids: Sequence[int] = (), stop_strings: Sequence[str] = ()) -> Sample:
    """``generate``, also returning ln p(token | prefix) under the unprocessed model and the
    decoded text (cut before a stop string)."""
    return sample_batch(model, [prompt_ids], max_new_tokens, sampler=sampler, seeds=[seed],
                        use_cache=use_cache, stop_ids=stop_ids, stop_strings=stop_strings)[0]


def check_max_new_tokens(max_new_tokens: int) -> None:
    """A decoding length in [0, ``MAX_NEW_TOKENS``], checked before any prompt is read."""
    if max_new_tokens < 0:
        raise LmbenchError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    check_at_most(max_new_tokens, MAX_NEW_TOKENS, "max_new_tokens")


def prompt_reads(model: LanguageModel, rows_per_prompt: int, use_cache: bool = True) -> int:
    """How many times ``sample_batch`` reads each prompt: once when a ``SelectsStateRows`` model
    (with the cache) copies the prompt's state into its ``rows_per_prompt`` rows, else once
    per row."""
    copies = use_cache and isinstance(model, SelectsStateRows)
    return 1 if rows_per_prompt == 1 or copies else rows_per_prompt


def sample_batch(model: LanguageModel, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
                 sampler: Sampler | SamplingConfig | None = None, seeds: Sequence[int],
                 use_cache: bool = True, stop_ids: Sequence[int] = (),
                 stop_strings: Sequence[str] = (), rows_per_prompt: int = 1) -> list[Sample]:
    """``sample`` for every prompt of ``prompts`` (all of one length) at once: one
    ``model.logits`` call reads the (B, 1 + P) boundary and prompts, then one (B, 1) call per
    step continues the batch's state.

    With ``rows_per_prompt`` r > 1 each prompt is continued r times (self-consistency's
    samples), rows ``b * r`` to ``b * r + r - 1`` with one seed each (``seeds`` has B * r); a
    ``SelectsStateRows`` model reads each prompt once and copies its state into the r rows,
    another (or ``use_cache=False``) reads it r times.

    Row b draws with a ``torch.Generator`` of its own seeded from ``seeds[b]``, so its output
    equals ``sample(model, prompts[b], ..., seed=seeds[b])`` whenever the batched logits equal
    the single-row ones: exactly for n-gram models, up to float rounding (which can flip a
    near-tie) for neural ones. A row that draws a stop id is finished; the others go on, and
    the finished rows are still fed (their last id again) but no longer read. A row whose
    decoded continuation contains one of ``stop_strings`` is finished too, and its ``text`` is
    cut before the first stop string.

    Example::

        drawn = sample_batch(model, [[4, 8], [15, 16]], 20, sampler=SamplingConfig(top_p=0.95),
                             seeds=[0, 1000])
    """
    check_max_new_tokens(max_new_tokens)
    if rows_per_prompt < 1:
        raise LmbenchError(f"rows_per_prompt must be >= 1, got {rows_per_prompt}")
    if len(seeds) != len(prompts) * rows_per_prompt:
        raise LmbenchError(f"seeds must give one seed per prompt and row: {len(seeds)} seeds "
                           f"for {len(prompts)} prompts x {rows_per_prompt} rows")
    if not prompts:
        return []
    start = prompt_batch(model, prompts)  # (B, 1 + P)
    copy_state = rows_per_prompt > 1 and prompt_reads(model, rows_per_prompt, use_cache) == 1
    if rows_per_prompt > 1 and not copy_state:
        start = start.repeat_interleave(rows_per_prompt, dim=0)  # (B * r, 1 + P)
    with torch.inference_mode():
        logits, state = next_logits(model, start, start.shape[1], None, use_cache)  # (B, V)
        if copy_state:
            owners = torch.arange(len(prompts)).repeat_interleave(rows_per_prompt)  # (B * r,)
            start, logits = start[owners], logits[owners]
            state = model.select_state(state, owners)
    return continue_batch(model, start, logits, state, max_new_tokens, sampler=sampler,
                          seeds=seeds, use_cache=use_cache, stop_ids=stop_ids,
                          stop_strings=stop_strings)


def continue_batch(model: LanguageModel, history: torch.Tensor, logits: torch.Tensor,
                   state: State, max_new_tokens: int, *,
                   sampler: Sampler | SamplingConfig | None = None, seeds: Sequence[int],
                   use_cache: bool = True, stop_ids: Sequence[int] = (),
                   stop_strings: Sequence[str] = ()) -> list[Sample]:
    """The decoding loop of ``sample_batch`` from a batch already read: ``history`` (B, L) the
    ids read so far (the boundary first; the processors see them), ``logits`` (B, V) the
    next-token scores after them (on the CPU) and ``state`` the model's state after them
    (``None`` with ``use_cache=False``). ``lmbench.inference.prefix_cache.sample_batch_after``
    starts it from a cached prefix."""
    check_max_new_tokens(max_new_tokens)
    if len(seeds) != history.shape[0]:
        raise LmbenchError(f"seeds must give one seed per row: {len(seeds)} seeds for "
                           f"{history.shape[0]} rows")
    sampler, stop, stop_texts = as_sampler(sampler), set(stop_ids), StopStrings(stop_strings)
    decode = model.tokenizer.decode
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    B, length = history.shape
    sequence = torch.empty((B, length + max_new_tokens), dtype=torch.long)  # (B, T_max)
    sequence[:, :length] = history
    ids: list[list[int]] = [[] for _ in range(B)]
    logprobs: list[list[float]] = [[] for _ in range(B)]
    live = list(range(B))  # rows still generating
    with torch.inference_mode():
        for step in range(max_new_tokens):
            rows = torch.tensor(live)
            row_logits = logits[rows]  # (B_live, V)
            tokens = sampler.draw_rows(sequence[rows, :length], row_logits,
                                       [generators[b] for b in live])  # (B_live,)
            picked = torch.log_softmax(row_logits.double(), -1).gather(-1, tokens[:, None])
            sequence[:, length] = sequence[:, length - 1]  # finished rows repeat their last id
            sequence[rows, length] = tokens
            length += 1
            for b, token, logprob in zip(live, tokens.tolist(), picked[:, 0].tolist()):
                ids[b].append(token)
                logprobs[b].append(logprob)
            live = [b for b in live if ids[b][-1] not in stop
                    and not (stop_texts.strings and stop_texts.found(decode(ids[b])))]
            if not live or step == max_new_tokens - 1:
                break  # no need for the logits after the last token
            logits, state = next_logits(model, sequence[:, :length], 1, state, use_cache)
    return [Sample(i, p, stop_texts.cut(decode(i))) for i, p in zip(ids, logprobs)]


def generate(model: LanguageModel, prompt_ids: Sequence[int], max_new_tokens: int, *,
             seed: int = 0, sampler: Sampler | SamplingConfig | None = None,
             use_cache: bool = True, stop_ids: Sequence[int] = (),
             stop_strings: Sequence[str] = ()) -> list[int]:
    """Continue ``prompt_ids`` (boundary prepended) by up to ``max_new_tokens`` ids.

    Args:
        model: any ``LanguageModel``.
        prompt_ids: the prompt, in the model's token ids (may be empty).
        max_new_tokens: how many ids to generate (fewer if a stop id is drawn).
        seed: seeds this call's own ``torch.Generator``.
        sampler: a ``Sampler``, a ``SamplingConfig``, or None for pure ancestral sampling.
        use_cache: continue the model's state (True) or re-read the prefix each step (False).
        stop_ids: ids that end generation; the stop id is included in the output.
        stop_strings: texts that end generation once the decoded continuation contains one;
            the ids up to the one completing it are returned (``sample(...).text`` is the text
            cut before it).

    Returns:
        The new ids (without the prompt).

    Example::

        generate(model, model.tokenizer.encode("the cat"), 50, seed=1,
                 sampler=SamplingConfig(temperature=0.8, top_p=0.95))
    """
    return sample(model, prompt_ids, max_new_tokens, sampler=sampler, seed=seed,
                  use_cache=use_cache, stop_ids=stop_ids, stop_strings=stop_strings).ids
