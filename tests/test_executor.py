"""``client.get_executor()``: a ``concurrent.futures.Executor`` on raydask.

Scenarios after dask/distributed's ``distributed/tests/test_client_executor.py``.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time

import pytest

pytestmark = pytest.mark.timeout(60)


def inc(x):
    return x + 1


def slowinc(x, delay=0.2):
    time.sleep(delay)
    return x + 1


def fail(x):
    raise ZeroDivisionError(f"no {x!r}")


def flaky(path):
    """Fail on the first call (counted in a file: a retry may run in another process)."""
    attempt = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(attempt + 1))
    if attempt == 0:
        raise ZeroDivisionError("first attempt")
    return attempt


def test_submit_gives_stdlib_futures(client):
    with client.get_executor() as ex:
        assert isinstance(ex, cf.Executor)
        f = ex.submit(inc, 1)
        assert isinstance(f, cf.Future)
        assert f.result(timeout=30) == 2
        g = ex.submit(fail, 1)
        with pytest.raises(ZeroDivisionError, match="no 1"):
            g.result(timeout=30)
        assert isinstance(g.exception(), ZeroDivisionError)


def test_wait_and_as_completed(client):
    """test_client_executor.py::test_wait, test_as_completed."""
    ex = client.get_executor(pure=False)
    fast = [ex.submit(inc, i) for i in range(5)]
    slow = ex.submit(slowinc, 10, delay=1.0)
    done, not_done = cf.wait(fast + [slow], timeout=30, return_when=cf.FIRST_COMPLETED)
    assert done and slow in not_done | done
    done, not_done = cf.wait(fast, timeout=30)
    assert done == set(fast) and not not_done
    order = [f.result() for f in cf.as_completed(fast + [slow], timeout=30)]
    assert sorted(order) == [1, 2, 3, 4, 5, 11] and order[-1] == 11
    with pytest.raises(ZeroDivisionError):
        cf.wait([ex.submit(fail, 2)], return_when=cf.FIRST_EXCEPTION)[0].pop().result()
    ex.shutdown()


def test_map_in_order_with_timeout_and_errors(client):
    """test_client_executor.py::test_map."""
    ex = client.get_executor()
    assert list(ex.map(inc, range(5))) == [1, 2, 3, 4, 5]
    assert list(ex.map(pow, [2, 3], [3, 2], chunksize=10)) == [8, 9]
    results = ex.map(slowinc, range(3), [2.0] * 3, timeout=0.3)
    with pytest.raises(cf.TimeoutError):
        list(results)
    it = ex.map(fail, [1, 2])
    with pytest.raises(ZeroDivisionError):
        next(it)
    with pytest.raises(TypeError, match="Dask no longer supports mapping over Iterators"):
        ex.map(inc, iter(range(3)))


def test_submit_keywords_are_carried_to_every_task(client, tmp_path):
    ex = client.get_executor(pure=False, retries=1, priority=5)
    assert ex.submit(inc, 1).result() == 2
    a, b = ex.submit(inc, 1), ex.submit(inc, 1)
    assert a.result() == b.result() == 2
    assert ex.submit(flaky, str(tmp_path / "count")).result(timeout=30) == 1  # retries=1
    address = next(iter(client.scheduler_info()["workers"]))
    pinned = client.get_executor(workers=[address], resources={"CPU": 1})
    assert pinned.submit(inc, 3).result() == 4
    with pytest.raises(ValueError, match="no worker matches"):
        client.get_executor(workers=["tcp://10.9.9.9:1"]).submit(inc, 12345)


def test_cancelling_the_stdlib_future_cancels_the_task(client):
    ex = client.get_executor(pure=False)
    blocker = [ex.submit(slowinc, i, delay=1.0) for i in range(2)]  # both slots busy
    queued = ex.submit(slowinc, 99, delay=1.0)
    assert queued.cancel()
    assert queued.cancelled()
    with pytest.raises(cf.CancelledError):
        queued.result()
    assert [f.result() for f in blocker] == [1, 2]
    ex.shutdown(wait=False)


def test_shutdown(client):
    ex = client.get_executor(pure=False)
    f = ex.submit(slowinc, 1, delay=0.5)
    ex.shutdown(wait=True)
    assert f.done() and f.result() == 2
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(inc, 1)
    ex.shutdown()  # twice is fine
    ex2 = client.get_executor(pure=False)
    g = ex2.submit(slowinc, 1, delay=5.0)
    ex2.shutdown(wait=False)
    with pytest.raises(cf.CancelledError):
        g.result(timeout=30)


def test_bad_input(client):
    with pytest.raises(TypeError, match=r"unsupported arguments to ClientExecutor: \['key'\]"):
        client.get_executor(key="x")
    ex = client.get_executor()
    with pytest.raises(TypeError, match="First input to submit must be a callable function"):
        ex.submit(3)
    with pytest.raises(TypeError):
        ex.map(inc, [1], bogus=1)
