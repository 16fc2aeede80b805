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


def test_undertrained_runs_are_named_with_the_reason():
    import dataclasses

    from run_factory import fake_run

    from lmbench.core.results import RunResult, undertrained_reason

    train = {"warmup_steps": 50, "max_steps": 1000, "max_seconds": 45.0}
    short = {"steps": 22, "stopped_by": "max_seconds"}
    assert "22 steps, fewer than its 50 warm-up steps" in undertrained_reason(short, train)
    cut = {"steps": 300, "stopped_by": "max_seconds"}
    assert "at 300 of its 1000 steps (30%)" in undertrained_reason(cut, train)
    assert undertrained_reason({"steps": 600, "stopped_by": "max_seconds"}, train) is None
    assert undertrained_reason({"steps": 300, "stopped_by": "patience"}, train) is None
    ladder = {**train, "max_steps": 100_000}  # an equal-time ladder: no step target
    assert undertrained_reason({"steps": 3000, "stopped_by": "max_seconds"}, ladder) is None
    assert undertrained_reason(None, train) is None  # n-grams do not train iteratively
    record = dataclasses.replace(fake_run("r"), config={"tokenizer": "word", "train": train},
                                 train_log=short)
    data = json.loads(json.dumps(record.to_dict()))
    assert data["undertrained"] == record.undertrained and record.undertrained
    assert RunResult.from_dict(data) == record  # the derived field reads back


def test_adapted_runs_carry_their_base_and_method_and_old_records_still_load():
    import dataclasses

    import pytest
    from run_factory import fake_run

    from lmbench.core.results import AdaptationResult, RunResult

    plain = fake_run("r")
    data = json.loads(json.dumps(plain.to_dict()))
    assert "adaptation" not in data  # records of other runs are written as before
    assert RunResult.from_dict(data) == plain and plain.adaptation is None
    adaptation = AdaptationResult("runs/base/model.npz", "ab" * 32, "lora",
                                  {"rank": 8, "targets": ["attn.qkv"]}, 4096, 1_000_000, 20_480)
    adapted = dataclasses.replace(plain, adaptation=adaptation)
    data = json.loads(json.dumps(adapted.to_dict()))
    assert data["adaptation"]["trainable_fraction"] == pytest.approx(0.004096)
    assert RunResult.from_dict(data) == adapted
    data["adaptation"]["n_trainable"] = "many"
    with pytest.raises(ValueError, match="adaptation: 'n_trainable' has the wrong type"):
        RunResult.from_dict(data)
