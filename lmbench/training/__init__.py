"""Training: one trainer for every torch family, the objectives it optimises and the batches it
reads, and distillation (a student trained against a teacher through the same trainer).
"""
