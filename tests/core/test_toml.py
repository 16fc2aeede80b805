"""read_toml: every way a TOML file can be wrong is one line naming the file and the fault."""

import pytest

from lmbench.core.errors import LmbenchError
from lmbench.core.toml import read_toml


def test_reads_a_table(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('corpus = "brown"\n[eval]\nwindow_len = 64\n', encoding="utf-8")
    assert read_toml(path, "config") == {"corpus": "brown", "eval": {"window_len": 64}}


@pytest.mark.parametrize("write, message", [
    (None, "run.toml: config file not found"),
    (lambda p: p.mkdir(), "run.toml: is a folder, not a config file"),
    (lambda p: p.write_bytes(b"corpus = '\xff'\n"), "run.toml: not UTF-8 text"),
    (lambda p: p.write_text("corpus = \n"), "run.toml: not valid TOML (Invalid value"),
])
def test_each_fault_is_one_line_naming_the_file(tmp_path, write, message):
    path = tmp_path / "run.toml"
    if write is not None:
        write(path)
    with pytest.raises(LmbenchError) as error:
        read_toml(path, "config")
    assert message in str(error.value) and "\n" not in str(error.value)
