"""Speculative decoding (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative
Decoding"; Chen et al. 2023, "Accelerating Large Language Model Decoding with Speculative
Sampling").

A cheap *draft* model q proposes gamma tokens one at a time; the *target* p reads all of them in
one call (one forward pass gives gamma + 1 next-token distributions) and keeps the longest
prefix it agrees with, plus one token of its own. Each round therefore yields between 1 and
gamma + 1 tokens for one target call. Draft and target share the tokenizer; the draft can be any
``LanguageModel`` (a small gpt, or an n-gram: statistical drafting for a neural target).

Acceptance, for proposal x_j drawn from q_j with the target's p_j (both after the sampler's
processors, e.g. temperature):

- greedy: keep x_j iff x_j = argmax p_j; the first mismatch is replaced by argmax p_j. The output
  is exactly the target's greedy output (``generate`` with ``SamplingConfig(temperature=0)``).
- sampling (Leviathan et al., Algorithm 1; Chen et al., Algorithm 2): keep x_j with probability
  min(1, p_j(x_j) / q_j(x_j)); at the first rejection draw the replacement from the residual
  norm(max(0, p_j - q_j)); if all gamma are kept, draw a bonus token from p_{gamma+1}. Every
  emitted token is then distributed exactly as p (Leviathan et al., Theorem 1 / Appendix A.1).

States are never modified by a call (``lmbench.core.interface``), so on a rejection the target
simply returns to the state it had before the verifying call and re-reads the accepted tokens
with the next call (generic, no extra call). Fast path: a target that ``RollsBackState`` (gpt
and moe cut their KV cache) and whose state covers exactly the ids read is cut back to the
accepted prefix instead. The draft keeps its state after each proposal
and resumes from the one matching the accepted prefix.

Past a windowed target's ``max_window`` the target is read the way gpt and moe read themselves
there: each next-token distribution from the last ``max_window`` ids, recomputed without a cache;
the gamma + 1 windows of a round go through the model as one batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, RollsBackState, State
from lmbench.inference.sampling import Sampler, SamplingConfig, as_sampler


@dataclass(frozen=True)
class SpeculativeStats:
    """What one ``speculative_generate`` call did."""

    acceptance_rate: float  # accepted / drafted proposals (nan when nothing was drafted)
    n_target_calls: int  # model.logits calls on the target (one per round, two past a window)
    n_draft_calls: int
    n_rounds: int  # draft-then-verify rounds
    n_drafted: int  # proposals made by the draft
    n_accepted: int  # proposals kept by the target
    n_new_tokens: int
    n_target_ids_read: int  # ids the target read, re-read ones included
    wall_s: float

    @property
    def tokens_per_round(self) -> float:
        return self.n_new_tokens / max(self.n_rounds, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_round": self.tokens_per_round}


class _Reader:
    """A model, the state it continues from, and how many ids of the sequence that state read."""

    def __init__(self, model: LanguageModel) -> None:
        self.model, self.state, self.covered = model, None, 0
        self.n_calls, self.n_read = 0, 0

    def _call(self, ids: list[list[int]], state: State) -> tuple[torch.Tensor, State]:
        self.n_calls += 1
        self.n_read += sum(len(row) for row in ids)
        logits, state = self.model.logits(torch.tensor(ids, dtype=torch.long), state)
        return logits.cpu(), state  # drafts are drawn and tested on the CPU, on any device

    def next_scores(self, sequence: list[int], n_rows: int) -> torch.Tensor:
        """(n_rows, V) next-token scores after each of the last ``n_rows`` prefixes of
        ``sequence`` (the last being ``sequence`` itself), continuing the state."""
        window = self.model.capabilities.max_window
        if window is None or len(sequence) <= window:
            logits, self.state = self._call([sequence[self.covered:]], self.state)
            self.covered = len(sequence)
            return logits[0, -n_rows:]
        # Past the window: each prefix's last `window` ids, without a cache.
        self.state, self.covered = None, 0
        ends = range(len(sequence) - n_rows + 1, len(sequence) + 1)
        short = [end for end in ends if end <= window]  # all read by one call over the start
        rows = []
        if short:
            logits, _ = self._call([sequence[:window]], None)
            rows += [logits[0, end - 1] for end in short]
        full = [sequence[end - window:end] for end in ends if end > window]
        if full:
            logits, _ = self._call(full, None)  # (n_full, window, V)
            rows += list(logits[:, -1])
        return torch.stack(rows)

    def rollback(self, keep: int, saved: tuple[State, int]) -> None:
        """Make the state cover exactly the first ``keep`` ids (``keep`` <= covered)."""
        model, state = self.model, self.state
        if isinstance(model, RollsBackState) and model.state_length(state) == self.covered:
            self.state = model.rollback_state(state, keep)  # fast path: cut it
            self.covered = keep
        else:  # generic: back to before the call; the accepted ids are read again next time
            self.state, self.covered = saved


def _processed(sampler: Sampler, ids: list[int], scores: torch.Tensor) -> torch.Tensor:
    """(V,) scores after the sampler's processors, which see the ids read so far."""
    if not sampler.processors:
        return scores
    return sampler.process(torch.tensor([ids], dtype=torch.long), scores[None])[0]


