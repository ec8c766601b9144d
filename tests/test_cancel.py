"""Cancelling running tasks: Ray interrupts them, and ``force=True`` ends one that ignores it.

Dask never interrupts a running task (dask/distributed#4694); raydask keeps
Ray's interrupt, and ``cancel(force=True)`` kills the worker process of a task
that does not react to it within ``FORCE_GRACE`` seconds.
"""

from __future__ import annotations

import os
import time

import psutil
import pytest
import ray

from raydask.cancelling import FORCE_GRACE

pytestmark = pytest.mark.timeout(90)


def report_pid_then_block(path, seconds):
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(seconds)  # one long C call: Ray's interrupt lands only between bytecodes
    return "finished"


def report_pid_then_loop(path, seconds):
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return "finished"


def _started(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not (os.path.exists(path) and open(path).read()):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    return int(open(path).read())


def _ended(future, timeout):
    ready, _ = ray.wait([future._state.ref], timeout=timeout, fetch_local=False)
    return bool(ready)


def test_cancel_interrupts_a_running_task(client, tmp_path):
    path = str(tmp_path / "pid")
    f = client.submit(report_pid_then_loop, path, 60, pure=False)
    pid = _started(path)
    f.cancel()
    assert f.status == "cancelled"
    assert _ended(f, 10)  # interrupted, long before its 60 s
    assert psutil.pid_exists(pid)  # the worker process lives on


def test_cancel_force_kills_a_task_that_ignores_the_interrupt(client, tmp_path):
    path = str(tmp_path / "pid")
    f = client.submit(report_pid_then_block, path, 60, pure=False)
    pid = _started(path)
    started = time.monotonic()
    f.cancel(force=True)
    assert f.status == "cancelled"
    assert _ended(f, FORCE_GRACE + 20)
    assert time.monotonic() - started < FORCE_GRACE + 20
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the worker process survived cancel(force=True)"
        time.sleep(0.1)
    assert client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3  # the cluster works on


def test_cancel_without_force_leaves_a_blocked_task_running(client, tmp_path):
    path = str(tmp_path / "pid")
    f = client.submit(report_pid_then_block, path, 4, pure=False)
    pid = _started(path)
    f.cancel()
    assert not _ended(f, 1.5)  # Ray's interrupt waits for the C call to return
    assert psutil.pid_exists(pid)
    assert _ended(f, 30)
