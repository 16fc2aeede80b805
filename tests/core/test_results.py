"""Atomic writers of lmbench.core.results: whole files, and the permissions the umask allows."""

import json
import os

from lmbench.core.io import _UMASK, read_npz, write_json_atomic, write_npz_atomic


def test_json_is_written_whole_with_the_umask_permissions(tmp_path):
    path = tmp_path / "out" / "report.json"
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_UMASK  # not mkstemp's private 0600
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temporary left


def test_npz_round_trip_with_the_umask_permissions(tmp_path):
    path = tmp_path / "model.npz"
    write_npz_atomic(path, {"w": [1.0, 2.0]}, {"family": "x"})
    meta, arrays = read_npz(path, "a test file")
    assert meta == {"family": "x"} and list(arrays["w"]) == [1.0, 2.0]
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_UMASK
