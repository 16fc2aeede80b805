"""The contract every layer builds on: the ``LanguageModel`` interface and its declared optional
abilities, the registry, errors, tokenizers, typed results, option validation and the one
atomic file writer. Nothing here imports a model family."""
