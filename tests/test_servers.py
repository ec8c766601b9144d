"""Scheduler and Worker built by hand: a Ray head without CPUs, Ray nodes joined to it.

One Scheduler (started synchronously, ``with``) is shared by the module; workers
come and go per test.  The asynchronous tutorial form (``async with``) and the
comparison with dask.distributed are in ``tests/test_parity_hand.py``; the
``raydask scheduler`` / ``raydask worker`` commands in ``tests/test_cli.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psutil
import pytest

from conftest import need

from raydask import Client, Scheduler, Variable, Worker
from raydask.nodes import cluster_uses_token
from raydask.servers import gcs_address

pytestmark = [pytest.mark.multinode, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[1]


def inc(x):
    return x + 1


def new_children(before):
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in before]


@pytest.fixture(scope="module")
def scheduler():
    from conftest import _pool

    _pool.close()  # one Ray per process: this module's driver joins its own Scheduler
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with Scheduler() as s:
        yield s
    assert all(w.status.name == "closed" for w in LEFT_OPEN)
    _, alive = psutil.wait_procs(new_children(before), timeout=30)
    assert not alive, f"left behind: {alive!r}"


#: Workers a test leaves open on purpose: closing the Scheduler must close them.
LEFT_OPEN: list = []


@pytest.fixture(scope="module")
def worker(scheduler):
    with Worker(scheduler.address, nthreads=2, resources={"MEMORY": 2e9, "FOO": 1}, name="by-hand") as w:
        yield w


# -- no cluster needed ---------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (("10.0.0.1:6379",), "10.0.0.1:6379"), (("tcp://10.0.0.1:6379",), "10.0.0.1:6379"),
    (("ray://10.0.0.1:6379",), "10.0.0.1:6379"), (("10.0.0.1", 6379), "10.0.0.1:6379"),
])
def test_gcs_address(args, expected):
    assert gcs_address(*args) == expected


@pytest.mark.parametrize("make, error, needle", [
    (lambda: Worker(), TypeError, "needs the scheduler's address"),
    (lambda: Worker("nonsense"), ValueError, "'nonsense'"),
    (lambda: Worker(6379), TypeError, "6379"),
    (lambda: Worker("h:1", nthreads=0), ValueError, "nthreads must be a positive integer, got 0"),
    (lambda: Worker("h:1", nthreads=1.5), TypeError, "1.5"),
    (lambda: Worker("h:1", resources={"GPU": -1}), ValueError, "'GPU': -1"),
    (lambda: Worker("h:1", memory_limit=[1]), TypeError, r"\[1\]"),
    (lambda: Scheduler(port=-1), ValueError, "-1"),
    (lambda: Scheduler(port="x"), TypeError, "'x'"),
    (lambda: Scheduler(host=1), TypeError, "1"),
])
def test_bad_input_fails_before_any_node_starts(make, error, needle):
    with pytest.raises(error, match=needle):
        make()


def test_resources_default_to_dask_config():
    dask = need("dask")
    with dask.config.set({"distributed.worker.resources.GPU": 2}):
        assert Worker("h:1", nthreads=1).resources == {"GPU": 2}
    assert Worker("h:1", nthreads=1, resources={}).resources == {}


# -- on the module's Scheduler ---------------------------------------------------------------
def test_the_head_runs_no_tasks_and_a_worker_is_its_node(scheduler, worker):
    assert scheduler.status.name == worker.status.name == "running"
    workers = scheduler.workers
    assert list(workers) == [worker.address]  # the head is the scheduler, not a worker
    state = workers[worker.address]
    assert (state.name, state.nthreads, state.resources) == ("by-hand", 2, {"MEMORY": 2e9, "FOO": 1})
    assert state.pid == worker.pid and psutil.Process(worker.pid).name() == "raylet"
    assert psutil.Process(scheduler.pid).name() == "raylet" and scheduler.pid != worker.pid
    assert repr(scheduler) == f"<Scheduler {scheduler.address!r}, workers: 1, cores: 2>"
    assert repr(worker) == f"<Worker {worker.address!r}, name: by-hand, status: running, threads: 2>"


def test_a_client_joins_by_the_scheduler_address(scheduler, worker):
    with Client(scheduler.address, dashboard_address=None) as client:
        assert client.nthreads() == {worker.address: 2}
        # MEMORY is a custom resource of the worker (Dask's docs' example), not Ray's memory
        assert client.submit(inc, 1, resources={"MEMORY": 2e9}).result(timeout=120) == 2
        logs = client.cluster.get_logs()
        assert set(logs) == {"Cluster", "Scheduler", worker.address}
        assert "gcs_server" in logs["Scheduler"] and "raylet" in logs[worker.address]
        assert set(client.cluster.scheduler.workers) == {worker.address}
        again = client.scheduler_address
    assert again == f"ray://{scheduler.address}"
    with Client(again, dashboard_address=None) as client:  # Dask code passes scheduler_address on
        assert client.submit(inc, 2).result(timeout=120) == 3


def test_closing_a_worker_removes_its_node(scheduler):
    w = Worker(scheduler.address, nthreads=1)
    assert w.status.name == "init" and w.pid is None
    w.start()
    try:
        assert w.address in scheduler.workers and w.name == w.address  # no name: its address
        tree = [psutil.Process(w.pid), *psutil.Process(w.pid).children(recursive=True)]
    finally:
        w.close()
    assert w.status.name == "closed" and not w.alive()
    assert w.address not in scheduler.workers
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive
    w.close()  # again: nothing happens
    with pytest.raises(RuntimeError, match="cannot start a Worker that is closed"):
        w.start()


_JOINER = """
import os, sys, time
from raydask import Client, Variable
client = Client(address=sys.argv[1], dashboard_address=None)
print("MODE", os.environ.get("RAY_AUTH_MODE"), flush=True)

