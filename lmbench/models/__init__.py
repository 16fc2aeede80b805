"""Model families, one per file; ``catalog.py`` lists them.

``MODELS``, ``build_model`` and ``load_model`` are re-exported from ``lmbench.models.catalog``;
importing this package imports no family (the catalog imports each on first use).
"""

from lmbench.models.catalog import MODELS, build_model, config_class_of, load_model

__all__ = ["MODELS", "build_model", "config_class_of", "load_model"]
