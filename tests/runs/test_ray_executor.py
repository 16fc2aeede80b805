"""lmbench run --executor ray: every model and sweep trial a Ray task, on loopback only, writing
the records the local executor writes (same metrics), reporting a dead worker by its label and
resuming after it; one-line errors for an unreachable address and for too many GPUs."""

from __future__ import annotations

import glob
import os
import signal
import threading
import time

import pytest

# imported before ray itself: the module keeps Ray on 127.0.0.1 (see its docstring)
ray_executor = pytest.importorskip("lmbench.runs.ray_executor")
import ray  # noqa: E402

from lmbench.cli.main import main  # noqa: E402
from lmbench.core.errors import LmbenchError  # noqa: E402
from lmbench.runs.config import parse_config  # noqa: E402
from lmbench.runs.runner import run  # noqa: E402
from lmbench.storage.store import ResultStore  # noqa: E402

TINY_GPT = {"family": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16,
            "dropout": 0.0, "tokenizer": "word", "resources": {"cpus": 1}}


def _train(max_steps, **extra):
    return {"batch_size": 4, "seq_len": 16, "max_steps": max_steps, "warmup_steps": 2,
            "eval_every": max_steps, "eval_tokens": 500, "progress": False, **extra}


def _config(corpus, models):
    return parse_config({"corpus": str(corpus), "splits": ["valid", "test"], "models": models})


@pytest.fixture(scope="module")
def local_ray():
    with ray_executor.RayExecutor(num_cpus=2) as executor:
        executor.connect()
        yield executor


def _metrics(records):
    return {r.model: {s: (m.nll_nats, m.block_nll_nats, m.n_tokens) for s, m in r.metrics.items()}
            for r in records}


def test_ray_writes_the_records_of_the_local_executor(local_ray, corpus_dir, tmp_path):
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    config = _config(corpus_dir, [
        {"label": "gpt", **TINY_GPT, "train": _train(6)},
        {"label": "bigram", "family": "ngram", "order": 2, "smoothing": "add-k",
         "sweep": {"space": {"k": [1.0, 0.1]}}}])
    local = run(config, tmp_path / "local", log=lambda _: None)
    remote = run(config, tmp_path / "ray", log=lambda _: None, executor=local_ray)
    assert [r.model for r in remote] == ["gpt", "bigram-trial-0", "bigram-trial-1", "bigram"]
    assert _metrics(remote) == _metrics(local)  # same seed, same threads: the same numbers
    assert {r.model for r in ResultStore(tmp_path / "ray").records()} == set(_metrics(local))
    assert remote[-1].sweep.selected and "test" in remote[-1].metrics
    again = run(config, tmp_path / "ray", log=lambda _: None, executor=local_ray)
    assert [r.run_id for r in again] == [r.run_id for r in remote]  # all skipped


def test_more_gpus_than_the_cluster_has_is_one_line_naming_the_field(local_ray, corpus_dir,
                                                                    tmp_path, capsys):
    run_file = tmp_path / "gpus.toml"
    run_file.write_text(f'corpus = "{corpus_dir}"\n[[models]]\nlabel = "big"\nfamily = "ngram"\n'
                        'order = 2\nresources = { cpus = 1, gpus = 4 }\n')
    assert main(["run", str(run_file), "--out", str(tmp_path / "out"), "--executor", "ray"]) == 2
    error = capsys.readouterr().err.strip()
    assert "resources.gpus = 4" in error and "'big'" in error and "\n" not in error
    assert not (tmp_path / "out").exists() or not ResultStore(tmp_path / "out").records()


@pytest.mark.parametrize(("address", "message"), [
    ("127.0.0.1:9", "no Ray cluster answers there"),
    ("10.11.12.13:6379", "not a loopback address"),
    ("nonsense", "expected HOST:PORT"),
])
def test_a_bad_address_is_one_line_naming_the_option(corpus_dir, tmp_path, capsys, address,
                                                     message):
    run_file = tmp_path / "one.toml"
    run_file.write_text(f'corpus = "{corpus_dir}"\n[[models]]\nfamily = "ngram"\norder = 1\n')
    assert main(["run", str(run_file), "--out", str(tmp_path / "out"), "--executor", "ray",
                 "--address", address]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"lmbench: error: --address {address!r}: {message}")
    assert "\n" not in error


def _pids_titled(title: bytes) -> list[int]:
    pids = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as file:
                if file.read().startswith(b"ray::" + title):
                    pids.append(int(path.split("/")[2]))
        except OSError:
            continue
    return pids


def test_a_killed_worker_is_reported_and_the_next_run_resumes(local_ray, corpus_dir, tmp_path):
    out = tmp_path / "out"
    config = _config(corpus_dir, [
        {"label": "slow", **TINY_GPT, "train": _train(600, checkpoint_every=5)},
        {"label": "kn", "family": "ngram", "order": 2}])
    outcome = {}

    def first_run():
        try:
            run(config, out, log=lambda _: None, executor=local_ray)
        except LmbenchError as error:
            outcome["error"] = str(error)

    thread = threading.Thread(target=first_run)
    thread.start()
    checkpoint = out / "checkpoints"
    deadline = time.monotonic() + 240
    while not list(checkpoint.glob("*slow*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    [pid] = _pids_titled(b"lmbench:slow")  # the worker training it (started by this test)
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=240)
    assert "slow (" in outcome["error"] and "died" in outcome["error"]
    assert "\n" not in outcome["error"]
    assert [r.model for r in ResultStore(out).records()] == ["kn"]  # the other record is kept
    assert list(checkpoint.glob("*slow*/checkpoint.pt"))
    lines = []
    records = run(config, out, log=lines.append, executor=local_ray)
    assert any(line.startswith("kn: already in") for line in lines)
    assert {r.model: r.train_log["steps"] if r.train_log else None for r in records} == {
        "slow": 600, "kn": None}


def test_two_nodes_on_loopback_share_a_run(corpus_dir, tmp_path):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        config = _config(corpus_dir, [
            {"label": f"kn{order}", "family": "ngram", "order": order} for order in (1, 2, 3)])
        with ray_executor.RayExecutor(cluster.address) as executor:
            records = run(config, tmp_path / "out", log=lambda _: None, executor=executor)
            nodes = ray.nodes()
        assert len(nodes) == 2
        assert all(node["NodeManagerAddress"] == "127.0.0.1" for node in nodes)
        assert cluster.address.startswith("127.0.0.1:")
        assert sorted(r.model for r in ResultStore(tmp_path / "out").records()) == [
            "kn1", "kn2", "kn3"]
        assert [r.model for r in records] == ["kn1", "kn2", "kn3"]
    finally:
        cluster.shutdown()
