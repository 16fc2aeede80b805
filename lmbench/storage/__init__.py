"""The results store: one immutable ``result.json`` per run, sidecars beside it, a SQLite index
rebuilt from the records.
"""
