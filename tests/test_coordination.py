"""Variable, Queue, Event, Lock, Semaphore and MultiLock on real Ray.

Each primitive is used from the client, from inside tasks, and from a second
client (a subprocess joining the same cluster with ``Client(address=...)``:
Ray allows one driver per process).  Names are unique per test
(:func:`name`): the coordination actor is shared by the whole session.
Scenarios ported from dask/distributed's tests name their source.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from raydask import Event, Lock, MultiLock, Queue, Semaphore, Variable

ROOT = Path(__file__).resolve().parents[1]

# the coordination actor is detached: stop it after this module, so the shared cluster goes on as it was
pytestmark = pytest.mark.usefixtures("no_coordination_actor_afterwards")


def name(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def subprocess_env(**extra):
    """The environment of a second driver joining the session's cluster.

    Nothing about token authentication is set: a joining ``Client(address=...)``
    turns it on only when the cluster uses it (``tests/test_servers.py`` has the
    regression test), so these subprocesses exercise that too.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.path.dirname(__file__)]), **extra)
    return env


def start_second_client(client, code):
    """Start ``code`` in a subprocess whose ``client`` joined this test's cluster (``Client(address=...)``)."""
    env = subprocess_env()
    env.pop("RAY_ADDRESS", None)
    script = (f"ADDRESS = {client.cluster._gcs_address!r}\nfrom raydask import *\n"
              "client = Client(address=ADDRESS, dashboard_address=None)\n" + textwrap.dedent(code))
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=str(ROOT))


# -- task functions --------------------------------------------------------------------
def inc(x):
    return x + 1


def variable_get_result(var):
    value = var.get(timeout=30)
    return value.result() if hasattr(value, "result") else value


def variable_set(var, value):
    var.set(value)
    return True


def queue_put_range(q, n):
    for i in range(n):
        q.put(i)
    return n


def queue_get_result(q):
    return q.get(timeout=30).result()


def submit_and_put(q):
    """A task's own Future through a Queue: it must outlive the task (the worker keeps running)."""
    from raydask import get_client

    f = get_client().submit(inc, 100, pure=False)
    f.result()
    q.put(f)
    return True


def wait_event(event, timeout):
    return event.wait(timeout)


def hold_lock(lock, seconds):
    with lock:
        start = time.time()
        time.sleep(seconds)
        return start, time.time()


def hold_semaphore(sem, seconds):
    with sem:
        start = time.time()
        time.sleep(seconds)
        return start, time.time()


def take_multilock(names, rounds):
    for _ in range(rounds):
        with MultiLock(names=names):
            time.sleep(0.002)
    return rounds


def acquire_and_die(lock_name, lease_timeout, stamp):
    lock = Lock(lock_name, lease_timeout=lease_timeout)
    assert lock.acquire(timeout=10)
    Variable(stamp).set(time.time())
    os._exit(1)


def overlaps(intervals):
    intervals = sorted(intervals)
    return any(b[0] < a[1] for a, b in zip(intervals, intervals[1:]))


# -- Variable ----------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_variable_set_get_delete(client):
    v = Variable(name("var"))
    assert Variable().name.startswith("variable-")
    with pytest.raises(TimeoutError):
        v.get(timeout=0.1)
    with pytest.raises(TimeoutError):
        v.get(timeout=0)
    v.set({"a": [1, 2]})
    assert v.get() == {"a": [1, 2]}
    assert Variable(v.name).get(timeout="1s") == {"a": [1, 2]}  # by name
    v.set(2)
    assert v.get() == 2
    v.delete()
    with pytest.raises(TimeoutError):
        v.get(timeout=0.1)


@pytest.mark.timeout(60)
def test_variable_get_waits_for_a_set_from_a_task(client):
    v = Variable(name("var"))
    waiting = client.submit(variable_get_result, v)  # blocks in the task until set
    time.sleep(0.3)
    assert not waiting.done()
    v.set(41)
    assert waiting.result(timeout=30) == 41
    assert client.submit(variable_set, v, "from task").result(timeout=30)
    assert v.get(timeout=5) == "from task"


