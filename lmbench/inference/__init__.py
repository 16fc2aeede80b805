"""Inference: logits processors and sampling, beam search and best-of-N, and the speedups
(prefix cache, attention backends, speculative decoding, quantization).
"""
