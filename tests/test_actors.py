"""Actors: ``submit(cls, actor=True)``, the ``Actor`` proxy and ``ActorFuture`` on Ray actors.

Scenarios after dask/distributed's ``distributed/tests/test_actor.py`` (named
where ported).  Each actor is a Ray worker process (~1 s to start here), so the
tests share a few.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import time

import pytest

from raydask import Actor, ActorFuture, BaseActorFuture, Future, get_worker

pytestmark = pytest.mark.timeout(60)

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


class Counter:
    n = 0

    def __init__(self, start=0):
        self.n = start

    def increment(self):
        self.n += 1
        return self.n

    def add(self, x):
        self.n += x
        return self.n

    def pid(self):
        return os.getpid()

    def where(self):
        return get_worker().address

    def sleep(self, seconds):
        time.sleep(seconds)
        return seconds


class AsyncCounter:
    def __init__(self):
        self.n = 0

    async def ainc(self):
        self.n += 1
        return self.n


class MyException(Exception):
    pass


class Broken:
    def method(self):
        raise MyException("from method")

    @property
    def prop(self):
        raise MyException("from property")


class FailsToStart:
    x = 0

    def __init__(self):
        raise ValueError("bar")


def inc(x):
    return x + 1


def increment_n(counter, n):
    """A task using the proxy it received (test_actor.py::test_many_computations)."""
    for _ in range(n):
        counter.increment().result()
    return type(counter).__name__


_shared: dict = {}


@pytest.fixture
def counter(client):
    """One Counter actor shared by this module's tests (``client`` is function-scoped)."""
    if _shared.get("client") is not client:
        fut = client.submit(Counter, actor=True)
        _shared.update(client=client, actor=(fut, fut.result()))
    return _shared["actor"]


def teardown_module():
    _shared.clear()  # releases the actor


def test_submit_returns_a_future_of_an_actor_proxy(client, counter):
    fut, proxy = counter
    assert isinstance(fut, Future)
    assert re.fullmatch(f"Counter-{UUID}", fut.key)  # actors are never pure (Dask)
    assert isinstance(proxy, Actor)
    assert repr(proxy) == f"<Actor: Counter, key={fut.key}>"
    assert proxy.key == fut.key
    assert fut.key in client.futures
    assert {"increment", "add", "n"} <= set(dir(proxy))
    assert hasattr(proxy, "increment") and not hasattr(proxy, "abc")


def test_method_calls_return_actor_futures(counter):
    _, proxy = counter
    start = proxy.n  # a plain attribute is read from the actor, as in Dask
    f = proxy.increment()
    assert isinstance(f, ActorFuture) and isinstance(f, BaseActorFuture)
    assert repr(f) == "<ActorFuture>"
    assert f.result() == start + 1
    assert f.result() == f.result()
    assert f.done()
    assert proxy.n == start + 1
    assert proxy.add(10).result() == start + 11


class OnlyInInit:
    def __init__(self):
        self.secret = 1

    def get(self):
        return self.secret


def test_attributes_only_the_class_declares_can_be_read(client):
    """As Dask (``getattr(self._cls, key)``): an attribute set only in ``__init__`` is no proxy attribute."""
    proxy = client.submit(OnlyInInit, actor=True).result()
    with pytest.raises(AttributeError, match="secret"):
        proxy.secret
    assert proxy.get().result() == 1


def test_calls_run_in_order_and_time_out(counter):
    _, proxy = counter
    slow = proxy.sleep(0.5)
    assert not slow.done()
    with pytest.raises(TimeoutError):
        slow.result(timeout="10ms")
    assert slow.result() == 0.5
    futures = [proxy.increment() for _ in range(20)]
    values = [f.result() for f in futures]
    assert values == list(range(values[0], values[0] + 20))


def test_actor_futures_are_awaitable(client):
    proxy = client.submit(AsyncCounter, actor=True).result()

    async def main():
        first = proxy.ainc()
        out = await asyncio.gather(*[proxy.ainc() for _ in range(9)])
        return await first, out

    first, out = asyncio.run(main())
    assert max(out + [first]) == 10


