"""The asynchronous client: ``await`` futures, ``async with Client(asynchronous=True)``,
``async for`` over ``as_completed`` — on the shared Ray cluster, each test in its own loop.

An asynchronous client made while the shared client runs joins that Ray (as a
second client of the same process); the tests that start a cluster of their
own (``LocalCluster(asynchronous=True)``) come last, as they close the shared one.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest
import ray

from conftest import need
from raydask import Client, as_completed, wait
from raydask.errors import CancelledError

pytestmark = pytest.mark.timeout(120)


def inc(x):
    return x + 1


def boom(x):
    raise ValueError(f"boom {x}")


def slow(x, seconds=0.5):
    time.sleep(seconds)
    return x


def arun(body, client):
    """Run ``body(async_client)`` in a fresh event loop on an asynchronous client of the shared Ray."""

    async def main():
        async with Client(asynchronous=True, set_as_default=False, dashboard_address=None) as c:
            assert c.status == "running" and c.asynchronous
            return await body(c)

    return asyncio.run(main())


def test_await_client_and_close(client):
    async def main():
        c = Client(asynchronous=True, set_as_default=False, dashboard_address=None)
        assert c.status == "newly-created"  # nothing starts until awaited
        assert await c is c
        assert await c is c  # awaiting again is harmless
        assert c.status == "running"
        assert await c.submit(inc, 1) == 2
        await c.close()
        assert c.status == "closed"

    asyncio.run(main())
    assert client.submit(inc, 10).result(timeout=30) == 11  # the joined Ray still serves the shared client


def test_awaitable_results_gather_scatter(client):
    async def body(c):
        f = c.submit(inc, 1)
        assert await f == 2
        assert await f.result() == 2  # result() is a coroutine on an asynchronous client
        assert f.status == "finished"
        fs = c.map(inc, range(10))
        assert await c.gather(fs) == list(range(1, 11))
        assert await c.gather({"a": fs[0], "b": [fs[1], (fs[2],)]}) == {"a": 1, "b": [2, (3,)]}
        assert await c.gather(fs[3]) == 4
        x = await c.scatter(41)
        assert await c.submit(inc, x) == 42
        d = await c.scatter({"k": 1, "j": 2})
        assert sorted(d) == ["j", "k"] and await d["k"] == 1
        assert await asyncio.gather(*c.map(inc, range(5))) == [1, 2, 3, 4, 5]

    arun(body, client)


def test_errors_are_the_task_s_own(client):
    async def body(c):
        f = c.submit(boom, 1)
        with pytest.raises(ValueError, match="boom 1"):
            await f
        assert f.status == "error"
        exc = await f.exception()
        assert isinstance(exc, ValueError) and str(exc) == "boom 1"
        tb = await f.traceback()
        assert tb is not None
        with pytest.raises(ValueError, match="boom 1"):
            await c.gather([c.submit(inc, 1), f])
        assert await c.gather([c.submit(inc, 1), f], errors="skip") == [2]

    arun(body, client)


def test_timeouts_and_the_awaiting_task_s_cancellation(client):
    async def body(c):
        f = c.submit(slow, 1, 1.0, pure=False)
        with pytest.raises(TimeoutError):
            await f.result(timeout=0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(f, 0.05)  # the waiting coroutine is cancelled, not the Dask future
        assert f.status == "pending"
        waiter = asyncio.ensure_future(f.result())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await f == 1 and f.status == "finished"
        with pytest.raises(TimeoutError):
            await wait([c.submit(slow, 2, 1.0, pure=False)], timeout=0.05)

    arun(body, client)


def test_wait_and_cancel_and_restart(client):
    async def body(c):
        fs = c.map(inc, range(20))
        done, not_done = await wait(fs)
        assert len(done) == 20 and not not_done
        s = c.submit(slow, 3, 5.0, pure=False)
        first = await wait([s, c.submit(inc, 100)], return_when="FIRST_COMPLETED")
        assert len(first.done) == 1
        await c.cancel(s)
        assert s.status == "cancelled"
        with pytest.raises(CancelledError):
            await s
        keep = c.submit(slow, 4, 5.0, pure=False)
        await c.restart()
        assert keep.status == "cancelled"
        assert await c.submit(inc, 5) == 6  # the client works after its restart

    arun(body, client)


def test_as_completed_async_for(client):
    async def body(c):
        seen = []
        async for f in as_completed(c.map(inc, range(10))):
            seen.append(await f)
        assert sorted(seen) == list(range(1, 11))

        ac = as_completed(c.map(inc, range(5)), with_results=True)
        assert sorted([r async for _, r in ac]) == [1, 2, 3, 4, 5]

        ac = as_completed([c.submit(boom, 7), c.submit(inc, 7)], with_results=True, raise_errors=False)
        got = {}
        async for f, r in ac:
            got[f.key.split("-")[0]] = r
        assert got["inc"] == 8 and got["boom"][0] is ValueError

        ac = as_completed([c.submit(slow, 0, 0.2, pure=False)])
        ac.add(c.submit(inc, 0))  # added while iterating
        n = 0
        async for batch in ac.batches():
            n += len(batch)
        assert n == 2

        with pytest.raises(TimeoutError):
            async for _ in as_completed([c.submit(slow, 9, 2.0, pure=False)], timeout=0.1):
                pass

    arun(body, client)


def test_cluster_information_is_awaitable(client):
    async def body(c):
        f = c.submit(inc, 1)
        await f
        who = await c.who_has([f])
        assert who[f.key] and set(who[f.key]) <= set(await c.nthreads())
        has = await c.has_what()
        assert set(has) == set(await c.nthreads())
        ran = await c.run(lambda: 7)
        assert set(ran.values()) == {7}
        await c.wait_for_workers(1)
        info = c.scheduler_info()  # as Dask: returns the dict itself, never a coroutine
        assert info["n_workers"] >= 1

    arun(body, client)


def test_thousands_of_awaits_use_no_thread_each_and_do_not_block_the_loop(client):
    async def body(c):
        threads_before = threading.active_count()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.ensure_future(ticker())
        futures = c.map(inc, range(2000))
        peak = []

        async def one(f):
            peak.append(threading.active_count())
            return await f

        results = await asyncio.gather(*(one(f) for f in futures))
        assert results == list(range(1, 2001))
        f = c.submit(slow, 1, 1.0, pure=False)
        before = ticks
        assert await f == 1
        t.cancel()
        assert ticks - before >= 20  # the loop kept running while one long task was awaited
        assert max(peak) <= threads_before + 2  # no thread per await (a pool thread at most)

    arun(body, client)


def test_a_synchronous_client_s_futures_are_awaitable_and_client_sync(client):
    f = client.submit(inc, 1)

    async def main():
        assert await f == 2
        return f.result()  # a synchronous client's result() returns the value, even in a loop

    assert asyncio.run(main()) == 2

    async def coro(x):
        await asyncio.sleep(0.01)
        return x * 2

    assert client.sync(coro, 21) == 42  # on the client's own loop thread
    assert client.sync(lambda: 5) == 5  # a plain value passes through
    with pytest.raises(TimeoutError):
        client.sync(asyncio.sleep, 5, callback_timeout=0.05)
    assert any(t.name == "raydask-loop" for t in threading.enumerate())

    async def in_async(c):
        assert await c.sync(coro, 4) == 8  # asynchronous: the coroutine itself
        return True

    assert arun(in_async, client)


def test_priorities_and_held_tasks_are_awaitable(client):
    async def body(c):
        fs = [c.submit(inc, i, priority=i % 3) for i in range(50)]
        assert await c.gather(fs) == list(range(1, 51))
        assert await fs[0] == 1
        done, _ = await wait([c.submit(inc, 100, priority=5)])
        assert len(done) == 1

    arun(body, client)


def test_current_and_default_client_and_get_client_in_tasks(client):
    from raydask import default_client, get_client

    def child(x):
        c = get_client()
        return c.submit(inc, x).result()

    async def main():
        async with Client(asynchronous=True, dashboard_address=None) as c:
            assert Client.current() is c and default_client() is c
            assert await c.submit(child, 1) == 2
        assert Client.current() is client  # back to the other open client, as Dask

    asyncio.run(main())


def test_a_failed_asynchronous_start_leaves_the_running_client_working(client):
    async def main():
        return await Client(asynchronous=True, n_workers=3, dashboard_address=None)

    with pytest.raises(ValueError, match="already running"):
        asyncio.run(main())
    assert client.submit(inc, 2).result(timeout=30) == 3


def _load_example(name):
    import importlib.util
    from pathlib import Path

    from ray import cloudpickle  # Ray pickles functions with its own copy

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"raydask_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)  # Ray's workers cannot import examples/
    return module


def test_fastapi_service_awaits_futures_per_request(client):
    """examples/web_service.py under uvicorn, on 127.0.0.1, answering real HTTP requests at once."""
    need("fastapi")
    uvicorn = need("uvicorn")
    httpx = need("httpx")
    from concurrent.futures import ThreadPoolExecutor

    service = _load_example("web_service")
    server = uvicorn.Server(uvicorn.Config(service.create_app(), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="test-uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as http, ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda n: http.get(f"/fib/{n}").json(), range(30)))
            assert answers == [{"n": n, "fib": service.fib(n)} for n in range(30)]
            assert http.get("/sum-of-squares", params={"upto": 100}).json() == {
                "upto": 100, "sum": sum(i * i for i in range(100))}
            assert http.get("/first-done").json()["first"] in {service.fib(n) for n in range(20, 25)}
            bad = http.get("/check/-3")
            assert bad.status_code == 422 and "negative input: -3" in bad.text
            assert http.get("/check/3").json() == {"x": 3}
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()
    assert client.submit(inc, 1).result(timeout=30) == 2  # the service's client closed; this one works


# -- last: these start (and stop) their own cluster ------------------------------------------
def test_async_local_cluster_and_client(no_client):
    from raydask import LocalCluster

    async def main():
        async with LocalCluster(n_workers=1, threads_per_worker=2, asynchronous=True) as cluster:
            assert cluster.status.value == "running"
            async with Client(cluster, asynchronous=True, dashboard_address=None) as c:
                assert await c.submit(inc, 1) == 2
                assert c.scheduler_info()["total_threads"] == 2
            assert c.status == "closed"
        assert cluster.status.value == "closed"

    asyncio.run(main())
    assert not ray.is_initialized()
