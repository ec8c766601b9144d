"""Parity rows for the coordination primitives: the same snippet on dask.distributed and raydask.

As ``tests/test_parity.py``: every test takes ``impl`` (``distributed`` or
``raydask``) and asserts what a Dask user observes.  Where raydask differs on
purpose the test says so; each such difference is in ``docs/migrating.md``.
"""

from __future__ import annotations

import importlib
import time
import types
import uuid

import pytest

from conftest import need

# the coordination actor is detached: stop it after this module, so the shared cluster goes on as it was
pytestmark = [pytest.mark.parity, pytest.mark.timeout(60), pytest.mark.usefixtures("no_coordination_actor_afterwards")]


def inc(x):
    return x + 1


def locked_section(module, lock_name, seconds):
    mod = importlib.import_module(module)
    with mod.Lock(lock_name):
        start = time.time()
        time.sleep(seconds)
        return start, time.time()


def get_from_variable(module, var_name):
    mod = importlib.import_module(module)
    return mod.Variable(var_name).get(timeout=10).result()


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def distributed_client():
    distributed = need("distributed")
    client = distributed.Client(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    yield client
    client.close()


@pytest.fixture(params=["distributed", "raydask"])
def impl(request):
    if request.param == "distributed":
        client = request.getfixturevalue("distributed_client")
        import distributed as mod
    else:
        client = request.getfixturevalue("client")
        import raydask as mod
    return types.SimpleNamespace(name=request.param, mod=mod, client=client)


def test_variable_semantics(impl):
    m = impl.mod
    v = m.Variable(name("var"))
    assert m.Variable().name.startswith("variable-")
    with pytest.raises(TimeoutError):
        v.get(timeout=0.1)
    v.set(123)
    assert v.get() == 123
    assert m.Variable(v.name).get() == 123
    v.set([1, "two"])
    assert v.get() == [1, "two"]
    v.delete()
    with pytest.raises(TimeoutError):
        v.get(timeout=0.1)


def test_future_through_variable(impl):
    m, c = impl.mod, impl.client
    v = m.Variable(name("var"))
    f = c.submit(inc, 1, pure=False)
    v.set(f)
    got = v.get()
    assert isinstance(got, m.Future) and got.key == f.key and got.result() == 2
    assert c.submit(get_from_variable, impl.name, v.name, pure=False).result() == 2


def test_queue_semantics(impl):
    m = impl.mod
    q = m.Queue(name("q"))
    assert m.Queue().name.startswith("queue-")
    for i in range(4):
        q.put(i)
    assert q.qsize() == 4
    assert q.get() == 0
    assert q.get(batch=2) == [1, 2]
    assert q.get(batch=True) == [3]
    assert q.get(batch=True) == []
    with pytest.raises(TimeoutError):
        q.get(timeout=0.1)
    with pytest.raises(NotImplementedError):
        q.get(batch=2, timeout=1)
    small = m.Queue(name("q"), maxsize=1)
    small.put("a")
    with pytest.raises(TimeoutError):
        small.put("b", timeout=0.1)
    f = impl.client.submit(inc, 10, pure=False)
    q.put(f)
    assert q.get().result() == 11


def test_event_semantics(impl):
    m = impl.mod
    e = m.Event(name("ev"))
    assert not e.is_set()
    assert e.wait(timeout=0.1) is False
    e.set()
    assert e.is_set() and m.Event(e.name).is_set()
    assert e.wait(timeout=0.1) is True
    e.clear()
    assert not e.is_set()


def test_lock_semantics(impl):
    m = impl.mod
    lock = m.Lock(name("lock"))
    assert lock.acquire() is True
    assert lock.locked()
    other = m.Lock(lock.name)
    assert other.acquire(blocking=False) is False
    assert other.acquire(timeout=0.1) is False
    with pytest.raises(ValueError, match="can't specify a timeout for a non-blocking call"):
        other.acquire(blocking=False, timeout=1)
    with pytest.raises(RuntimeError, match="Released too often"):
        other.release()
    assert lock.release() is True
    assert not lock.locked()
    with pytest.raises(RuntimeError, match="Released too often"):
        lock.release()
    with lock:
        assert other.locked()
    assert not other.locked()


def test_lock_in_tasks_excludes(impl):
    c = impl.client
    lock_name = name("lock")
    spans = sorted(c.gather([c.submit(locked_section, impl.name, lock_name, 0.1, pure=False) for _ in range(3)]))
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:]))


def test_semaphore_semantics(impl):
    m = impl.mod
    sem = m.Semaphore(max_leases=2, name=name("sem"))
    assert sem.acquire() and sem.acquire()
    assert sem.get_value() == 2
    assert sem.acquire(timeout=0.1) is False
    with pytest.raises(ValueError, match="Inconsistent max leases: 3, expected: 2"):
        m.Semaphore(max_leases=3, name=sem.name).acquire(timeout=0.1)
    assert sem.release() is True and sem.release() is True
    with pytest.raises(RuntimeError, match="Released too often"):
        sem.release()
    with sem:
        assert sem.get_value() == 1
    assert sem.get_value() == 0


def test_multilock_semantics(impl):
    m = impl.mod
    a, b, c = name("a"), name("b"), name("c")
    first = m.MultiLock(names=[a, b])
    assert first.acquire() is True and first.locked()
    assert m.MultiLock(names=[b, c]).acquire(timeout=0.1) is False
    one = m.MultiLock(names=[b, c])
    assert one.acquire(timeout=1, num_locks=1) is True
    one.release()
    first.release()
    unheld = m.MultiLock(names=[a])
    with pytest.raises(ValueError, match="Lock is not yet acquired"):
        unheld.release()
    with m.MultiLock(names=[a, b, c]):
        pass


def test_negative_timeouts_raise_value_error(impl):
    m = impl.mod
    for call in (lambda: m.Variable(name("v")).get(timeout=-1), lambda: m.Queue(name("q")).get(timeout=-1),
                 lambda: m.Event(name("e")).wait(timeout=-1), lambda: m.Lock(name("l")).acquire(timeout=-1),
                 lambda: m.Semaphore(name=name("s")).acquire(timeout=-1)):
        with pytest.raises(ValueError):
            call()
    assert impl.client.submit(inc, 1, pure=False).result() == 2  # still working
