"""The losses of preference learning and policy optimisation, as pure tensor functions.

No model, tokenizer or trainer here: log-probabilities, rewards and masks in, tensors out, so each
equation is tested against hand-computed values and against TRL's own code on identical tensors
(``tests/alignment/test_losses.py``). Notation: B sequences, T completion positions, ``mask``
(B, T) true at the completion's tokens (padding and prompt false); log-probabilities in nats.

- **Bradley-Terry** (Bradley & Terry 1952; the reward-model loss of Ouyang et al. 2022 eq. 1,
  with TRL's optional margin m (Touvron et al. 2023, Llama 2 eq. 2)):
  L = -mean log sigma(r(x, y_w) - r(x, y_l) - m).
- **DPO** (Rafailov et al. 2023 eq. 7), h = log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l):
  L = -mean log sigma(beta h); with label smoothing eps (conservative DPO, Mitchell 2023: the
  label is flipped with probability eps) L = -mean[(1 - eps) log sigma(beta h)
  + eps log sigma(-beta h)].
- **IPO** (Azar et al. 2023 eq. 17, tau = ``beta``): L = mean (h - 1/(2 beta))^2. The caller
  passes per-token mean log-ratios (TRL's normalisation, agreed with the IPO authors), so the
  loss does not scale with the completion's length.
- **PPO** (Schulman et al. 2017 eq. 7), ratio rho_t = exp(log pi - log pi_old):
  L^CLIP = -mean_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t); the value loss clipped
  as in OpenAI baselines' PPO2 and Ziegler et al. 2019:
  L^V = 1/2 mean_t max((V_t - R_t)^2, (V_old,t + clip(V_t - V_old,t, -c, c) - R_t)^2).
- **GAE** (Schulman et al. 2016 eq. 16), delta_t = r_t + gamma V_{t+1} - V_t,
  A_t = sum_l (gamma lambda)^l delta_{t+l}, returns R_t = A_t + V_t; V after the last token is 0.
- **KL-shaped reward** (Ziegler et al. 2019 eq. 2; Ouyang et al. 2022 eq. 2, per token as in
  their code): r_t = -beta (log pi(y_t) - log pi_ref(y_t)), plus the sequence's score at its last
  token.
- **GRPO** (Shao et al. 2024 eq. 3): advantages A_i = (r_i - mean(r_group)) / (std(r_group) +
  1e-4) (unbiased std, TRL's epsilon), the same for every token of completion i;
  L = mean_i 1/|o_i| sum_t [-min(rho A_i, clip(rho) A_i) + beta D_t] with the k3 estimator of
  Schulman (2020, "Approximating KL divergence"): D_t = pi_ref/pi - log(pi_ref/pi) - 1 >= 0.
- **Monte-Carlo KL** of samples y ~ pi: KL(pi || pi_ref) ~ mean_b sum_t (log pi - log pi_ref).
- **Best-of-N KL** (Stiennon et al. 2020 appendix; Gao et al. 2022 section 2.3, Beirami et al.
  2024 show it is an upper bound): KL(pi_BoN || pi) = log N - (N - 1)/N.
- **Entropy**: mean over completion tokens of -sum_v p_v log p_v.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lmbench.core.errors import LmbenchError

GRPO_STD_EPS = 1e-4  # TRL's epsilon under the group std


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the true positions of ``mask`` (a scalar; 0 if none)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       margin: torch.Tensor | float | None = None) -> torch.Tensor:
    """-mean log sigma(r_w - r_l - m) for (B,) rewards and an optional (B,) or scalar margin."""
    difference = chosen_rewards - rejected_rewards  # (B,)
    if margin is not None:
        difference = difference - margin
    return -F.logsigmoid(difference).mean()


def dpo_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float,
             label_smoothing: float = 0.0) -> torch.Tensor:
    """DPO's sigmoid loss (module docstring) for (B,) log pi/pi_ref of the chosen and the
    rejected responses, summed over their tokens; ``label_smoothing`` in [0, 0.5)."""
    h = chosen_logratios - rejected_logratios  # (B,)
    losses = -(1 - label_smoothing) * F.logsigmoid(beta * h)
    if label_smoothing:
        losses = losses - label_smoothing * F.logsigmoid(-beta * h)
    return losses.mean()


def ipo_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor,
             beta: float) -> torch.Tensor:
    """IPO's squared loss (module docstring) for (B,) per-token-mean log-ratios."""
    h = chosen_logratios - rejected_logratios  # (B,)
    return ((h - 1 / (2 * beta)) ** 2).mean()


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor,
                    advantages: torch.Tensor, mask: torch.Tensor,
                    clip_range: float) -> torch.Tensor:
    """PPO's clipped surrogate, negated (a loss), averaged over the (B, T) ``mask``'s tokens."""
    ratio = torch.exp(logprobs - old_logprobs)  # (B, T)
    clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    surrogate = torch.min(ratio * advantages, clipped * advantages)  # (B, T)
    return -_masked_mean(surrogate, mask)


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                   mask: torch.Tensor, clip_range_value: float) -> torch.Tensor:
    """The clipped value loss (module docstring) over the (B, T) ``mask``'s tokens."""
    clipped = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    worst = torch.max((values - returns) ** 2, (clipped - returns) ** 2)  # (B, T)
    return 0.5 * _masked_mean(worst, mask)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns of (B, T) per-token rewards and values.

    Args:
        rewards: (B, T) r_t.
        values: (B, T) V_t (detached).
        mask: (B, T) true at each sequence's tokens, a prefix of each row after its prompt:
            positions outside it get advantage 0 and do not carry values across.
        gamma: the discount.
        lam: GAE's lambda (1: Monte-Carlo returns, 0: one-step TD).

    Returns:
        (B, T) advantages and (B, T) returns R_t = A_t + V_t.
    """
    mask = mask.to(values.dtype)
    values, rewards = values * mask, rewards * mask
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])  # (B,)
    next_value = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
        next_value = values[:, t]
    return advantages, advantages + values


def kl_shaped_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                      mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """(B, T) per-token rewards: -kl_coef (log pi - log pi_ref) at each completion token, plus
    the (B,) ``scores`` at each row's last completion token (module docstring)."""
    if kl_coef < 0:
        raise LmbenchError(f"kl_coef must be >= 0, got {kl_coef}")
    mask = mask.to(logprobs.dtype)
    rewards = -kl_coef * (logprobs - ref_logprobs) * mask  # (B, T)
    positions = torch.arange(mask.shape[1], device=mask.device)  # (T,)
    last = (mask * positions).argmax(dim=1)  # (B,) the last true position
    return rewards.scatter_add(1, last[:, None], scores[:, None].to(rewards.dtype))


