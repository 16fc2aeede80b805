"""Models built from other models: ``interpolation`` (a linear mixture with EM weights) and
``ngram_adaptation`` (an n-gram moved to a target domain by interpolation or count merging).
"""