def speculative_generate(target: LanguageModel, draft: LanguageModel, prompt_ids: Sequence[int],
                         max_new_tokens: int, gamma: int = 4, *,
                         sampler: Sampler | SamplingConfig | None = None, seed: int = 0,
                         stop_ids: Sequence[int] = ()) -> tuple[list[int], SpeculativeStats]:
    """Continue ``prompt_ids`` (boundary prepended) by up to ``max_new_tokens`` target tokens.

    Args:
        target: the model whose output (greedy) or distribution (sampling) is reproduced.
        draft: a cheaper model with the same tokenizer; it proposes ``gamma`` tokens a round.
        prompt_ids: the prompt in the shared token ids (may be empty).
        max_new_tokens: how many ids to generate (fewer if a stop id comes).
        gamma: proposals per round (>= 1).
        sampler: default greedy (``SamplingConfig(temperature=0)``); a sampling ``Sampler`` or
            ``SamplingConfig`` applies its processors to both models' scores.
        seed: seeds this call's ``torch.Generator`` (draws, acceptance tests, resampling).
        stop_ids: ids that end generation; the stop id is included in the output.

    Returns:
        The new ids and the call's ``SpeculativeStats``.
    """
    if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 1:
        raise LmbenchError(f"gamma must be an integer >= 1, got {gamma!r}")
    if max_new_tokens < 0:
        raise LmbenchError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    t_tok, d_tok = target.tokenizer, draft.tokenizer
    if (t_tok.vocab_size, t_tok.boundary_id) != (d_tok.vocab_size, d_tok.boundary_id):
        raise LmbenchError("the draft must share the target's tokenizer (vocabulary of "
                           f"{t_tok.vocab_size}, got {d_tok.vocab_size})")
    sampler = Sampler(greedy=True) if sampler is None else as_sampler(sampler)
    generator = torch.Generator().manual_seed(seed)
    stop = set(stop_ids)
    context = [t_tok.boundary_id, *prompt_ids]  # every id read so far
    n_prompt = len(context)
    target_reader, draft_reader = _Reader(target), _Reader(draft)
    n_rounds = n_drafted = n_accepted = 0
    started = time.perf_counter()
    with torch.inference_mode():
        while len(context) - n_prompt < max_new_tokens:
            k = min(gamma, max_new_tokens - (len(context) - n_prompt) - 1)
            # 1. The draft proposes k ids, one call each; its state after each is kept.
            proposals: list[int] = []
            draft_probs, draft_saves = [], []
            for _ in range(k):
                scores = _processed(sampler, context + proposals,
                                    draft_reader.next_scores(context + proposals, 1)[0])
                draft_saves.append((draft_reader.state, draft_reader.covered))
                if sampler.greedy:
                    proposals.append(int(scores.argmax()))
                else:
                    probs = torch.softmax(scores.double(), dim=-1)  # (V,)
                    proposals.append(int(torch.multinomial(probs, 1, generator=generator)))
                    draft_probs.append(probs)
            # 2. The target reads them in one call: k + 1 next-token distributions.
            saved = (target_reader.state, target_reader.covered)
            target_scores = target_reader.next_scores(context + proposals, k + 1)  # (k+1, V)
            n_ok, extra = 0, None
            for j in range(k + 1):
                scores = _processed(sampler, context + proposals[:j], target_scores[j])
                if sampler.greedy:
                    choice = int(scores.argmax())
                    if j < k and proposals[j] == choice:
                        n_ok += 1
                        continue
                    extra = choice  # the target's own token: a correction, or the bonus
                    break
                probs = torch.softmax(scores.double(), dim=-1)
                if j == k:  # every proposal kept: a bonus token from p_{k+1}
                    extra = int(torch.multinomial(probs, 1, generator=generator))
                    break
                x, q = proposals[j], draft_probs[j]
                draw = float(torch.rand((), generator=generator, dtype=torch.float64))
                if draw * q[x] < probs[x]:  # accepted with probability min(1, p(x) / q(x))
                    n_ok += 1
                    continue
                residual = (probs - q).clamp(min=0.0)
                total = float(residual.sum())
                residual = residual / total if total > 0 else probs
                extra = int(torch.multinomial(residual, 1, generator=generator))
                break
            n_rounds, n_drafted, n_accepted = n_rounds + 1, n_drafted + k, n_accepted + n_ok
            # 3. States back to the accepted prefix (the extra token is read next round).
            if n_ok < k:
                target_reader.rollback(len(context) + n_ok, saved)
            if k:
                draft_reader.state, draft_reader.covered = draft_saves[min(n_ok, k - 1)]
            new = [*proposals[:n_ok], extra]
            cut = next((i + 1 for i, token in enumerate(new) if token in stop), len(new))
            context += new[:cut]
            if cut < len(new) or new[cut - 1] in stop:
                break
    ids = context[n_prompt:]
    stats = SpeculativeStats(
        acceptance_rate=n_accepted / n_drafted if n_drafted else float("nan"),
        n_target_calls=target_reader.n_calls, n_draft_calls=draft_reader.n_calls,
        n_rounds=n_rounds, n_drafted=n_drafted, n_accepted=n_accepted, n_new_tokens=len(ids),
        n_target_ids_read=target_reader.n_read, wall_s=time.perf_counter() - started)
    return ids, stats