@pytest.mark.timeout(60)
def test_future_through_a_variable(client):
    v = Variable(name("var"))
    f = client.submit(inc, 41, pure=False)
    key = f.key
    v.set(f)
    del f
    gc.collect()  # the client dropped its Future: the Variable keeps the data alive
    out = v.get()
    assert out.key == key and out.result(timeout=30) == 42
    assert client.submit(variable_get_result, v).result(timeout=30) == 42  # and in a task


@pytest.mark.timeout(60)
def test_long_waits_go_in_slices(client, monkeypatch):
    """A wait is sent as calls of at most WAIT_SLICE s, so a dead waiter frees its actor thread."""
    import threading

    from raydask import coordinator

    monkeypatch.setattr(coordinator, "WAIT_SLICE", 0.2)
    v, e = Variable(name("var")), Event(name("ev"))
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        v.get(timeout=0.7)
    assert 0.6 < time.monotonic() - start < 5
    threading.Timer(0.5, v.set, args=(7,)).start()
    threading.Timer(0.5, e.set).start()
    assert v.get(timeout=10) == 7  # set during the third slice
    assert e.wait(timeout=10) is True
    sem = Semaphore(name=name("sem"))
    assert sem.acquire()
    threading.Timer(0.5, sem.release).start()
    assert Semaphore(name=sem.name).acquire(timeout=10)


# -- Queue ---------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_queue_put_get_qsize_batch(client):
    q = Queue(name("q"))
    assert Queue().name.startswith("queue-")
    assert q.qsize() == 0
    with pytest.raises(TimeoutError):
        q.get(timeout=0.1)
    for i in range(5):
        q.put(i)
    assert q.qsize() == 5
    assert q.get() == 0
    assert q.get(batch=2) == [1, 2]
    assert q.get(batch=True) == [3, 4]
    assert q.get(batch=True) == []
    with pytest.raises(NotImplementedError):  # Dask's rule
        q.get(batch=2, timeout=1)
    q.close()


@pytest.mark.timeout(60)
def test_queue_maxsize_blocks_put(client):
    q = Queue(name("q"), maxsize=1)
    q.put("a")
    with pytest.raises(TimeoutError):
        q.put("b", timeout=0.1)
    with pytest.raises(TimeoutError):
        q.put("b", timeout=0)
    assert Queue(q.name).get() == "a"  # by name; the first user set maxsize
    q.put("b", timeout=1)
    assert q.get() == "b"


@pytest.mark.timeout(60)
def test_queue_between_tasks_and_client(client):
    q = Queue(name("q"))
    assert client.submit(queue_put_range, q, 3).result(timeout=30) == 3
    assert sorted(q.get(batch=3)) == [0, 1, 2]
    consumer = client.submit(queue_get_result, q)
    q.put(client.submit(inc, 1, pure=False))  # a Future, got and computed in a task
    assert consumer.result(timeout=30) == 2
    assert client.submit(submit_and_put, q).result(timeout=30)
    assert q.get(timeout=10).result(timeout=30) == 101  # a task's Future, in the client


# -- Event ---------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_event_set_clear_wait(client):
    e = Event(name("ev"))
    assert not e.is_set()
    assert e.wait(timeout=0.1) is False
    assert e.wait(timeout=0) is False
    waiter = client.submit(wait_event, e, 30)
    time.sleep(0.3)
    assert not waiter.done()
    e.set()
    assert waiter.result(timeout=30) is True
    assert Event(e.name).is_set() and e.wait() is True
    e.clear()
    assert not e.is_set()
    assert client.submit(wait_event, e, 0.2).result(timeout=30) is False


# -- Lock ------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_lock_acquire_release(client):
    lock = Lock(name("lock"))
    assert Lock().name.startswith("lock-")
    assert not lock.locked()
    assert lock.acquire() is True
    assert lock.locked()
    other = Lock(lock.name)
    assert other.acquire(blocking=False) is False
    assert other.acquire(timeout=0.1) is False
    with pytest.raises(RuntimeError, match="Released too often"):  # Dask's error: other holds nothing
        other.release()
    assert lock.release() is True
    assert not lock.locked()
    with pytest.raises(RuntimeError, match="Released too often"):
        lock.release()
    with other:
        assert lock.locked()
    assert not lock.locked()