def slow(x):
    time.sleep(3)
    return x + 1

future = client.submit(slow, 41, pure=False)
Variable(sys.argv[2]).set(future)   # the other process reads it while it is still pending
assert future.result(timeout=120) == 42
Variable(sys.argv[2] + "-done").get(timeout=120)   # stay alive (the owner) until it was read
client.close()
"""


def test_a_second_process_joins_without_token_auth_when_the_cluster_has_none(scheduler, worker, tmp_path):
    """Regression: joining by address switched on token auth whenever ``~/.ray/auth_token``
    existed; the cluster let that process in, but its Futures then read as ``OwnerDiedError``
    in every other process.  Here a token exists for the joiner; it must use it only if the
    cluster does."""
    uses_token = cluster_uses_token(scheduler.address)
    assert uses_token is not None  # its raylets run here
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.path.dirname(__file__)]))
    env.pop("RAY_AUTH_MODE", None)
    env.pop("RAY_ADDRESS", None)
    if not uses_token:  # a token this process could send; ~/.ray/auth_token stays untouched
        token = tmp_path / "auth_token"
        token.write_text(uuid.uuid4().hex * 2)
        env["RAY_AUTH_TOKEN_PATH"] = str(token)
    name = f"hand-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_JOINER), scheduler.address, name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    try:
        with Client(scheduler.address, dashboard_address=None):
            future = Variable(name).get(timeout=180)
            assert future.result(timeout=120) == 42  # not OwnerDiedError
            Variable(name + "-done").set(True)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0, err[-3000:]
    assert f"MODE {'token' if uses_token else 'None'}" in out


def test_closing_the_scheduler_stops_the_workers_this_process_started(scheduler):
    """A worker left open (started off the main thread, where Ray sets no signal handlers)
    is stopped with its scheduler: the module fixture's teardown checks it, and that no
    process of the cluster remains."""
    import threading

    thread = threading.Thread(target=lambda: LEFT_OPEN.append(Worker(scheduler.address, nthreads=1).start()),
                              name="test-start-worker")
    thread.start()
    thread.join(200)
    assert LEFT_OPEN and LEFT_OPEN[0].alive()
