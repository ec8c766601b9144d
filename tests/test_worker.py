"""Inside tasks: get_client, worker_client, get_worker, secede/rejoin; default clients."""

from __future__ import annotations

import gc
import os
import time

import pytest

from raydask import (
    default_client, fire_and_forget, futures_of, get_client, get_worker, rejoin, secede,
    worker_client,
)


def inc(x):
    return x + 1


def fib(n):
    """Tasks launching tasks, blocking on them: every slot ends up held by a waiter."""
    if n < 2:
        return n
    client = get_client()
    a = client.submit(fib, n - 1)
    b = client.submit(fib, n - 2)
    return a.result() + b.result()


def sum_of_incs(n):
    with worker_client() as c:
        secede()
        futures = c.map(inc, range(n))
        total = sum(c.gather(futures))
        rejoin()
        return total


def test_tasks_submit_and_gather_without_deadlock(client):
    # 2 slots; fib(6) keeps far more than 2 blocked parent tasks alive at once.
    assert client.submit(fib, 6).result(timeout=90) == 8


def test_worker_client_and_secede(client):
    assert client.submit(sum_of_incs, 10).result(timeout=60) == sum(range(1, 11))


def test_get_worker_inside_and_outside_a_task(client):
    def where():
        w = get_worker()
        return w.address, w.get_current_task(), w.pid

    f = client.submit(where, key="where-1")
    address, task, pid = f.result()
    assert address in client.scheduler_info()["workers"]
    assert task == "where-1"
    assert pid != os.getpid()
    # an automatic key: the Ray task carries the function's name, not a name per task
    assert client.submit(where).result()[1] == "where"
    assert client.submit(where, key=("where", 2)).result()[1] == "('where', 2)"
    with pytest.raises(ValueError, match="No worker found"):
        get_worker()


def test_default_and_get_client_outside_tasks(client):
    assert default_client() is client
    assert get_client() is client
    assert default_client(c="mine") == "mine"


def test_fire_and_forget_keeps_work_alive(client, tmp_path):
    """The key stays held by the client until the task ends, then is let go."""
    path, go = tmp_path / "ran", tmp_path / "go"

    def touch(p, go):
        while not os.path.exists(go):  # runs until the test has looked (a sleep raced a slow gc)
            time.sleep(0.01)
        open(p, "w").write("yes")
        return "done"

    f = client.submit(touch, str(path), str(go), pure=False)
    key = f.key
    fire_and_forget(f)
    del f
    gc.collect()
    assert key not in client.futures
    assert [s.key for s in client._keys.keep_alive] == [key]
    go.write_text("")
    deadline = time.monotonic() + 20
    while client._keys.keep_alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not client._keys.keep_alive
    assert path.read_text() == "yes"


def test_futures_of_walks_structures(client):
    x, y = client.submit(inc, 1), client.submit(inc, 2)
    assert futures_of([x, {"a": (y, 3)}, {x}]) == [x, y]
    assert futures_of(5) == []