def test_exceptions_keep_their_type(client):
    """test_actor.py::test_exception, test_exceptions_create."""
    proxy = client.submit(Broken, actor=True).result()
    with pytest.raises(MyException, match="from method"):
        proxy.method().result()
    with pytest.raises(MyException, match="from property"):
        proxy.prop
    fut = client.submit(FailsToStart, actor=True)
    with pytest.raises(ValueError, match="bar"):
        fut.result()
    assert fut.status == "error"


def test_proxy_and_future_passed_to_tasks(client, counter):
    """test_actor.py::test_worker_actions and test_many_computations."""
    fut, proxy = counter
    before = proxy.n
    tasks = [client.submit(increment_n, proxy, 5, pure=False) for _ in range(3)]
    tasks.append(client.submit(increment_n, fut, 5, pure=False))  # the future arrives as the proxy
    assert client.gather(tasks) == ["Actor"] * 4
    assert proxy.n == before + 20


def test_get_worker_in_an_actor_method(client, counter):
    """test_actor.py::test_get_worker."""
    _, proxy = counter
    assert proxy.where().result() in client.scheduler_info()["workers"]


def test_constructor_arguments_may_be_futures(client):
    x = client.submit(inc, 41)
    proxy = client.submit(Counter, x, actor=True).result()
    assert proxy.n == 42
    proxy2 = client.submit(Counter, start=x, actor=True).result()
    assert proxy2.n == 42


def test_map_actors(client):
    futures = client.map(Counter, [1, 2], actors=True)
    assert len({f.key for f in futures}) == 2
    proxies = client.gather(futures)
    assert [p.increment().result() for p in proxies] == [2, 3]
    assert [p.pid().result() for p in proxies][0] != proxies[1].pid().result()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def test_actor_dies_when_future_and_proxies_are_released(client):
    """test_actor.py::test_gc: the Ray actor process exits once nothing refers to it."""
    fut = client.submit(Counter, actor=True)
    proxy = fut.result()
    pid = proxy.pid().result()
    del fut
    gc.collect()
    time.sleep(0.5)
    assert _alive(pid), "the proxy still holds the actor"
    assert proxy.increment().result() == 1
    del proxy
    gc.collect()
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def test_a_lost_actor_raises_runtime_error(client):
    """test_actor.py::test_failed_worker: calls on a dead actor raise Dask's RuntimeError."""
    import signal

    proxy = client.submit(Counter, actor=True).result()
    pid = proxy.pid().result()
    os.kill(pid, signal.SIGKILL)  # the actor process this test started
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(RuntimeError, match="Worker holding Actor was lost"):
        proxy.increment().result(timeout=20)


def test_placement_on_a_worker(client):
    address = next(iter(client.scheduler_info()["workers"]))
    proxy = client.submit(Counter, actor=True, workers=[address]).result()
    assert proxy.where().result() == address
    with pytest.raises(ValueError, match="no worker matches"):
        client.submit(Counter, actor=True, workers=["tcp://10.9.9.9:1"])


def test_bad_input(client):
    with pytest.raises(TypeError, match=r"actor=True needs a class, got <function inc at"):
        client.submit(inc, 1, actor=True)
    with pytest.raises(TypeError, match="needs a class, got <built-in function len>"):
        client.map(len, [[1]], actors=True)
    with pytest.raises(TypeError, match="'yes'"):
        client.submit(Counter, actor="yes")
    with pytest.raises(TypeError, match="First input to submit must be a callable function"):
        client.submit(3, actor=True)


@pytest.mark.timeout(120)
def test_example_runs(no_client, tmp_path):
    """``examples/actors.py`` runs start to end in its own process (its own Ray)."""
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "actors.py"
    env = dict(os.environ, RAY_TMPDIR=os.environ.get("RAY_TMPDIR", str(tmp_path)))
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=110, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert re.fullmatch(f"<Actor: Counter, key=Counter-{UUID}>", lines[0])
    assert lines[1:] == ["105", "n = 135", "['numbers']", "45", "[0, 1, 4, 9, 16]", "[25, 36]"]
