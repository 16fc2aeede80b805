"""Inference speedups, each a function of a model that leaves the model unchanged.

Output-preserving (tested against the plain path): ``prefix_cache`` (the state of a shared prompt
prefix computed once), the attention backends (``lmbench.models.layers.attention_backend``;
timed by ``attention``), ``speculative`` decoding. Approximations (their quality cost is measured
next to the gain): ``quantize`` (int8 dynamic, bf16 weights), ``distill`` (a student trained on a
teacher's soft targets).
"""
