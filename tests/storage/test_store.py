"""The results store: immutable records, an index kept in step with the files, bad files
reported by name and skipped, and several processes writing at once."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
import sqlite3
from pathlib import Path

import pytest
from run_factory import fake_generation_report, fake_run, fake_throughput

from lmbench.cli.main import main
from lmbench.core.errors import LmbenchError
from lmbench.evaluation.generation_results import run_sidecar
from lmbench.reports.tables import leaderboard_table, markdown_report, published_table
from lmbench.storage.store import INDEX_NAME, ResultStore, read_run, write_sidecar

TODAY = Path(__file__).resolve().parent / "data" / "format_2026_12"  # lmbench at 6311315 wrote it


def test_put_then_records_round_trips_every_field(tmp_path):
    store = ResultStore(tmp_path)
    run = fake_run("tiny-a-1", generation={"samples": [{"prompt": "p", "text": "t"}],
                                           "metrics": {"distinct_2": 0.5}},
                   curve=[{"step": 1, "seconds": 0.1, "train_loss": 3.0, "valid_loss": 2.9}])
    path = store.put(run)
    assert path == tmp_path / "tiny-a-1" / "result.json"
    assert path.stat().st_mode & 0o044  # readable by others, as ordinary files are
    (same,) = store.records()
    assert same == run
    assert store.get("tiny-a-1") == run
    assert store.problems() == []
    with sqlite3.connect(tmp_path / INDEX_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT split, n_tokens FROM metrics").fetchall() == [("test", 4096)]


def test_records_are_immutable(tmp_path):
    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-a-1"))
    with pytest.raises(LmbenchError, match="immutable"):
        store.put(fake_run("tiny-a-1", nats_per_token=1.0))
    assert store.get("tiny-a-1").metrics["test"].nll_nats == fake_run("tiny-a-1").metrics[
        "test"].nll_nats
    with pytest.raises(LmbenchError, match="safe folder name"):
        store.put(fake_run("../escape"))


def test_corrupt_and_foreign_files_are_named_and_skipped(tmp_path):
    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-good-1"))
    truncated = json.dumps(fake_run("tiny-cut-1").to_dict())[:200]
    (tmp_path / "tiny-cut-1").mkdir()
    (tmp_path / "tiny-cut-1" / "result.json").write_text(truncated)
    (tmp_path / "other-tool.json").write_text('{"results": {"acc": 0.5}}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "latin1.json").write_bytes(b'{"caf\xe9": 1}')
    (tmp_path / "notes.txt").write_text("not json, not a record: ignored")
    bad_metrics = fake_run("tiny-bad-1").to_dict()
    bad_metrics["metrics"]["test"]["n_tokens"] = -3
    (tmp_path / "bad.json").write_text(json.dumps(bad_metrics))
    records = store.records()
    assert [r.run_id for r in records] == ["tiny-good-1"]
    problems = "\n".join(store.problems())
    for name, why in [("tiny-cut-1/result.json", "not valid JSON"),
                      ("other-tool.json", "no 'run_id' key"), ("list.json", "JSON list"),
                      ("latin1.json", "unreadable"), ("bad.json", "n_tokens")]:
        assert f"{tmp_path / name}: skipped" in problems and why in problems
    assert "notes.txt" not in problems


def test_index_follows_the_files(tmp_path):
    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-a-1"))
    # another process (or a person) adds, breaks and deletes files behind the store's back
    record = fake_run("tiny-b-1", model="b")
    (tmp_path / "tiny-b-1").mkdir()
    (tmp_path / "tiny-b-1" / "result.json").write_text(json.dumps(record.to_dict()))
    assert {r.run_id for r in store.records()} == {"tiny-a-1", "tiny-b-1"}
    (tmp_path / "tiny-b-1" / "result.json").write_text("{")
    assert {r.run_id for r in store.records()} == {"tiny-a-1"}
    assert len(store.problems()) == 1
    (tmp_path / "tiny-b-1" / "result.json").unlink()
    assert store.problems() == []
    (tmp_path / INDEX_NAME).unlink()  # the index is a cache: rebuilt from the files
    assert [r.run_id for r in store.records(split="test", corpus="tiny")] == ["tiny-a-1"]
    assert store.records(split="valid") == [] and store.records(corpus="brown") == []


def test_a_corrupt_index_falls_back_to_memory_and_says_so(tmp_path):
    ResultStore(tmp_path).put(fake_run("tiny-a-1"))
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / (INDEX_NAME + suffix)).unlink(missing_ok=True)
    (tmp_path / INDEX_NAME).write_bytes(b"this is not a database" * 100)
    store = ResultStore(tmp_path)
    assert [r.run_id for r in store.records()] == ["tiny-a-1"]
    assert any("index not usable" in p for p in store.problems())


def test_records_written_before_the_new_fields_still_load(tmp_path):
    old = fake_run("tiny-old-1").to_dict()
    for key in ("tokenizer", "throughput", "generation"):
        del old[key]
    old["written_by_a_newer_version"] = {"ignored": True}
    (tmp_path / "tiny-old-1").mkdir()
    (tmp_path / "tiny-old-1" / "result.json").write_text(json.dumps(old))
    (record,) = ResultStore(tmp_path).records()
    assert record.tokenizer is None and record.generation is None


def test_get_suggests_a_close_run_id(tmp_path):
    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-kn3-1"))
    with pytest.raises(LmbenchError, match="did you mean 'tiny-kn3-1'"):
        store.get("tiny-kn3-2")
    with pytest.raises(LmbenchError, match="results folder not found"):
        ResultStore(tmp_path / "absent").records()


def _write_many(root: str, worker: int, count: int) -> None:
    store = ResultStore(root, timeout_s=60)
    for i in range(count):
        store.put(fake_run(f"tiny-w{worker}-{i}", model=f"w{worker}", seed=i))
        store.records()  # readers interleave with the writers


def test_several_processes_write_at_once(tmp_path):
    context = multiprocessing.get_context("fork" if "fork" in
                                          multiprocessing.get_all_start_methods() else "spawn")
    workers = [context.Process(target=_write_many, args=(str(tmp_path), w, 6)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    store = ResultStore(tmp_path)
    assert len(store.records()) == 24 and store.problems() == []
    with sqlite3.connect(tmp_path / INDEX_NAME) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 24
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert not list(tmp_path.rglob("*.part"))  # no temporary file left behind


def _generation(run_id: str, quality: float = 0.8, corpus: str = "tiny", **report) -> dict:
    return run_sidecar(fake_generation_report({run_id: quality}, corpus, **report), run_id,
                       run_id)


def test_sidecars_are_merged_on_read_and_never_change_the_record(tmp_path):
    store = ResultStore(tmp_path)
    own = {"metrics": {"distinct_2": 0.123}, "note": "recorded with the run"}
    path = store.put(fake_run("tiny-a-1", generation=own))
    store.put(fake_run("tiny-b-1"))
    before = path.read_bytes()
    side = write_sidecar(tmp_path / "tiny-a-1", "generation", _generation("tiny-a-1"))
    assert side == tmp_path / "tiny-a-1" / "generation.json"
    assert side.stat().st_mode & 0o044 and not list(tmp_path.rglob("*.part"))
    (tmp_path / "tiny-a-1" / "throughput.json").write_text(json.dumps(fake_throughput("tiny-a-1")))
    records = {r.run_id: r for r in store.records()}
    assert store.problems() == [] and path.read_bytes() == before
    merged = records["tiny-a-1"]
    assert merged.metrics == fake_run("tiny-a-1").metrics
    assert merged.generation.strategy == "top-p 0.95"
    assert merged.generation.metrics["mauve"] == 0.8
    assert merged.generation.metrics["distinct_2"] == 0.123  # the record's own value wins
    assert merged.generation.extra["note"] == "recorded with the run"
    assert merged.generation.samples[0]["top-p 0.95"] == "and so to bed"
    top_p = merged.generation.rows[-1]
    assert top_p.label == "top-p 0.95"
    assert top_p.metrics["mauve"].ci95 == pytest.approx((0.72, 0.88))
    assert merged.generation.rows[0].metrics["mauve"].value is None  # human: null
    assert merged.throughput.decode_tokens_per_s.median == 800.0
    assert merged.throughput.token_latency_p95_s == 0.002
    assert records["tiny-b-1"].generation is None and records["tiny-b-1"].throughput is None
    assert store.get("tiny-a-1") == merged and read_run(path) == (merged, [])
    # measured again: the sidecar is replaced and the index follows; deleted: gone again
    write_sidecar(tmp_path / "tiny-a-1", "generation", _generation("tiny-a-1", quality=0.5))
    assert store.get("tiny-a-1").generation.metrics["mauve"] == 0.5
    side.unlink()
    assert store.get("tiny-a-1").generation.to_dict() == own
    assert path.read_bytes() == before


def test_a_corrupt_or_foreign_sidecar_is_named_and_skipped(tmp_path):
    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-a-1"))
    store.put(fake_run("tiny-b-1"))
    store.put(fake_run("tiny-c-1"))
    text = json.dumps(_generation("tiny-a-1"))
    (tmp_path / "tiny-a-1" / "generation.json").write_text(text[: len(text) // 2])
    (tmp_path / "tiny-b-1" / "generation.json").write_text(text)  # tiny-a-1's, copied
    (tmp_path / "tiny-b-1" / "throughput.json").write_text('{"run_id": "tiny-b-1"}')
    wrong_corpus = _generation("tiny-c-1", corpus="brown")
    (tmp_path / "tiny-c-1" / "generation.json").write_text(json.dumps(wrong_corpus))
    (tmp_path / "bench-only").mkdir()  # lmbench bench of a model outside any run folder
    (tmp_path / "bench-only" / "throughput.json").write_text(json.dumps(fake_throughput("x")))
    records = store.records()
    assert [r.run_id for r in records] == ["tiny-a-1", "tiny-b-1", "tiny-c-1"]
    assert all(r.generation is None and r.throughput is None for r in records)
    problems = store.problems()
    assert len(problems) == 4, problems
    for name, why in [("tiny-a-1/generation.json", "not valid JSON"),
                      ("tiny-b-1/generation.json", "run_id 'tiny-a-1' is not the record's"),
                      ("tiny-b-1/throughput.json", "no throughput figure"),
                      ("tiny-c-1/generation.json", "corpus 'brown' is not the record's")]:
        assert any(p.startswith(f"{tmp_path / name}: skipped, not a usable") and why in p
                   for p in problems), (name, problems)
    record, skipped = read_run(tmp_path / "tiny-b-1" / "result.json")
    assert record == fake_run("tiny-b-1") and len(skipped) == 2
    _, skipped = store.lookup("tiny-c-1")
    assert len(skipped) == 1 and "corpus 'brown'" in skipped[0]
    assert len(store.lookup("tiny-b-1")[1]) == 2 and store.lookup("tiny-a-1")[1] == [
        problems[0]]


def test_write_sidecar_refuses_what_does_not_belong(tmp_path):
    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-a-1"))
    run_dir = tmp_path / "tiny-a-1"
    with pytest.raises(LmbenchError, match="no run record to attach"):
        write_sidecar(tmp_path / "absent", "generation", _generation("absent"))
    with pytest.raises(LmbenchError, match="run_id 'tiny-b-1' is not the record's"):
        write_sidecar(run_dir, "generation", _generation("tiny-b-1"))
    with pytest.raises(LmbenchError, match="corpus 'brown'"):
        write_sidecar(run_dir, "generation", _generation("tiny-a-1", corpus="brown"))
    broken = {**_generation("tiny-a-1"), "metrics": {"mauve": "high"}}
    with pytest.raises(LmbenchError, match="metrics\\['mauve'\\] is not a number"):
        write_sidecar(run_dir, "generation", broken)
    with pytest.raises(LmbenchError, match="unknown sidecar kind"):
        write_sidecar(run_dir, "speed", _generation("tiny-a-1"))
    assert sorted(p.name for p in run_dir.iterdir()) == ["result.json"]


def test_an_index_of_the_previous_schema_is_rebuilt(tmp_path):
    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-a-1"))
    with sqlite3.connect(tmp_path / INDEX_NAME) as db:  # as the version before sidecars left it
        db.execute("DROP TABLE sidecars")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    write_sidecar(tmp_path / "tiny-a-1", "generation", _generation("tiny-a-1"))
    (record,) = ResultStore(tmp_path).records()
    assert record.generation.metrics["mauve"] == 0.8


# ------------------------------------------------------------- one bad file never breaks a store


def _leaderboard(root, capsys) -> tuple[int, str, str]:
    status = main(["leaderboard", str(root), "--no-published"])
    out, err = capsys.readouterr()
    return status, out, err


def _no_metrics(data: dict) -> str:  # what a run with splits = [] wrote
    return json.dumps({**data, "metrics": {}})


def _mistyped(data: dict) -> str:
    data["metrics"]["test"]["perplexity_ci95"] = "oops"
    return json.dumps(data)


@pytest.mark.parametrize("bad_text, why", [
    (_no_metrics, "'metrics' is empty"),
    (_mistyped, "perplexity_ci95 is not a [low, high] pair"),
    (lambda data: json.dumps(data)[:-40], "not valid JSON"),
])
def test_a_bad_record_is_warned_about_and_skipped_by_the_leaderboard(tmp_path, capsys, bad_text,
                                                                     why):
    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-good-1", model="good"))
    assert _leaderboard(tmp_path, capsys)[0] == 0  # the index exists before the bad file
    bad = tmp_path / "tiny-bad-1" / "result.json"
    bad.parent.mkdir()
    bad.write_text(bad_text(fake_run("tiny-bad-1", model="bad").to_dict()))
    for _ in range(2):  # and again, from the index
        status, out, err = _leaderboard(tmp_path, capsys)
        assert status == 0 and "| good " in out and "| bad " not in out
        (warning,) = [line for line in err.splitlines() if "tiny-bad-1" in line]
        assert warning.startswith(f"lmbench: warning: {bad}: skipped") and why in warning


def test_put_refuses_a_record_that_does_not_check(tmp_path):
    store = ResultStore(tmp_path)
    run = fake_run("tiny-a-1")
    with pytest.raises(LmbenchError, match=r"refusing to write an invalid run record \('metrics' "
                                           "is empty"):
        store.put(dataclasses.replace(run, metrics={}))
    mistyped = dataclasses.replace(run.metrics["test"], perplexity_ci95="oops")
    with pytest.raises(LmbenchError, match="perplexity_ci95") as error:
        store.put(dataclasses.replace(run, metrics={"test": mistyped}))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "tiny-a-1").exists()
    store.put(run)
    assert store.records() == [run]


def test_an_index_row_that_does_not_parse_is_skipped_by_path(tmp_path, capsys):
    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-good-1", model="good"))
    bad = fake_run("tiny-bad-1", model="bad")
    path = store.put(bad)
    with sqlite3.connect(tmp_path / INDEX_NAME) as db:  # a row another program wrote
        db.execute("UPDATE runs SET record = ? WHERE run_id = 'tiny-bad-1'",
                   (json.dumps({**bad.to_dict(), "metrics": {}}),))
    status, out, err = _leaderboard(tmp_path, capsys)
    assert status == 0 and "| good " in out and "| bad " not in out
    assert f"{path}: skipped, its index row is not an lmbench run record" in err


@pytest.mark.parametrize("damage", ["garbage", "wrong tables"])
def test_a_corrupt_or_wrongly_shaped_index_falls_back_to_the_files(tmp_path, capsys, damage):
    store = ResultStore(tmp_path)
    store.put(fake_run("tiny-a-1", model="a"))
    store.put(fake_run("tiny-b-1", model="b"))
    index = tmp_path / INDEX_NAME
    if damage == "garbage":
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / (INDEX_NAME + suffix)).unlink(missing_ok=True)
        index.write_bytes(b"SQLite format 3\0" + b"\xff" * 4000)
    else:
        with sqlite3.connect(index) as db:  # the schema version matches, the tables do not
            db.execute("DROP TABLE runs")
            db.execute("CREATE TABLE runs (path TEXT PRIMARY KEY, what TEXT)")
    status, out, err = _leaderboard(tmp_path, capsys)
    assert status == 0 and "| a " in out and "| b " in out
    assert f"lmbench: warning: {index}: index not usable" in err


def test_a_locked_index_falls_back_to_the_files(tmp_path):
    ResultStore(tmp_path).put(fake_run("tiny-a-1", model="a"))
    other = sqlite3.connect(tmp_path / INDEX_NAME, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the index
    try:
        late = fake_run("tiny-b-1", model="b")  # a record the index has not seen yet
        (tmp_path / "tiny-b-1").mkdir()
        (tmp_path / "tiny-b-1" / "result.json").write_text(json.dumps(late.to_dict()))
        store = ResultStore(tmp_path, timeout_s=0.1)
        assert [r.run_id for r in store.records()] == ["tiny-a-1", "tiny-b-1"]
        store.put(fake_run("tiny-c-1", model="c"))  # writing works too: the file is the truth
        assert [r.run_id for r in store.records()] == ["tiny-a-1", "tiny-b-1", "tiny-c-1"]
        (line,) = store.problems()
        assert line.startswith(f"{tmp_path / INDEX_NAME}: index not usable (database is locked")
        table = leaderboard_table(store.records())
        assert "| b " in markdown_report(table, published_table([]), store.problems(), "test")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert len(ResultStore(tmp_path).records()) == 3  # unlocked: the file index catches up


def test_a_folder_written_before_the_records_were_typed_still_loads(tmp_path, capsys):
    shutil.copytree(TODAY, tmp_path / "runs")
    store = ResultStore(tmp_path / "runs")
    records = {r.run_id: r for r in store.records()}
    assert store.problems() == [] and set(records) == {"tiny-a-1", "tiny-b-1", "tiny-c-1"}
    a = records["tiny-a-1"]
    assert a.generation.metrics["distinct_2"] == 0.41  # its own value over the sidecar's
    assert a.generation.metrics["mauve"] == 0.8 and a.generation.extra["note"]
    assert a.throughput.decode_tokens_per_s.median == 800.0
    assert records["tiny-b-1"].throughput.decode_tokens_per_s.median == 950.0
    status, out, _ = _leaderboard(tmp_path / "runs", capsys)
    assert status == 0 and "950" in out and "800" in out
