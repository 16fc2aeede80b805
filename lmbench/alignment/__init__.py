"""Post-training on lmbench's own interface: reward models, DPO / IPO, PPO, GRPO, best-of-N.

One implementation for every torch family: the policy is any ``LanguageModel`` that is
``Trainable`` (a PEFT-adapted model included: only its trainable parameters are optimised), and
everything reads log-probabilities through ``Trainable.forward_logits``. Each module cites its
paper; the equations are in ``lmbench.alignment.losses``.

API (import from the modules)::

    from lmbench.alignment.reference import frozen_copy, check_reference
    reference = frozen_copy(sft_model)                # the frozen pi_ref (eval mode, no grads)

    # reward model (reward.py): a scalar head on the last hidden state (ComputesHidden)
    from lmbench.alignment.reward import RewardConfig, train_reward_model, pairwise_accuracy
    rm = train_reward_model(base_model, train_pairs, RewardConfig(margin=0.0), train=TrainConfig(
        max_steps=200, batch_size=16, learning_rate=1e-3, warmup_steps=10, progress=False))
    pairwise_accuracy(rm, held_out_pairs)             # fraction with r(chosen) > r(rejected)
    rm.save("rm.npz"); RewardModel.load("rm.npz")     # the npz names its base model
    reward_fn = rm.reward_function(policy)            # one-line error if tokenizers differ

    # DPO / IPO (dpo.py) through lmbench.training.trainer.train on PreferencePairs
    from lmbench.alignment.dpo import DPOConfig, train_dpo
    log = train_dpo(policy, pairs, DPOConfig(beta=0.1, loss="sigmoid"), reference=reference,
                    train=TrainConfig(...))           # -> TrainLog; policy trained in place

    # rollouts and rewards (rollout.py)
    from lmbench.alignment.rollout import Completion, verifier_reward, RolloutConfig
    reward_fn = verifier_reward(lambda prompt, text: float(text.strip() == answer(prompt)))
    # a reward function maps Sequence[Completion] -> Sequence[float]; Completion has prompt,
    # prompt_ids, ids (new ids), text (decoded new ids)

    # GRPO (grpo.py) and PPO (ppo.py): the policy trained in place, a TrainLog returned whose
    # curve has per-step metrics reward, kl_nats (Monte Carlo KL(pi || pi_ref)), entropy_nats
    from lmbench.alignment.grpo import GRPOConfig, train_grpo
    log = train_grpo(policy, prompts, reward_fn, GRPOConfig(group_size=8, kl_coef=0.04,
                     steps=100), reference=reference, checkpoint_dir=None)
    from lmbench.alignment.ppo import PPOConfig, train_ppo   # value head: ComputesHidden
    log = train_ppo(policy, prompts, reward_fn, PPOConfig(kl_coef=0.05, steps=100), ...)

    # best-of-N (best_of_n.py) with the analytic KL log N - (N - 1)/N
    from lmbench.alignment.best_of_n import best_of_n
    result = best_of_n(policy, prompts, reward_fn, n=16, max_new_tokens=20, seed=0)
    result.best, result.rewards, result.kl_nats, result.at(4)   # best of the first 4 draws

Errors (one ``LmbenchError`` line each): a reference that is not frozen or has another
vocabulary, a reward model whose tokenizer differs from the policy's, kl_coef < 0, group_size
< 2; a diverging RL run (a non-finite loss, or KL above ``max_kl_nats``) raises
``TrainingDiverged`` naming the step, after putting back the last good weights (and writing
them to ``checkpoint_dir``).
"""
