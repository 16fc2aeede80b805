"""Run files and the runner: a TOML run file (``config.py``) names a corpus and models;
``runner.py`` fits, scores and records each one in the results store.
"""