def grpo_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """(N,) rewards of N / G groups of ``group_size`` consecutive completions -> (N,) advantages
    (r - group mean), divided by (group std + 1e-4) when ``scale`` (module docstring)."""
    if group_size < 2:
        raise LmbenchError(f"grpo group_size must be >= 2 (a group-relative advantage needs two "
                           f"completions of a prompt), got {group_size}")
    if rewards.numel() % group_size:
        raise LmbenchError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size)  # (N / G, G)
    advantages = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        advantages = advantages / (grouped.std(dim=1, keepdim=True) + GRPO_STD_EPS)
    return advantages.reshape(-1)


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): exp(d) - d - 1, d = log pi_ref - log pi."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_range: float, kl_coef: float = 0.0,
              ref_logprobs: torch.Tensor | None = None) -> torch.Tensor:
    """GRPO's loss (Shao et al. eq. 3, module docstring) for (B, T) log-probabilities, (B,)
    advantages and the (B, T) completion mask; ``kl_coef`` 0 drops the KL term (and needs no
    ``ref_logprobs``)."""
    if kl_coef < 0:
        raise LmbenchError(f"kl_coef must be >= 0, got {kl_coef}")
    ratio = torch.exp(logprobs - old_logprobs)  # (B, T)
    clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    A = advantages[:, None]  # (B, 1)
    per_token = -torch.min(ratio * A, clipped * A)  # (B, T)
    if kl_coef:
        if ref_logprobs is None:
            raise LmbenchError("grpo with kl_coef > 0 needs the reference's log-probabilities")
        per_token = per_token + kl_coef * kl_k3(logprobs, ref_logprobs)
    mask = mask.to(per_token.dtype)
    return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


def monte_carlo_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) in nats per sequence, estimated from (B, T) log-probabilities of samples
    of pi: the mean over rows of sum_t (log pi - log pi_ref) (a scalar; unbiased, can be < 0)."""
    mask = mask.to(logprobs.dtype)
    return ((logprobs - ref_logprobs) * mask).sum(-1).mean()


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || pi) = log n - (n - 1) / n nats (module docstring)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LmbenchError(f"best-of-N needs an integer n >= 1, got {n!r}")
    return math.log(n) - (n - 1) / n


def entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token entropy (nats) of (B, T, V) logits over the (B, T) mask's positions."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    per_token = -(logprobs.exp() * logprobs).sum(-1)  # (B, T)
    return _masked_mean(per_token, mask)
