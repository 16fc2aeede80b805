"""Parameter-efficient fine-tuning: a method is a function from a fitted model to a model.

Each method (one module each) freezes a copy of the base and adds a few trainable weights where
the family says (its declared ``AdaptsLayers`` ability, ``lmbench.core.interface``); the result
is an ordinary ``LanguageModel`` (``AdaptedLM``: scoring, generation, bench and the base's
optional abilities all work unchanged) that trains through ``lmbench.training.trainer.train``
with only the new weights optimised:

- ``lora`` (Hu et al. 2021, eq. 3): ``LoRAConfig(rank, alpha, dropout, targets, init)``;
  ``merge`` / ``unmerge`` / ``merge_and_unload``.
- ``adapters`` (Houlsby et al. 2019, section 2.1): ``AdapterConfig(bottleneck,
  train_layer_norms)``.
- ``prompt`` (Lester et al. 2021): ``PromptTuningConfig(n_prompt_tokens, init, init_text)``, a
  soft prompt read before every stream (the family's ``StartsFromEmbeddings`` ability).
- ``prefix`` (Li & Liang 2021): ``PrefixTuningConfig(n_prefix_tokens, reparameterize,
  hidden)``, learned keys/values in every attention layer (``StartsFromKeyValues``); ``fold``
  drops the reparameterising MLP (``save`` writes the folded form).

The shape of the API (``docs/peft.md`` runs it as a test)::

    from lmbench import peft
    adapted = peft.adapt(base, peft.LoRAConfig(rank=8, targets=("q", "v")), train=config)
    adapted.fit(corpus, budget=Budget(max_steps=200))   # or peft.finetune(adapted, corpus)
    adapted.n_trainable(), adapted.trainable_fraction()
    fast = peft.merge(adapted)                           # = adapted, at the base's speed
    adapted.save("lora.npz")                             # the new weights and a manifest
    again = peft.load_adapter(base, "lora.npz")          # refuses another base
    peft.method_config("lora", {"rank": 4})              # from a run file's [peft] table
    peft.supported_methods()              # {"gpt": ("adapters", "lora", "prefix", "prompt"), ...}

``fit(corpus)`` of an adapted model fine-tunes in place (the ``LanguageModel`` contract, so a
run file's model trains like any other); ``finetune(adapted, corpus_or_ids)`` returns a trained
copy. Fine-tuning uses the ``train`` config given to ``adapt`` (default: the base's), the
family's own objective, and evaluates the starting point (the zero-shot loss) at step 0.
"""

from lmbench.peft.adapted import (
    METHODS,
    AdaptedLM,
    adapt,
    content_digest,
    finetune,
    load_adapter,
    method_config,
    save_adapter,
    supported_methods,
    supports,
)
from lmbench.peft.adapters import AdapterConfig, adapters
from lmbench.peft.lora import LoRAConfig, lora, merge, merge_and_unload, unmerge
from lmbench.peft.prefix_tuning import PrefixTuningConfig, fold, prefix_tuning
from lmbench.peft.prompt_tuning import PromptTuningConfig, prompt_tuning

__all__ = ["METHODS", "AdaptedLM", "AdapterConfig", "LoRAConfig", "PrefixTuningConfig",
           "PromptTuningConfig", "adapt", "adapters", "content_digest", "finetune", "fold",
           "load_adapter", "lora", "merge", "merge_and_unload", "method_config",
           "prefix_tuning", "prompt_tuning", "save_adapter", "supported_methods", "supports",
           "unmerge"]
