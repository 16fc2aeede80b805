"""The frozen reference pi_ref of KL-regularised alignment, and the checks where models meet.

DPO (Rafailov et al. 2023 eq. 7), PPO with a per-token KL penalty (Ziegler et al. 2019 eq. 2)
and GRPO's KL term (Shao et al. 2024 eq. 3) all compare the policy with a reference that does
not move: usually the SFT model before optimisation. ``frozen_copy`` makes one; every trainer
calls ``check_reference`` first, so a reference that would train along (a parameter with
``requires_grad``), or that reads another vocabulary (its log-probabilities would be of other
tokens), is a one-line error before any step. A reference may be any ``LanguageModel`` sharing
the policy's tokenizer (an n-gram model too): its log-probabilities come from the interface's
``token_logprobs`` under ``torch.inference_mode``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.interface import LanguageModel, Trainable
from lmbench.data.examples import PreferencePair


def frozen_copy(model: LanguageModel) -> LanguageModel:
    """A deep copy of ``model`` whose network (if any) is in eval mode with no parameter
    requiring gradients: the reference pi_ref (or the base of a reward model's comparison)."""
    frozen = copy.deepcopy(model)
    if isinstance(frozen, Trainable):
        network = frozen.network()
        network.eval()
        network.requires_grad_(False)
    return frozen


def check_same_tokenizer(a: LanguageModel, b: LanguageModel, what_a: str, what_b: str) -> None:
    """A one-line error unless ``a`` and ``b`` have the same token strings (same ids)."""
    if a.tokenizer.token_strings() != b.tokenizer.token_strings():
        raise LmbenchError(f"the {what_a}'s tokenizer differs from the {what_b}'s "
                           f"({a.tokenizer.vocab_size:,} and {b.tokenizer.vocab_size:,} tokens); "
                           f"they must share one vocabulary")


def check_reference(policy: LanguageModel, reference: LanguageModel) -> None:
    """A one-line error unless ``reference`` is frozen and shares ``policy``'s vocabulary."""
    if reference is policy:
        raise LmbenchError("the reference model is the policy itself, so it would train along; "
                           "pass lmbench.alignment.reference.frozen_copy(policy)")
    if isinstance(reference, Trainable) and any(
            p.requires_grad for p in reference.network().parameters()):
        raise LmbenchError("the reference model is not frozen (a parameter requires grad); pass "
                           "lmbench.alignment.reference.frozen_copy(model)")
    check_same_tokenizer(reference, policy, "reference model", "policy")


def check_pairs(pairs: Sequence[PreferencePair], what: str) -> None:
    """A one-line error if ``pairs`` is empty, holds something else, or a pair's chosen and
    rejected responses are equal (it carries no preference)."""
    if not pairs:
        raise LmbenchError(f"{what} needs at least one preference pair")
    for index, pair in enumerate(pairs):
        if not isinstance(pair, PreferencePair):
            raise LmbenchError(f"{what}: example {index} is a {type(pair).__name__}, not a "
                               "PreferencePair (prompt, chosen, rejected)")
        if pair.chosen == pair.rejected:
            raise LmbenchError(f"{what}: pair {index} has chosen == rejected (field 'rejected' "
                               "must differ from 'chosen')")


def reference_logprobs(reference: LanguageModel, input_ids: torch.Tensor,
                       target_ids: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, T) float32 log pi_ref of the targets (0 at ignored targets) on ``device``, a plain
    tensor usable in autograd expressions (no gradient flows into the reference)."""
    logprobs, _ = reference.token_logprobs(input_ids, target_ids)  # (B, T) float64
    return logprobs.to(device=device, dtype=torch.float32).clone()
