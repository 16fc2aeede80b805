"""Post-training on lmbench's own interface: reward models, DPO / IPO, PPO, GRPO, best-of-N.

One implementation for every torch family: the policy is any ``LanguageModel`` that is
``Trainable`` (a PEFT-adapted model included: only its trainable parameters are optimised), and
everything reads log-probabilities through ``Trainable.forward_logits``. Each module cites its
paper; the equations are in ``lmbench.alignment.losses``.

API (import from the modules; every ``train_*`` trains its model in place and returns the
trainer's ``TrainLog``; ``train_config`` is a ``lmbench.training.trainer.TrainConfig``)::

    from lmbench.alignment.sft import train_sft
    log = train_sft(base, examples, train_config)      # Examples: loss on the response only

    from lmbench.alignment.reference import frozen_copy
    reference = frozen_copy(sft_model)                # pi_ref: eval mode, no grads

    # reward model (reward.py): a scalar head on the last hidden state (ComputesHidden)
    from lmbench.alignment.reward import (RewardConfig, RewardModel, pairwise_accuracy,
                                          train_reward_model)
    rm = train_reward_model(sft_model, train_pairs, RewardConfig(margin=0.0),
                            train_config=TrainConfig(max_steps=200, batch_size=16,
                                                     learning_rate=1e-3, progress=False))
    pairwise_accuracy(rm, held_out_pairs)             # r(chosen) > r(rejected); ties 1/2
    rm.score_texts(prompts, responses)                # (N,) tensor of rewards
    rm.save("rm.npz"); rm = RewardModel.load("rm.npz")  # the npz is also its base's file
    reward = rm.reward_function(policy)               # one-line error if tokenizers differ

    # DPO / IPO (dpo.py) through lmbench.training.trainer.train on PreferencePairs
    from lmbench.alignment.dpo import DPOConfig, train_dpo
    log = train_dpo(policy, pairs, DPOConfig(beta=0.1, loss="sigmoid"),  # or loss="ipo"
                    reference=reference, train_config=TrainConfig(...))

    # rollouts and rewards (rollout.py): a reward function maps Sequence[Completion] ->
    # Sequence[float]; a Completion has prompt, prompt_ids, ids (new ids), text, finished
    from lmbench.alignment.rollout import verifier_reward, sample_completions
    reward = verifier_reward(lambda prompt, text: float(text.strip() == answer(prompt)))

    # GRPO (grpo.py) and PPO (ppo.py): curve points carry metrics reward (mean raw reward),
    # kl_nats (Monte-Carlo KL(pi || pi_ref) per completion), entropy_nats, and their own
    from lmbench.alignment.grpo import GRPOConfig, train_grpo
    log = train_grpo(policy, prompts, reward, GRPOConfig(group_size=8, kl_coef=0.04,
                     steps=100, prompts_per_step=8, max_new_tokens=16, learning_rate=1e-4),
                     reference=reference, checkpoint_dir=None)
    from lmbench.alignment.ppo import PPOConfig, train_ppo   # value head: ComputesHidden
    log = train_ppo(policy, prompts, reward, PPOConfig(kl_coef=0.05, steps=100), ...)

    # best-of-N (best_of_n.py) with the analytic KL log N - (N - 1)/N
    from lmbench.alignment.best_of_n import best_of_n
    result = best_of_n(policy, prompts, reward, 16, max_new_tokens=20, seed=0)
    result.best, result.rewards, result.kl_nats, result.at(4), result.best_rewards(4)

    # a policy on fresh samples: mean rewards and Monte-Carlo KL to pi_ref (Gao et al.'s axes)
    from lmbench.alignment.measure import measure
    m = measure(policy, prompts, {"proxy": rm.reward_function(policy), "gold": gold},
                reference, group_size=4, max_new_tokens=20, seed=0)
    m.rewards["gold"], m.kl_nats, m.kl_stderr_nats, m.mean_length, m.completions

    # the loss functions themselves: lmbench.alignment.losses (monte_carlo_kl, best_of_n_kl,
    # bradley_terry_loss, dpo_loss, ipo_loss, ppo_*_loss, gae, grpo_advantages, grpo_loss, ...)

Errors (one ``LmbenchError`` line each): a reference that is not frozen or has another
vocabulary, a reward model whose tokenizer differs from the policy's, kl_coef < 0, group_size
< 2; a diverging RL run (a non-finite loss, or KL above ``max_kl_nats``) raises
``TrainingDiverged`` naming the step, after putting back the last good weights (and writing
them to ``checkpoint_dir``).
"""
