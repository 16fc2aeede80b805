"""The Ray executor of ``lmbench run --executor ray``: every model (and sweep trial) of a run file
as one Ray task (Moritz et al. 2018, "Ray: A Distributed Framework for Emerging AI
Applications") with the resources its ``resources`` table declares.

Each task runs ``lmbench.runs.runner.run_job``, the function the local executor runs, so a task
writes exactly the record, model and checkpoints a local run writes, atomically and never over
another (``lmbench.storage.store``): a worker that dies leaves no partial record and loses no
other task's record, and the next run skips what was finished and resumes the rest from its
checkpoints. The driver only reads: it plans the jobs, waits, prints one line per finished model
under a tqdm bar counting all of them, and at the end reports each failed task by its label.
Tasks are not retried (``max_retries=0``): a death is reported, not hidden. A task's torch
threads are its ``resources.cpus`` (one CPU when a model declares none), and its seed the run's,
so a model gives the same metrics on either executor.

Loopback. Unless ``RAY_NODE_IP_ADDRESS`` names another address, every process is kept on
127.0.0.1: the driver and any local cluster it starts bind there (``_node_ip_address``, and
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, without which Ray maps loopback to the machine's
network address, set before ``ray`` is imported), the dashboard is off and usage statistics are
not sent; an ``--address`` that is not a loopback address is refused before any connection, an
unreachable one after a short TCP probe, and every node of the cluster is checked to be on
loopback. On a real cluster, set ``RAY_NODE_IP_ADDRESS`` to this machine's address
(docs/scaling.md).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lmbench.core.errors import LmbenchError

LOOPBACK = "127.0.0.1"
NODE_IP = os.environ.get("RAY_NODE_IP_ADDRESS", LOOPBACK)
if NODE_IP == LOOPBACK:  # read by ray at import: its own address stays loopback
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402  (after the environment above: ray reads it at import)
import ray.exceptions  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import lmbench  # noqa: E402
from lmbench.core.results import RunResult  # noqa: E402
from lmbench.runs.config import Resources  # noqa: E402
from lmbench.runs.runner import Job, JobContext, run_job  # noqa: E402

PROBE_TIMEOUT_S = 5.0
FORWARDED_VARIABLES = ("LMBENCH_DATA_DIR", "NLTK_DATA", "LMBENCH_MAX_PARAMS")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(address: str, option: str = "--address") -> None:
    """``LmbenchError`` naming ``option`` unless a Ray cluster could be listening at
    ``address`` (``host:port``, optionally ``ray://``): on loopback while this machine's node
    address is, and answering a TCP connection within ``PROBE_TIMEOUT_S``."""
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise LmbenchError(f"{option} {address!r}: expected HOST:PORT of a Ray head node, e.g. "
                           "127.0.0.1:6379")
    if _is_loopback(NODE_IP) and not _is_loopback(host):
        raise LmbenchError(f"{option} {address!r}: not a loopback address; Ray is kept on "
                           "127.0.0.1 here (set RAY_NODE_IP_ADDRESS to this machine's address to "
                           "join a cluster on the network)")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as error:
        raise LmbenchError(f"{option} {address!r}: no Ray cluster answers there "
                           f"({error.strerror or error}); start one (ray start --head "
                           "--node-ip-address 127.0.0.1) or leave the option out for a local "
                           "one") from None


def _job_task(context: JobContext, job: Job) -> RunResult | None:
    """One job on a Ray worker (``lmbench.runs.runner.run_job``)."""
    return run_job(context, job, lambda line: print(line, file=sys.stderr, flush=True))


class RayExecutor:
    """Jobs as Ray tasks (module docstring). ``address``: a running cluster's head
    (``host:port``); None: a local cluster of ``num_cpus`` CPUs (None: all of them), started on
    first use and shut down by ``close``; an already initialised Ray is used as it is."""

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 option: str = "--address") -> None:
        if address is not None:
            check_address(address, option)
        self.address, self.num_cpus, self.option = address, num_cpus, option
        self.started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        """Start or join Ray (once), and check that every node is on loopback."""
        if not ray.is_initialized():
            source = str(Path(lmbench.__file__).resolve().parents[1])
            env_vars = {name: os.environ[name] for name in FORWARDED_VARIABLES
                        if name in os.environ}
            env_vars["PYTHONPATH"] = os.pathsep.join(
                [source] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
            try:
                ray.init(address=self.address, num_cpus=None if self.address else self.num_cpus,
                         include_dashboard=False, _node_ip_address=NODE_IP,
                         log_to_driver=False, logging_level="ERROR", configure_logging=True,
                         runtime_env={"env_vars": env_vars})
            except (ConnectionError, RuntimeError, ValueError) as error:
                message = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise LmbenchError(f"{self.option} {self.address!r}: cannot join the Ray "
                                   f"cluster ({type(error).__name__}: {message})") from None
            self.started = True
        if _is_loopback(NODE_IP):
            away = [node["NodeManagerAddress"] for node in ray.nodes()
                    if node["Alive"] and not _is_loopback(node["NodeManagerAddress"])]
            if away:
                self.close()
                raise LmbenchError(f"{self.option}: Ray node(s) at {', '.join(away)} are not on "
                                   "loopback; start them with --node-ip-address 127.0.0.1")

    def close(self) -> None:
        """Shut down the Ray this executor started or joined."""
        if self.started:
            ray.shutdown()
            self.started = False

    def check_resources(self, jobs: Sequence[Job]) -> None:
        """``LmbenchError`` naming the model and the field when a job asks for more CPUs, GPUs
        or memory than the largest node of the cluster has (its task would wait forever)."""
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        for job in jobs:
            wanted = job.spec.resources or Resources()
            asked = {"cpus": ("CPU", wanted.cpus, 1.0), "gpus": ("GPU", wanted.gpus, 1.0),
                     "memory_gb": ("memory", wanted.memory_gb, 2.0**30)}
            for name, (key, value, unit) in asked.items():
                largest = max((node.get(key, 0.0) for node in nodes), default=0.0) / unit
                if value is not None and value > largest:
                    raise LmbenchError(f"[[models]] {job.spec.label!r}: resources.{name} = "
                                       f"{value:g}, but no node of the Ray cluster has more than "
                                       f"{largest:g}")

    def execute(self, jobs: Sequence[Job], context: JobContext, log: Callable[[str], None]
                ) -> tuple[list[RunResult], dict[str, str]]:
        """Run ``jobs`` as tasks; the records made, and a one-line reason by failed label."""
        if not jobs:
            return [], {}
        self.connect()
        self.check_resources(jobs)
        context = dataclasses.replace(context, default_threads=Resources().n_threads)
        task = ray.remote(_job_task)
        pending = {}
        for job in jobs:
            wanted = job.spec.resources or Resources()
            memory = None if wanted.memory_gb is None else int(wanted.memory_gb * 2**30)
            ref = task.options(num_cpus=wanted.cpus, num_gpus=wanted.gpus, memory=memory,
                               max_retries=0, name=f"lmbench:{job.label}").remote(context, job)
            pending[ref] = job
        results, failed = [], {}
        with tqdm(total=len(jobs), desc="models", unit="model", file=sys.stderr) as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                try:
                    record = ray.get(ready[0])
                except ray.exceptions.RayTaskError as error:
                    cause = error.cause if error.cause is not None else error
                    failed[job.label] = _one_line(cause)
                    bar.write(f"[{job.label}] failed: {failed[job.label]}")
                except ray.exceptions.RayError as error:  # the worker or its node died
                    failed[job.label] = f"{type(error).__name__}: the worker died"
                    bar.write(f"[{job.label}] failed: {failed[job.label]}")
                else:
                    results.append(record)
                    shown = ", ".join(f"{s} ppl {m.perplexity:.2f}"
                                      for s, m in record.metrics.items())
                    bar.write(f"[{job.label}] fit {record.fit_s:.1f}s; {shown}")
                bar.update(1)
        return results, failed


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
