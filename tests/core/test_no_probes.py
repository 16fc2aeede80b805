"""Generic code asks for an optional ability with ``isinstance(model, <Ability>)``
(``lmbench.core.interface``) and never names a family or its private attributes.

Every module of ``lmbench`` outside ``lmbench/models/`` is parsed (``ast``) and checked for:

- ``getattr`` / ``hasattr`` with a constant attribute name that is a family's private attribute
  or an optional ability (``getattr(model, "net")``, ``hasattr(student, "training_loss")``), or
  with any constant name on a model, tokenizer or corpus (``getattr(corpus, "name", None)``);
- ``x.net``, ``x.config_``, ``x.train_log_``, ``x.fitted_``, ``x._network`` on anything but
  ``self`` (a class may use its own attributes; the interpolation and adapter families live
  outside ``lmbench/models`` and use theirs);
- an import of a family module or of a class defined in one (``GPTLM``, ``KVCache``, ...);
- ``except NotImplementedError`` (the probe for an undeclared ability), except where torch
  itself raises it for storage-less tensors (``ALLOWED_NOT_IMPLEMENTED``).

``argparse`` namespaces, dataclass field loops and foreign objects (a ``transformers``
tokenizer's ``name_or_path``) are not models and stay allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "lmbench"
MODELS_DIR = PACKAGE / "models"

# Private attributes of the families and the optional abilities of lmbench.core.interface.
PRIVATE_ATTRIBUTES = {"net", "config_", "train_log_", "fitted_", "_network"}
ABILITY_ATTRIBUTES = {"embed", "flops_per_token", "select_state", "training_loss", "network",
                      "forward_logits", "state_length", "rollback_state", "family",
                      "forward_hidden", "logits_from_hidden", "hidden_size", "adaptable_weights",
                      "adapter_sublayers", "default_adapted_roles"}
FORBIDDEN_PROBE_NAMES = PRIVATE_ATTRIBUTES | ABILITY_ATTRIBUTES
# Variables that hold a model, a tokenizer or a corpus (any constant getattr on them is a probe).
MODEL_LIKE_NAMES = {"model", "tokenizer", "corpus", "inner", "student", "teacher", "target",
                    "draft", "judge", "trained", "fitted"}
MODEL_LIKE_ATTRIBUTES = {"tokenizer", "inner", "model"}
# Modules of lmbench/models that generic code may import: the catalog and shared layers.
SHARED_MODEL_MODULES = {"lmbench.models", "lmbench.models.catalog", "lmbench.models.layers"}
# The trainer is being rewritten elsewhere (onto ``Trainable.network()`` and the declared
# abilities); these are its probes until then. Remove each entry when that work lands.
ALLOWED_NOT_IMPLEMENTED = {  # (module, function): why
    ("evaluation/resources.py", "_address"): "torch: quantized tensors have no untyped storage",
    ("evaluation/resources.py", "_storage_bytes"): "torch: as above",
}


def _family_class_names() -> set[str]:
    """Every class defined in a family module of ``lmbench/models``."""
    names = set()
    for path in MODELS_DIR.glob("*.py"):
        if f"lmbench.models.{path.stem}" in SHARED_MODEL_MODULES or path.stem == "__init__":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    return names


FAMILY_CLASSES = _family_class_names()


def _generic_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if MODELS_DIR not in p.parents)


def _is_model_like(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in MODEL_LIKE_NAMES
    return isinstance(node, ast.Attribute) and node.attr in MODEL_LIKE_ATTRIBUTES


def _catches_not_implemented(handler: ast.ExceptHandler) -> bool:
    caught = handler.type
    names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
    return any(isinstance(n, ast.Name) and n.id == "NotImplementedError" for n in names)


def probes_in(source: str, relative: str) -> list[tuple[int, str]]:
    """The probes of the module ``relative`` (to ``lmbench/``) whose text is ``source``, as
    (line, the offending code)."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    functions = {}  # node -> the name of the innermost enclosing function
    for outer in ast.walk(tree):
        if isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(outer):
                functions[inner] = outer.name  # walked outer-first: the innermost wins
    for node in ast.walk(tree):
        where = getattr(node, "lineno", 0)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            name = node.args[1].value
            if name in FORBIDDEN_PROBE_NAMES or _is_model_like(node.args[0]):
                found.append((where, ast.unparse(node)))
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.append((where, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            family_module = (node.module.startswith("lmbench.models.")
                             and node.module not in SHARED_MODEL_MODULES)
            named = [a.name for a in node.names if a.name in FAMILY_CLASSES]
            if family_module or (node.module.startswith("lmbench.models") and named):
                names = ", ".join(a.name for a in node.names)
                found.append((where, f"from {node.module} import {names}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if (alias.name.startswith("lmbench.models.")
                        and alias.name not in SHARED_MODEL_MODULES):
                    found.append((where, f"import {alias.name}"))
        elif isinstance(node, ast.ExceptHandler) and node.type and _catches_not_implemented(node):
            if (relative, functions.get(node)) not in ALLOWED_NOT_IMPLEMENTED:
                found.append((where, f"except {ast.unparse(node.type)}"))
    return found


def test_no_module_outside_the_models_probes_for_an_ability():
    found = []
    for path in _generic_modules():
        relative = path.relative_to(PACKAGE).as_posix()
        found += [f"{relative}:{line}: {code}"
                  for line, code in probes_in(path.read_text(encoding="utf-8"), relative)]
    assert not found, "probes outside lmbench/models (use lmbench.core.interface's abilities):\n" \
        + "\n".join(found)


@pytest.mark.parametrize("source", [
    'x = getattr(model, "net", None)',
    'ok = hasattr(student, "training_loss")',
    'name = getattr(corpus, "name", "ids")',
    'fitted = getattr(model.tokenizer, "fitted_", False)',
    "net = self.inner.net",
    "train = model.config_.train",
    "from lmbench.models.gpt import KVCache",
    "from lmbench.models.ngram import NGramLM",
    "import lmbench.models.rnn",
    "try:\n    f()\nexcept NotImplementedError:\n    pass",
    "try:\n    f()\nexcept (ValueError, NotImplementedError):\n    pass",
])
def test_each_kind_of_probe_is_caught(source):
    assert probes_in(source, "inference/example.py")


@pytest.mark.parametrize("source", [
    "value = getattr(args, name)",
    "values = {f.name: getattr(self.config, f.name) for f in fields(self.config)}",
    "label = getattr(hf_tokenizer, 'name_or_path', '')",
    "weights = self.config_.weights",
    "from lmbench.models.catalog import build_model",
    "from lmbench.models.layers import attention",
    "from lmbench.core.interface import Embeds",
])
def test_legitimate_uses_are_not_flagged(source):
    assert probes_in(source, "inference/example.py") == []


def test_the_allowed_torch_probe_is_only_allowed_where_it_is_listed():
    source = ("def _address(t):\n    try:\n        f()\n"
              "    except NotImplementedError:\n        pass")
    assert probes_in(source, "evaluation/resources.py") == []
    assert probes_in(source, "evaluation/other.py")
