"""Parity rows for Client and Future methods Dask futures code reaches for (task "surface").

``Client.as_current``, ``Client.futures_of`` (and ``futures_of(..., client=)``),
``Future.bind_client`` / ``Future.executor``, ``Client.restart_workers``'s
refusals, ``Client.run_on_scheduler`` and ``Client.story``: one snippet, both
engines, in the style of :mod:`test_parity` (whose ``impl`` fixture this reuses).
Where raydask differs on purpose the test branches on ``impl.name`` and says
why (listed in docs/migrating.md, "Scheduler-side calls").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import pickle
import threading
import time

import pytest

from conftest import need
from test_parity import distributed_client, impl, inc  # noqa: F401 - fixtures

pytestmark = [pytest.mark.parity, pytest.mark.timeout(90)]


def fail(x):
    raise ZeroDivisionError(f"no {x}")


def sleep_then(value, delay):
    time.sleep(delay)
    return value


def cancelled_error_type(impl):
    """Where each engine keeps ``FuturesCancelledError`` (Dask: ``distributed.client`` only)."""
    return importlib.import_module(f"{impl.name}.client").FuturesCancelledError


def second_client(impl):
    """Another client of the same cluster, not the default one."""
    if impl.name == "distributed":
        return impl.Client(impl.client.scheduler.address, set_as_default=False)
    # raydask: a second client in a process already joined to Ray uses that connection
    return impl.Client(dashboard_address=None, set_as_default=False)


# -- Client.as_current --------------------------------------------------------------------------
def test_as_current_makes_the_client_current_in_this_thread_only(impl):
    m = importlib.import_module(impl.name)
    with pytest.raises(ValueError, match="Not running inside the `as_current` context manager"):
        impl.Client.current(allow_global=False)
    other = second_client(impl)
    dask = need("dask")
    scheduler_before = dask.config.get("scheduler", None)  # earlier tests' clients may have set it
    try:
        assert m.default_client() is impl.client and impl.get_client() is impl.client
        seen = {}
        entered, checked = threading.Event(), threading.Event()

        def elsewhere():
            entered.wait(30)
            seen["thread"] = m.default_client()
            checked.set()

        t = threading.Thread(target=elsewhere, name="surface-as-current")
        t.start()
        with other.as_current():
            assert impl.Client.current(allow_global=False) is other
            assert impl.Client.current() is other
            assert m.default_client() is other and impl.get_client() is other
            entered.set()
            assert checked.wait(30)
            dask = need("dask")
            if impl.name == "raydask":  # Dask collections computed here run on `other`
                assert dask.config.get("scheduler") == other.get
            else:
                assert dask.config.get("scheduler") == "dask.distributed"
            assert dask.delayed(inc)(1).compute() == 2
            with impl.client.as_current():  # nested: the inner one wins, then the outer is back
                assert impl.get_client() is impl.client
            assert impl.get_client() is other
        t.join(30)
        assert seen["thread"] is impl.client  # another thread kept the default client
        if impl.name == "raydask":  # the block's scheduler setting is undone: what it was before
            assert dask.config.get("scheduler", None) == scheduler_before
        assert m.default_client() is impl.client
        with pytest.raises(ValueError):
            impl.Client.current(allow_global=False)
    finally:
        other.close()


def test_as_current_is_task_local_in_asyncio(impl):
    other = second_client(impl)
    try:
        async def inside():
            with other.as_current():
                await asyncio.sleep(0.05)
                return impl.Client.current()

        async def outside():
            await asyncio.sleep(0.02)  # runs while inside() holds its block
            return impl.Client.current()

        async def both():
            return await asyncio.gather(inside(), outside())

        got_in, got_out = asyncio.run(both())
        assert got_in is other and got_out is impl.client
    finally:
        other.close()


def test_with_client_makes_it_current_inside_the_block(impl):
    m = importlib.import_module(impl.name)
    if impl.name == "distributed":
        other = impl.Client(impl.client.scheduler.address)
    else:
        other = impl.Client(dashboard_address=None)
    try:
        with other as c:
            assert c is other
            assert impl.Client.current(allow_global=False) is other
            assert c.submit(inc, 1).result(timeout=60) == 2
        with pytest.raises(ValueError, match="Not running inside the `as_current` context manager"):
            impl.Client.current(allow_global=False)
    finally:
        other.close()
    assert m.default_client() is impl.client  # the shared client is the default again
    assert impl.client.submit(inc, 2).result(timeout=60) == 3


# -- futures_of -----------------------------------------------------------------------------------
def test_client_futures_of(impl):
    c = impl.client
    a, b = c.submit(inc, 1), c.submit(inc, 2)
    assert c.futures_of([a, {"x": (b,)}, 3]) == [a, b]
    assert c.futures_of(a) == [a]
    assert c.futures_of([1, "x"]) == []
    assert impl.futures_of([a, b], client=c) == [a, b]
    assert c.gather([a, b]) == [2, 3]


def test_futures_of_with_a_client_raises_for_cancelled_futures(impl):
    c = impl.client
    ok = c.submit(inc, 10)
    gone = c.submit(sleep_then, 1, 5, pure=False)
    gone2 = c.submit(sleep_then, 2, 5, pure=False)
    c.cancel([gone, gone2], reason="surface-test", msg="cancelled by the test")
    deadline = time.monotonic() + 30
    while not (gone.cancelled() and gone2.cancelled()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert impl.futures_of([ok, gone]) == [ok, gone]  # without a client: no check, as Dask
    with pytest.raises(cancelled_error_type(impl)) as info:
        c.futures_of([ok, gone, gone2])
    err = info.value
    assert isinstance(err, concurrent.futures.CancelledError)
    assert str(err).startswith("2 Futures cancelled:\nReasons:\n2 Futures cancelled for reason: surface-test.")
    assert "Message: cancelled by the test" in str(err)
    assert [g.reason for g in err.error_groups] == ["surface-test"]
    assert {e.key for e in err.error_groups[0].errors} == {gone.key, gone2.key}
    with pytest.raises(cancelled_error_type(impl), match="1 Future cancelled:"):
        impl.futures_of([gone], client=c)
    assert ok.result(timeout=30) == 11


# -- Future.bind_client, Future.executor ----------------------------------------------------------
def test_bind_client_attaches_an_unpickled_future(impl):
    c = impl.client
    f = c.submit(inc, 41)
    assert f.result(timeout=30) == 42
    assert f.executor is c
    g = pickle.loads(pickle.dumps(f))
    assert g.key == f.key
    g.bind_client(c)
    assert g.client is c and g.executor is c
    assert g.status == "finished"
    assert g.result(timeout=30) == 42
    g.bind_client(c)  # again: nothing changes
    assert g.result(timeout=30) == 42


# -- Client.restart_workers: what cannot be restarted ---------------------------------------------
def test_restart_workers_refuses_a_worker_it_cannot_restart(impl):
    worker = next(iter(impl.client.scheduler_info()["workers"]))
    # Dask: the in-process worker has no nanny; raydask: the only worker is Ray's head node
    match = "requires a nanny" if impl.name == "distributed" else "head node"
    with pytest.raises(ValueError, match=match):
        impl.client.restart_workers([worker])
    assert impl.client.submit(inc, 1).result(timeout=30) == 2  # the client keeps working


# -- Client.run_on_scheduler ------------------------------------------------------------------------
def on_scheduler(x, y=0, dask_scheduler=None):
    return x + y, sorted(dask_scheduler.workers)


def plain(x, y=0):
    return x * 10 + y


async def awaited(x, dask_scheduler=None):
    await asyncio.sleep(0.01)
    return x, len(dask_scheduler.workers)


def raises():
    raise KeyError("from the scheduler")


def test_run_on_scheduler(impl):
    c = impl.client
    workers = sorted(c.scheduler_info()["workers"])
    assert c.run_on_scheduler(plain, 4, y=2) == 42
    assert c.run_on_scheduler(on_scheduler, 1, y=2) == (3, workers)
    assert c.run_on_scheduler(awaited, 7) == (7, len(workers))
    assert c.run_on_scheduler(awaited, 7, wait=False) is None
    with pytest.raises(KeyError, match="from the scheduler"):
        c.run_on_scheduler(raises)
    if impl.name == "distributed":  # Dask's scheduler asserts: wait=False is for async functions only
        with pytest.raises(AssertionError, match="Combination not supported"):
            c.run_on_scheduler(plain, 1, wait=False)
    else:  # raydask says so in a ValueError before running anything
        with pytest.raises(ValueError, match="Combination not supported"):
            c.run_on_scheduler(plain, 1, wait=False)
    assert c.submit(inc, 1).result(timeout=30) == 2


def test_run_on_scheduler_and_story_in_an_asynchronous_client(impl):
    if impl.name == "distributed":
        address = impl.client.scheduler.address
    else:
        address = None  # raydask: the process's Ray connection

    async def main():
        async with impl.Client(address, asynchronous=True, set_as_default=False,
                               **({} if impl.name == "distributed" else {"dashboard_address": None})) as ac:
            assert await ac.run_on_scheduler(plain, 3, y=1) == 31
            x, n = await ac.run_on_scheduler(awaited, 5)
            assert x == 5 and n >= 1
            assert await ac.run_on_scheduler(awaited, 5, wait=False) is None
            f = ac.submit(inc, 9_876)
            assert await f == 9_877
            story = await ac.story(f.key)  # story is awaitable too
            assert ("released", "waiting") in [(r[2], r[3]) for r in story if r[0] == "scheduler"]
            assert ac.futures_of([f]) == [f]

    asyncio.run(main())


# -- Client.story ------------------------------------------------------------------------------------
def _scheduler_rows(story, key):
    rows = [r for r in story if r[0] == "scheduler"]
    for r in rows:
        assert len(r) == 7 and r[1] == key
        assert isinstance(r[4], dict) and isinstance(r[5], str) and isinstance(r[6], float)
    assert [r[6] for r in rows] == sorted(r[6] for r in rows)
    return [(r[2], r[3]) for r in rows]


def test_story_of_a_finished_key(impl):
    c = impl.client
    f = c.submit(inc, 123_456)
    assert f.result(timeout=30) == 123_457
    story = c.story(f.key)
    assert story and all(isinstance(r, tuple) and r[1] == f.key for r in story)
    transitions = _scheduler_rows(story, f.key)
    assert transitions[0] == ("released", "waiting")
    assert ("waiting", "processing") in transitions
    assert transitions[-1] == ("processing", "memory")
    workers = set(c.scheduler_info()["workers"])
    assert {r[0] for r in story} - {"scheduler"} <= workers  # the other rows are the worker's
    assert any(r[0] in workers and "executing" in r[2:4] for r in story)
    finished = next(r for r in story if r[0] == "scheduler" and r[3] == "memory")
    assert finished[5].startswith("task-finished-")
    by_stimulus = c.story(finished[5])  # a stimulus id finds its records too (Dask: the worker's)
    assert by_stimulus and all(r[1] == f.key and finished[5] in r for r in by_stimulus)
    assert c.story("no-such-key-or-stimulus") == []


def test_story_of_an_erred_key(impl):
    c = impl.client
    f = c.submit(fail, 1)
    with pytest.raises(ZeroDivisionError):
        f.result(timeout=30)
    transitions = _scheduler_rows(c.story(f.key), f.key)
    assert transitions[0] == ("released", "waiting")
    assert transitions[-1] == ("processing", "erred")
    stimulus = next(r for r in c.story(f.key) if r[0] == "scheduler" and r[3] == "erred")[5]
    assert stimulus.startswith("task-erred-")


def test_story_of_scattered_data(impl):
    c = impl.client
    s = c.scatter(424_242)
    story = c.story(s.key)
    assert story and all(r[1] == s.key for r in story)
    assert any(r[2:4] == ("released", "memory") for r in story)  # in memory from the start
    # Dask's story of scattered data is the worker's; raydask's one record is the scheduler's
    # (Ray's object store holds it; no worker ran anything)
    assert {r[0] for r in story} == ({"scheduler"} if impl.name == "raydask" else set(c.scheduler_info()["workers"]))
