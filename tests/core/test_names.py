"""Names that become paths: refused when they could leave a folder, else mapped to a safe,
deterministic, distinct folder name; paths are kept inside the output folder."""

from __future__ import annotations

import os

import pytest

from lmbench.core.errors import LmbenchError
from lmbench.core.names import (
    MAX_NAME_LEN,
    SAFE_NAME,
    check_name,
    contained,
    new_run_id,
    safe_name,
)


@pytest.mark.parametrize("name, message", [
    ("x/../../elsewhere", "path separator"),
    ("a\\b", "path separator"),
    ("..", "'..'"),
    ("up..", "'..'"),
    ("tab\there", "control character"),
    ("new\nline", "control character"),
    ("", "empty"),
    ("   ", "empty"),
])
def test_names_that_could_leave_a_folder_are_refused(name, message):
    with pytest.raises(LmbenchError) as error:
        check_name(name, "label")
    assert message in str(error.value) and "label" in str(error.value)
    assert "\n" not in str(error.value).replace(repr(name), "")


@pytest.mark.parametrize("name", ["kn5", "gpt-n_layer=4", "brown", "a.b+c"])
def test_safe_names_are_kept(name):
    assert safe_name(name) == name


def test_other_names_map_deterministically_to_distinct_safe_folders():
    mapped = {name: safe_name(name) for name in
              ["gpt-naïve", "my corpus", "my_corpus", "日本語", ".hidden", "-x", "x" * 300]}
    for name, folder in mapped.items():
        assert SAFE_NAME.fullmatch(folder) and len(folder) <= MAX_NAME_LEN, (name, folder)
        assert safe_name(name) == folder  # deterministic
    assert mapped["gpt-naïve"].startswith("gpt-naive-")
    assert mapped["my corpus"].startswith("my_corpus-") and mapped["my_corpus"] == "my_corpus"
    assert len(set(mapped.values())) == len(mapped)  # distinct names, distinct folders


def test_run_ids_of_unusual_names_are_safe_folder_names():
    run_id = new_run_id("my corpus", "gpt-naïve")
    assert SAFE_NAME.fullmatch(run_id) and run_id.startswith("my_corpus-")


def test_contained_refuses_paths_outside_the_root(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    assert contained(root, "checkpoints", "brown-kn5") == root / "checkpoints" / "brown-kn5"
    with pytest.raises(LmbenchError, match="outside the output folder"):
        contained(root, "checkpoints", "brown-x/../../../elsewhere")
    os.symlink(tmp_path, root / "link")
    with pytest.raises(LmbenchError, match="outside the output folder"):
        contained(root, "link", "model.npz")
