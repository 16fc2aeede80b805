"""The ``lmbench`` command line: one module per group of commands; ``main.py`` builds the parser.

Building the parser imports no torch, numpy or matplotlib (``lmbench --help`` starts fast);
each command imports what it needs when it runs.
"""

# The help of every argument that names a model or a run (lmbench.storage.references)
MODEL_REFERENCE = ("a saved model: model.npz or .arpa, a run folder, or a run id or label "
                   "within --results")
RUN_REFERENCE = "a run: its folder or result.json, or a run id or label within --results"
RESULTS_HELP = ("results folder (lmbench run --out) in which to look run ids and labels up "
                "(default: none)")
