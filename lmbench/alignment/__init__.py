"""Post-training: supervised fine-tuning, reward models, preference optimisation and RL."""