@pytest.mark.timeout(60)
def test_a_live_holder_keeps_its_lease_past_the_timeout(client):
    """The refresher renews the lease every lease_timeout / 5, also across acquire/release pairs."""
    lock = Lock(name("lock"), lease_timeout=1)
    for _ in range(3):  # pairs in a row must not confuse the refresher's schedule
        assert lock.acquire()
        lock.release()
    assert lock.acquire()
    time.sleep(2.5)
    assert Lock(lock.name).acquire(blocking=False) is False
    lock.release()
    assert Lock(lock.name).acquire(blocking=False) is True


@pytest.mark.timeout(60)
def test_lock_excludes_tasks(client):
    """After distributed/tests/test_locks.py::test_lock: holders never overlap."""
    lock = Lock(name("lock"))
    intervals = client.gather([client.submit(hold_lock, lock, 0.2, pure=False) for _ in range(4)])
    assert not overlaps(intervals)
    assert not lock.locked()


@pytest.mark.timeout(60)
def test_lock_of_a_dead_task_is_freed_by_lease_timeout(client):
    lock_name, stamp = name("lock"), name("stamp")
    lease_timeout = 2.0
    f = client.submit(acquire_and_die, lock_name, lease_timeout, stamp, retries=0, pure=False)
    with pytest.raises(Exception):
        f.result(timeout=60)
    acquired_at = Variable(stamp).get(timeout=10)
    lock = Lock(lock_name)
    assert lock.locked()  # the dead task's lease is still there
    assert lock.acquire(timeout=lease_timeout + 5)
    freed_after = time.time() - acquired_at
    lock.release()
    print(f"lease of a dead task freed {freed_after:.2f} s after its acquire (lease_timeout {lease_timeout} s)")
    assert freed_after <= lease_timeout + 1.5


# -- Semaphore -------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_semaphore_leases(client):
    sem = Semaphore(max_leases=2, name=name("sem"))
    assert Semaphore().name.startswith("semaphore-")
    assert sem.get_value() == 0
    assert sem.acquire() and sem.acquire(timeout=1)
    assert sem.get_value() == 2
    assert sem.acquire(timeout=0.1) is False
    assert sem.release() is True
    assert sem.get_value() == 1
    with pytest.raises(ValueError, match="Inconsistent max leases: 3, expected: 2"):
        Semaphore(max_leases=3, name=sem.name).acquire()
    sem.release()
    with pytest.raises(RuntimeError, match="Released too often"):
        sem.release()
    with sem:
        assert sem.get_value() == 1
    assert sem.get_value() == 0
    sem.close()


@pytest.mark.timeout(60)
def test_semaphore_limits_tasks(client):
    sem = Semaphore(max_leases=1, name=name("sem"))
    intervals = client.gather([client.submit(hold_semaphore, sem, 0.2, pure=False) for _ in range(3)])
    assert not overlaps(intervals)


# -- MultiLock -------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_multilock(client):
    """After distributed/tests/test_multi_locks.py::test_multiple_locks."""
    a, b, c = name("a"), name("b"), name("c")
    first = MultiLock(names=[a, b])
    assert first.acquire() is True and first.locked()
    assert MultiLock(names=[b, c]).acquire(blocking=False) is False
    assert MultiLock(names=[b, c]).acquire(timeout=0.1) is False
    partial = MultiLock(names=[b, c])
    assert partial.acquire(timeout=1, num_locks=1) is True  # c is free
    partial.release()
    first.release()
    assert not first.locked()
    with pytest.raises(ValueError, match="Lock is not yet acquired"):
        first.release()
    with MultiLock(names=[b, c]):
        pass


@pytest.mark.timeout(60)
def test_multilock_in_opposite_orders_does_not_deadlock(client):
    a, b = name("a"), name("b")
    futures = [client.submit(take_multilock, names, 25, pure=False) for names in ([a, b], [b, a], [a, b], [b, a])]
    for _ in range(25):
        with MultiLock(names=[b, a]):
            pass
    assert client.gather(futures) == [25] * 4


