"""lmbench's losses against TRL's own code on identical tensors (where trl is installed).

TRL 1.16 has no free loss functions: the Bradley-Terry loss is inside
``RewardTrainer.compute_loss``, DPO / IPO inside ``DPOTrainer._compute_loss`` and GRPO's
per-token loss inside ``GRPOTrainer._compute_loss``. Each test builds the smallest trainer
object those methods read (``object.__new__`` and the attributes the method touches, a stand-in
accelerator that gathers nothing, a stand-in model returning the given tensors) and runs TRL's
method itself. GRPO's group advantages are a few lines inside ``_generate_and_score_completions``
(which samples with a real model): they are replicated here from that source with TRL's own
``nanstd``. TRL's ``robust`` loss is not cDPO's label smoothing (it divides by 1 - 2 eps), so
label smoothing is checked against the hand values only (test_losses.py).
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from lmbench.alignment import losses

trl = pytest.importorskip("trl", minversion="1.16")  # the trainer internals read here
from trl.trainer.dpo_trainer import DPOTrainer  # noqa: E402
from trl.trainer.grpo_trainer import GRPOTrainer  # noqa: E402
from trl.trainer.reward_trainer import RewardTrainer  # noqa: E402
from trl.trainer.utils import nanstd  # noqa: E402

_ACCELERATOR = SimpleNamespace(gather=lambda x: x, gather_for_metrics=lambda x: x,
                               reduce=lambda x, reduction="sum": x, device=torch.device("cpu"),
                               num_processes=1, sync_gradients=True)


class _Fixed(torch.nn.Module):
    """A stand-in model in eval mode whose forward returns the given outputs."""

    def __init__(self, **outputs) -> None:
        super().__init__()
        self.outputs = SimpleNamespace(**outputs)
        self.eval()

    def forward(self, **kwargs):
        return self.outputs


def _trainer(cls, model, **attributes):
    trainer = object.__new__(cls)
    trainer.__dict__.update(model=model, accelerator=_ACCELERATOR, _total_train_tokens=0,
                            _tp_size=1, _metrics=defaultdict(lambda: defaultdict(list)),
                            **attributes)
    return trainer


def test_bradley_terry_equals_trls_reward_trainer_loss():
    generator = torch.Generator().manual_seed(0)
    chosen, rejected = torch.randn(5, generator=generator), torch.randn(5, generator=generator)
    margin = torch.rand(5, generator=generator)
    model = _Fixed(logits=torch.cat([chosen, rejected])[:, None])  # (2B, 1)
    trainer = _trainer(RewardTrainer, model,
                       args=SimpleNamespace(center_rewards_coefficient=None))
    theirs = trainer.compute_loss(model, {"input_ids": torch.zeros(10, 3, dtype=torch.long)})
    assert losses.bradley_terry_loss(chosen, rejected).item() == pytest.approx(theirs.item(),
                                                                                rel=1e-6)
    theirs = trainer.compute_loss(model, {"input_ids": torch.zeros(10, 3, dtype=torch.long),
                                          "margin": margin})
    assert losses.bradley_terry_loss(chosen, rejected, margin).item() == pytest.approx(
        theirs.item(), rel=1e-6)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_and_ipo_equal_trls_dpo_trainer_loss(loss_type):
    generator = torch.Generator().manual_seed(1)
    B, L = 3, 6
    completion_mask = torch.zeros(2 * B, L, dtype=torch.long)
    for row, start in enumerate([2, 3, 1, 2, 4, 3]):  # prompts of different lengths
        completion_mask[row, start:] = 1
    shifted = completion_mask[:, 1:].bool()  # the targets' positions
    per_token = -torch.rand(2 * B, L - 1, generator=generator) * shifted  # (2B, L - 1)
    ref_per_token = -torch.rand(2 * B, L - 1, generator=generator) * shifted
    model = _Fixed(log_probs=per_token, entropy=torch.zeros(2 * B, L - 1),
                   mean_logits=torch.zeros(2 * B, L - 1),
                   is_top1=torch.zeros(2 * B, L - 1, dtype=torch.bool), aux_loss=None)
    beta = 0.3
    trainer = _trainer(DPOTrainer, model, aux_loss_enabled=False, ld_alpha=None,
                       precompute_ref_logps=True, f_divergence_type="reverse_kl",
                       loss_types=[loss_type], loss_weights=[1.0], beta=beta,
                       label_smoothing=0.0, use_weighting=False)
    ref = ref_per_token.sum(1)
    inputs = {"input_ids": torch.zeros(2 * B, L, dtype=torch.long),
              "completion_mask": completion_mask, "ref_chosen_logps": ref[:B],
              "ref_rejected_logps": ref[B:]}
    theirs = trainer._compute_loss(model, inputs, return_outputs=False)
    logratios = per_token.sum(1) - ref  # (2B,)
    if loss_type == "ipo":
        lengths = shifted.sum(1)
        ours = losses.ipo_loss(logratios[:B] / lengths[:B], logratios[B:] / lengths[B:], beta)
    else:
        ours = losses.dpo_loss(logratios[:B], logratios[B:], beta)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_and_advantages_equal_trls(beta):
    generator = torch.Generator().manual_seed(2)
    G, n_groups, T = 4, 2, 5
    N = G * n_groups
    rewards = torch.randn(N, generator=generator)
    grouped = rewards.view(-1, G)
    theirs_adv = (rewards - grouped.mean(1).repeat_interleave(G)) / (
        nanstd(grouped, dim=1).repeat_interleave(G) + 1e-4)
    advantages = losses.grpo_advantages(rewards, G)
    assert advantages.tolist() == pytest.approx(theirs_adv.tolist(), rel=1e-5)
    mask = torch.ones(N, T, dtype=torch.long)
    mask[0, 3:] = 0
    mask[5, 1:] = 0
    logps = -torch.rand(N, T, generator=generator)
    old = logps + 0.3 * torch.randn(N, T, generator=generator)  # ratios both sides of the clip
    ref = logps + 0.2 * torch.randn(N, T, generator=generator)
    trainer = _trainer(GRPOTrainer, _Fixed(), top_entropy_quantile=1.0,
                       off_policy_mask_threshold=None, importance_sampling_level="token",
                       beta=beta, loss_type="grpo", epsilon_low=0.2, epsilon_high=0.2,
                       use_vllm=False, current_gradient_accumulation_steps=1,
                       _entropy_bonus_enabled=False, aux_loss_enabled=False,
                       args=SimpleNamespace(use_bias_correction_kl=False, delta=None))
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (logps, torch.zeros(N, T), None)
    inputs = {"prompt_ids": torch.zeros(N, 2, dtype=torch.long),
              "prompt_mask": torch.ones(N, 2, dtype=torch.long),
              "completion_ids": torch.zeros(N, T, dtype=torch.long), "completion_mask": mask,
              "advantages": advantages, "old_per_token_logps": old,
              "ref_per_token_logps": ref}
    theirs = trainer._compute_loss(trainer.model, inputs)
    ours = losses.grpo_loss(logps, old, advantages, mask.bool(), 0.2, beta, ref)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
