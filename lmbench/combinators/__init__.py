"""Models built from other models: ``interpolation`` (a linear mixture with EM weights).
"""