# -- a second client on the same cluster -------------------------------------------------------
@pytest.mark.timeout(120)
def test_second_client_by_name(client):
    var, q, ev, lock, done = name("var"), name("q"), name("ev"), name("lock"), name("done")
    Variable(var).set(client.submit(inc, 9, pure=False))
    held = Lock(lock)
    assert held.acquire()
    # the second client waits for us to take its Future: its data lives while it runs
    proc = start_second_client(client, f"""
        print(Variable({var!r}).get(timeout=10).result(), flush=True)   # the first client's Future
        print(Lock({lock!r}).acquire(blocking=False), flush=True)       # held by the first client
        f = client.submit(lambda x: x * 2, 21, pure=False)
        Queue({q!r}).put(f)
        Queue({q!r}).put("plain")
        Event({ev!r}).set()
        print(Event({done!r}).wait(timeout=60), flush=True)
        client.close()
    """)
    try:
        assert Event(ev).wait(timeout=90), "the second client did not get going"
        got = Queue(q).get(timeout=10)
        assert got.result(timeout=30) == 42  # the second client's Future, in this client
        assert Queue(q).get(timeout=10) == "plain"
        Event(done).set()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.split() == ["10", "False", "True"]
    assert held.locked()  # still ours: the second client's failed acquire took nothing
    held.release()


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_bad_input_raises_and_leaves_the_cluster_working(client):
    with pytest.raises(ValueError, match="max_leases"):
        Semaphore(max_leases=0)
    with pytest.raises(TypeError, match="'2'"):
        Semaphore(max_leases="2")
    with pytest.raises(TypeError, match="True"):
        Semaphore(max_leases=True)
    with pytest.raises(TypeError, match="5"):
        Variable(5)
    with pytest.raises(TypeError, match="'a'"):
        Queue(maxsize="a")
    with pytest.raises(TypeError, match="'ab'"):
        MultiLock(names="ab")
    with pytest.raises(TypeError, match="3"):
        MultiLock(names=["a", 3])
    v, q, e = Variable(name("var")), Queue(name("q")), Event(name("ev"))
    lock, sem, ml = Lock(name("lock")), Semaphore(name=name("sem")), MultiLock([name("m")])
    for call in (lambda: v.get(timeout=-1), lambda: v.set(1, timeout=-1), lambda: q.get(timeout=-1),
                 lambda: q.put(1, timeout=-1), lambda: e.wait(timeout=-1), lambda: lock.acquire(timeout=-1),
                 lambda: sem.acquire(timeout=-1), lambda: ml.acquire(timeout=-1)):
        with pytest.raises(ValueError, match="-1"):
            call()
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(blocking=False, timeout=1)
    with pytest.raises(TypeError, match="'no'"):
        lock.acquire(blocking="no")
    with pytest.raises(TypeError, match="'x'"):
        q.get(batch="x")
    with pytest.raises(ValueError, match="'soon'"):
        v.get(timeout="soon")
    with pytest.raises(TypeError, match=r"\[1\]"):
        e.wait(timeout=[1])
    with pytest.raises(ValueError, match="num_locks"):
        ml.acquire(num_locks=2)
    with pytest.raises(RuntimeError, match="Released too often"):
        lock.release()
    with pytest.raises(ValueError, match="not yet acquired"):
        ml.release()
    # nothing was left half-done: everything still works
    assert client.submit(inc, 1, pure=False).result(timeout=30) == 2
    v.set(1)
    assert v.get() == 1 and lock.acquire(blocking=False) and lock.release()
    q.put(1)
    assert q.get() == 1


@pytest.mark.timeout(60)
def test_without_a_client_raises_runtime_error():
    code = "from raydask import Variable\ntry:\n    Variable('x').get()\nexcept RuntimeError as e:\n    print('RuntimeError', e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.startswith("RuntimeError Variable object not properly initialized"), out.stderr


# -- the example -------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_example_runs(client):
    """examples/coordination.py, run as a script joining this cluster (RAY_ADDRESS)."""
    env = subprocess_env(RAY_ADDRESS=client.cluster._gcs_address)
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "coordination.py")], capture_output=True,
                         text=True, timeout=110, env=env, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "done" in out.stdout
