"""The TOML parser every run, pipeline, task and reference file is read with: the standard
library's ``tomllib`` (Python 3.11+), or ``tomli``, the same parser as a package, on 3.10."""

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["tomllib"]
