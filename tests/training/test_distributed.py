"""DDP (lmbench.training.distributed): two gloo processes on loopback train a tiny GPT with
identical parameters on every rank after every step, reach the single-process run at the same
global batch, resume after every rank is killed, and lmbench run --ddp writes once (rank 0)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lmbench.core.errors import LmbenchError
from lmbench.storage.store import ResultStore
from lmbench.training.distributed import DistributedTraining

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from ddp_job import GPT, TRAIN, tiny_gpt  # noqa: E402


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(rank: int | None = None, world: int = 2, port: int = 0) -> dict[str, str]:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if rank is not None:
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    return env


def _launch(corpus_dir, out: Path, max_steps: int) -> list[subprocess.Popen]:
    out.mkdir(exist_ok=True)
    port = _port()
    return [subprocess.Popen([sys.executable, str(HERE / "ddp_job.py"), str(corpus_dir),
                              str(out), str(max_steps)], env=_env(rank, port=port),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for rank in range(2)]


def _wait(processes) -> None:
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output.decode()[-3000:]


@pytest.fixture(scope="module")
def single(tiny_corpus):
    """The single-process run at the same global batch."""
    torch.set_num_threads(1)
    model = tiny_gpt()
    model.fit(tiny_corpus)
    return model.network().state_dict(), model.training_log()


def _check_against(out: Path, single, *, train_loss: bool = True) -> None:
    weights, log = single
    ranks = [torch.load(out / f"weights-{r}.pt") for r in range(2)]
    for name, value in weights.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # identical replicas
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-4, atol=1e-5)
    got = json.loads((out / "log-0.json").read_text())
    assert got["steps"] == log["steps"] and got["tokens"] == log["tokens"]
    for ours, theirs in zip(got["curve"], log["curve"]):
        if train_loss:  # (a resumed curve averages only the steps since it resumed)
            assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert ours["valid_loss"] == pytest.approx(theirs["valid_loss"], rel=1e-5)


def test_two_gloo_ranks_match_the_single_process_run(corpus_dir, tmp_path, single):
    _wait(_launch(corpus_dir, tmp_path / "ddp", TRAIN["max_steps"]))
    _check_against(tmp_path / "ddp", single)


def test_killing_every_rank_then_rerunning_resumes(corpus_dir, tmp_path, single):
    out = tmp_path / "ddp"
    processes = _launch(corpus_dir, out, TRAIN["max_steps"])
    checkpoint = out / "checkpoint" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    for process in processes:  # every rank, by the ids this test started
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    saved = torch.load(checkpoint, weights_only=True)
    assert 0 < saved["log"]["steps"] < TRAIN["max_steps"]  # killed mid-run
    _wait(_launch(corpus_dir, out, TRAIN["max_steps"]))
    _check_against(out, single, train_loss=False)


def test_a_world_size_that_does_not_split_the_batch_is_refused(tiny_corpus):
    model = tiny_gpt()
    with pytest.raises(LmbenchError, match=r"train.batch_size = 4 does not split over 3 "
                                           r"processes \(torchrun --nproc_per_node\)"):
        model.fit(tiny_corpus, parallel=DistributedTraining(rank=0, world_size=3))


def test_shard_keeps_this_ranks_rows_of_the_global_batch():
    from lmbench.training.batching import StreamBatch

    inputs = torch.arange(24).reshape(4, 6)
    batch = StreamBatch(inputs, inputs + 1, starts_epoch=True)
    half = DistributedTraining(rank=1, world_size=2).shard(batch)
    assert torch.equal(half.inputs, inputs[2:]) and torch.equal(half.targets, inputs[2:] + 1)
    assert half.starts_epoch


def test_ddp_without_torchrun_names_the_option():
    with pytest.raises(LmbenchError, match="--ddp needs torchrun's environment"):
        DistributedTraining.from_environment(torch.device("cpu"))


def _torchrun(args, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master-addr=127.0.0.1", f"--master-port={_port()}", "-m", "lmbench", *args],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_lmbench_run_ddp_under_torchrun(corpus_dir, tmp_path):
    def run_file(batch_size: int) -> Path:
        train = {**TRAIN, "max_steps": 6, "eval_every": 6, "batch_size": batch_size}
        lines = [f'corpus = "{corpus_dir}"', "[[models]]", 'label = "gpt"', 'family = "gpt"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in GPT.items()]
        lines += ["train = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in train.items())
                  + " }"]
        path = tmp_path / f"b{batch_size}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    bad = _torchrun(["run", str(run_file(3)), "--out", "out", "--ddp"], tmp_path)
    assert bad.returncode != 0
    errors = [line for line in bad.stderr.splitlines() if line.startswith("lmbench: error:")]
    assert errors == ["lmbench: error: [[models]] 'gpt' train.batch_size = 3 does not split over "
                      "2 processes (torchrun --nproc_per_node): use a multiple of 2"]
    good = _torchrun(["run", str(run_file(4)), "--out", "out", "--ddp"], tmp_path)
    assert good.returncode == 0, good.stderr[-3000:]
    [record] = ResultStore(tmp_path / "out").records()  # rank 0 alone wrote
    assert record.model == "gpt" and record.train_log["steps"] == 6
    assert good.stdout.count("results written under out") == 1
