"""Parity rows for clusters built by hand, and what notebooks read off a cluster.

Each snippet comes from a Dask tutorial that failed on raydask with only the
import changed: ``Scheduler()``/``Worker(address)`` as async context managers,
``cluster.scheduler.workers[address]`` (and killing that ``pid``, as the
resilience tutorials do), ``cluster.get_logs()``, and worker resources taken
from Dask's ``distributed.worker.resources`` config.  The same code runs on
``distributed`` and on raydask; where raydask differs on purpose the test
branches on the engine's name and says why (listed in ``docs/migrating.md``).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import time
import types
import uuid

import psutil
import pytest

from conftest import need

pytestmark = [pytest.mark.parity, pytest.mark.multinode, pytest.mark.timeout(300)]

#: Dask's documentation's example: a custom resource, not Ray's built-in ``memory``.
CONFIG = {"distributed.worker.resources.GPU": 1, "distributed.worker.resources.MEMORY": 1e9}


def inc(x):
    return x + 1


def where(engine):
    """The address of the worker running this task (``engine``: the module running it)."""
    return importlib.import_module(engine).get_worker().address


def mark_then_sleep(path, seconds, engine):
    """Say where this attempt runs (the file), then run long enough to be killed there."""
    address = where(engine)
    with open(path, "a") as f:
        f.write(address + "\n")
    time.sleep(seconds)
    return address


def say(marker, engine):
    print(marker, flush=True)
    return where(engine)


def _engine(name):
    if name == "distributed":
        need("distributed")
    return importlib.import_module(name)


def _tree(pid):
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def _wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.25)


# -- Scheduler and Worker by hand ----------------------------------------------------------
@pytest.mark.parametrize("name", ["distributed", "raydask"])
def test_scheduler_and_workers_as_async_context_managers(name, request):
    """Dask's tutorial, word for word, plus what it lets one read."""
    m = _engine(name)
    if name == "raydask":
        request.getfixturevalue("no_client")  # one Ray per process: this test makes its own cluster
    extra = {"dashboard_address": None} if name == "raydask" else {}  # the raydask client's own dashboard
    seen = {}
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}

    async def main():
        async with m.Scheduler(dashboard=False) as s:
            async with m.Worker(s.address, nthreads=2) as w1, m.Worker(s.address, nthreads=1, resources={"FOO": 1}) as w2:
                async with m.Client(s.address, asynchronous=True, **extra) as client:
                    future = client.submit(lambda x: x + 1, 10)
                    assert await future == 11
                    assert await client.nthreads() == {w1.address: 2, w2.address: 1}
                    assert await client.submit(where, name, resources={"FOO": 1}) == w2.address
                    workers = s.workers
                    assert set(workers) == {w1.address, w2.address}
                    assert workers[w1.address].nthreads == 2 and workers[w2.address].resources == {"FOO": 1}
                if name == "raydask":  # Ray's nodes are child processes here: all must go
                    seen["processes"] = [p for p in me.children(recursive=True) if p.pid not in before]
                    assert {"gcs_server", "raylet"} <= {p.name() for p in seen["processes"]}
            assert s.workers == {}
            assert w1.status.name == w2.status.name == "closed"
        assert s.status.name == "closed"

    asyncio.run(main())
    if name == "raydask":
        _, alive = psutil.wait_procs(seen["processes"], timeout=30)
        assert not alive


@pytest.mark.parametrize("name", ["distributed", "raydask"])
def test_await_scheduler_and_close(name, request):
    m = _engine(name)
    if name == "raydask":
        request.getfixturevalue("no_client")

    async def main():
        s = await m.Scheduler(dashboard=False)
        assert s.status.name == "running"
        assert repr(s).startswith(f"<Scheduler {s.address!r}, workers: 0, cores: 0")
        await s.close()
        assert s.status.name == "closed"

    asyncio.run(main())


# -- a LocalCluster's scheduler, logs and resources ------------------------------------------
@pytest.fixture(scope="module", params=["distributed", "raydask"])
def local(request):
    """Three one-thread workers whose resources come from Dask's config, on each engine."""
    dask = need("dask")
    m = _engine(request.param)
    extra = {}
    if request.param == "raydask":
        from conftest import _pool

        _pool.close()
        extra = {"dashboard_address": None}
    with dask.config.set(CONFIG):
        cluster = m.LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None)
    client = m.Client(cluster, **extra)
    client.wait_for_workers(3, timeout=120)
    yield types.SimpleNamespace(name=request.param, m=m, cluster=cluster, client=client)
    client.close()
    cluster.close()


def test_worker_resources_come_from_dask_config(local):
    info = local.client.scheduler_info()["workers"]
    assert len(info) == 3
    assert all(w["resources"] == {"GPU": 1, "MEMORY": 1e9} for w in info.values())
    assert local.client.submit(inc, 1, resources={"MEMORY": 1e9}).result(timeout=60) == 2
    if local.name == "raydask":  # MEMORY is a custom resource: Ray's own memory is the memory_limit
        import ray

        totals = ray.cluster_resources()
        assert totals["MEMORY"] == 3e9 and totals["memory"] != 3e9


def test_scheduler_workers_has_what_notebooks_read(local):
    workers = local.cluster.scheduler.workers
    assert set(workers) == set(local.client.scheduler_info()["workers"])
    assert sorted(str(w.name) for w in workers.values()) == ["0", "1", "2"]
    for address, w in workers.items():
        assert w.address == address and w.nthreads == 1
        assert isinstance(w.memory_limit, int) and w.memory_limit > 0
        assert w.resources == {"GPU": 1, "MEMORY": 1e9}
        assert isinstance(w.pid, int) and w.pid != os.getpid() and psutil.pid_exists(w.pid)
        if local.name == "raydask":  # a worker is a Ray node: its pid is the node's raylet
            assert psutil.Process(w.pid).name() == "raylet"


def test_get_logs(local):
    workers = sorted(local.client.scheduler_info()["workers"])
    marker = f"hand-{uuid.uuid4().hex}"
    assert local.client.submit(say, marker, local.name, workers=[workers[1]], pure=False).result(timeout=60) == workers[1]
    logs = local.cluster.get_logs()
    assert set(logs) == {"Cluster", "Scheduler", *workers}
    assert all(isinstance(text, str) for text in logs.values()) and logs["Scheduler"]
    assert set(local.cluster.get_logs(cluster=False, scheduler=False, workers=[workers[0]])) == {workers[0]}
    assert local.cluster.get_logs(cluster=False, scheduler=False, workers=False) == {}
    if local.name == "raydask":  # Ray's worker logs hold the tasks' output; Dask's only its logging records
        assert marker in logs[workers[1]] and marker not in logs[workers[0]]
        assert "raylet" in logs[workers[1]]


LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def test_client_reads_scheduler_and_worker_logs_as_level_line_pairs(local):
    """``get_scheduler_logs`` / ``get_worker_logs``: Dask's shape, ``n`` and ``workers=`` honoured."""
    c = local.client
    logs = c.get_scheduler_logs(n=5)
    assert isinstance(logs, (list, tuple)) and 0 < len(logs) <= 5  # Dask: a list in process, a tuple over TCP
    assert all(level in LEVELS and type(line) is str and line for level, line in logs)
    if local.name == "raydask":
        assert type(logs) is list
    addresses = set(c.scheduler_info()["workers"])
    per_worker = c.get_worker_logs(n=3)
    assert set(per_worker) == addresses
    assert all(isinstance(v, (list, tuple)) and 0 < len(v) <= 3 for v in per_worker.values())
    assert all(level in LEVELS for v in per_worker.values() for level, _ in v)
    one = sorted(addresses)[0]
    assert set(c.get_worker_logs(workers=[one])) == {one}
    assert len(c.get_worker_logs(nanny=True)) == 3
    if local.name == "raydask":  # a task's prints are in its worker's log, newest first
        marker = f"marker-{uuid.uuid4().hex}"
        address = c.submit(say, marker, local.name, workers=[one], pure=False).result(timeout=60)
        _wait_until(lambda: any(marker in line for _, line in c.get_worker_logs(workers=[address])[address]),
                    30, "the print in the worker's log")
        assert not any(marker in line for _, line in c.get_worker_logs(workers=[address], nanny=True)[address])


def test_killing_a_workers_pid_takes_it_down_its_task_runs_elsewhere_and_it_is_replaced(local, tmp_path):
    """The resilience tutorials' ``os.kill(cluster.scheduler.workers[a].pid, SIGKILL)`` (runs last: it costs a worker)."""
    workers = local.cluster.scheduler.workers
    victim = next(a for a, w in workers.items() if str(w.name) == "2")  # raydask's "0" is the head node
    others = [w.pid for a, w in workers.items() if a != victim]
    path = tmp_path / "attempts"
    future = local.client.submit(mark_then_sleep, str(path), 4, local.name, workers=[victim], allow_other_workers=True,
                                 pure=False)
    _wait_until(lambda: path.exists() and victim in path.read_text(), 60, "the task running on the victim")
    doomed = _tree(workers[victim].pid)
    os.kill(workers[victim].pid, signal.SIGKILL)
    finished_on = future.result(timeout=180)
    assert finished_on != victim
    _wait_until(lambda: victim not in local.cluster.scheduler.workers, 120, "the killed worker gone")
    if local.name == "raydask":  # the node is gone, with every process its raylet had started
        _, alive = psutil.wait_procs(doomed, timeout=60)
        assert not alive
    assert all(psutil.pid_exists(pid) for pid in others)  # nothing else was taken down
    assert local.client.submit(inc, 41, pure=False).result(timeout=60) == 42
    # and, as Dask's nanny restarts its worker, a new worker takes the dead one's name
    _wait_until(lambda: len(local.cluster.scheduler.workers) == 3, 120, "three workers again")
    replacement = {str(w.name): a for a, w in local.cluster.scheduler.workers.items()}["2"]
    assert replacement != victim
    assert local.client.submit(where, local.name, workers=[replacement], pure=False).result(timeout=60) == replacement
