"""Client: submit, map, gather, scatter, cancel, reprs and lifecycle on a real Ray cluster."""

from __future__ import annotations

import collections
import os
import queue
import re
import time
import uuid

import pytest
import ray

from raydask import CancelledError, Client, Future, LocalCluster, wait
from raydask.client import ClosedClientError


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def slowinc(x, delay=0.2):
    time.sleep(delay)
    return x + 1


def count_calls(path, x):
    with open(path, "a") as f:
        f.write("x\n")
    return x


Point = collections.namedtuple("Point", "x y")


# -- submit ----------------------------------------------------------------------------
def test_submit_returns_at_once_and_result_blocks(client):
    start = time.perf_counter()
    f = client.submit(slowinc, 1, delay=1)
    assert time.perf_counter() - start < 0.5
    assert f.status == "pending"
    assert f.result() == 2
    assert f.status == "finished"


def test_pure_keys_are_deterministic_and_computed_once(client, tmp_path):
    path = str(tmp_path / "calls")
    a = client.submit(count_calls, path, 1)
    b = client.submit(count_calls, path, 1)
    assert a.key == b.key
    assert re.fullmatch(r"count_calls-[0-9a-f]{32}", a.key)
    assert a.result() == b.result() == 1
    assert open(path).read().count("x") == 1


def test_impure_and_explicit_keys(client):
    a = client.submit(inc, 1, pure=False)
    b = client.submit(inc, 1, pure=False)
    assert a.key != b.key
    assert re.fullmatch(r"inc-[0-9a-f-]{36}", a.key)
    c = client.submit(inc, 1, key="my-key")
    assert c.key == "my-key" and c.result() == 2


def test_futures_as_arguments_are_dependencies(client):
    x = client.submit(inc, 1)
    y = client.submit(inc, 2)
    z = client.submit(add, x, y)
    assert z.result() == 5


def test_nested_futures_are_resolved_in_the_cluster(client):
    x = client.submit(inc, 1)
    y = client.submit(inc, 10)
    assert client.submit(sum, [x, y, 100]).result() == 113
    assert client.submit(lambda d: d["a"] + d["b"][0], {"a": x, "b": (y,)}).result() == 13
    assert client.submit(lambda s: sorted(s), {x, 5}).result() == [2, 5]
    assert client.submit(lambda p: p.x * p.y, Point(x, y)).result() == 22
    assert client.submit(lambda a, *, k: a + k[0][0], x, k=[[y]]).result() == 13
    deep = [[[[x]]]]
    assert client.submit(lambda d: d[0][0][0][0], deep).result() == 2


def test_dependencies_are_top_level_ray_arguments(client):
    """The nested future arrives as its value: Ray resolved it, the client did not fetch it."""
    big = client.submit(lambda: b"x" * 2_000_000)
    size = client.submit(lambda parts: len(parts[0]), [big])
    assert size.result() == 2_000_000


def test_submit_rejects_non_callables(client):
    with pytest.raises(TypeError, match="callable.*1"):
        client.submit(1, 2)
    with pytest.raises(TypeError):
        client.submit(inc, 1, allow_other_workers="yes")
    with pytest.raises(ValueError, match="allow_other_workers"):
        client.submit(inc, 1, allow_other_workers=True)
    assert client.submit(inc, 41).result() == 42  # and the client keeps working


def test_submit_accepts_dask_scheduling_arguments(client):
    f = client.submit(inc, 1, priority=10, fifo_timeout="1s", retries=1, resources={"CPU": 1})
    assert f.result() == 2


# -- map -------------------------------------------------------------------------------
def test_map_zips_iterables_and_dedups(client):
    futures = client.map(add, [1, 2, 3], [10, 20, 30])
    assert client.gather(futures) == [11, 22, 33]
    assert [f.key for f in client.map(add, [1, 2, 3], [10, 20, 30])] == [f.key for f in futures]
    assert futures[0].key == client.submit(add, 1, 10).key


def test_map_over_futures(client):
    xs = client.map(inc, range(5))
    ys = client.map(inc, xs)
    assert client.gather(ys) == [2, 3, 4, 5, 6]


def test_map_keys(client):
    fs = client.map(inc, [1, 2], key="custom")
    assert all(f.key.startswith("custom-") for f in fs)
    fs = client.map(inc, [1, 2], key=["a-1", "a-2"])
    assert [f.key for f in fs] == ["a-1", "a-2"]
    fs = client.map(inc, [1, 1], pure=False)
    assert fs[0].key != fs[1].key
    with pytest.raises(ValueError, match="keys"):
        client.map(inc, [1, 2], key=["only-one"])


def test_map_rejects_iterators_queues_and_non_callables(client):
    with pytest.raises(TypeError, match="Iterators or Queues"):
        client.map(inc, iter([1, 2]))
    with pytest.raises(TypeError, match="Iterators or Queues"):
        client.map(inc, queue.Queue())
    with pytest.raises(TypeError, match="callable"):
        client.map("inc", [1])


# -- gather ----------------------------------------------------------------------------
def test_gather_keeps_structure(client):
    x, y = client.submit(inc, 1), client.submit(inc, 2)
    assert client.gather([x, y]) == [2, 3]
    assert client.gather((x, [y, 5])) == (2, [3, 5])
    assert client.gather({"a": x, "b": {"c": y}}) == {"a": 2, "b": {"c": 3}}
    assert client.gather(x) == 2
    assert list(client.gather(iter([x, y]))) == [2, 3]


def test_gather_errors_raise_or_skip(client):
    def fail(x):
        raise ValueError(f"no {x}")

    good, bad = client.submit(inc, 1), client.submit(fail, 1)
    with pytest.raises(ValueError, match="no 1"):
        client.gather([good, bad])
    assert client.gather([good, bad], errors="skip") == [2]
    with pytest.raises(ValueError, match="errors='ignore'"):
        client.gather([good], errors="ignore")


# -- scatter ---------------------------------------------------------------------------
def test_scatter_single_list_and_dict(client):
    f = client.scatter(123)
    assert isinstance(f, Future) and f.status == "finished"
    assert re.fullmatch(r"int-[0-9a-f]{32}", f.key)
    assert f.result() == 123
    fs = client.scatter([1, 2, 3])
    assert isinstance(fs, list) and client.gather(fs) == [1, 2, 3]
    d = client.scatter({"x": 1, "y": "two"})
    assert set(d) == {"x", "y"} and d["x"].key == "x" and d["y"].result() == "two"
    assert client.scatter(123).key == f.key  # hash=True: same data, same key
    assert client.scatter(123, hash=False).key != f.key


def test_scattered_data_feeds_tasks(client):
    data = client.scatter(list(range(1000)))
    assert client.submit(sum, data).result() == sum(range(1000))


# -- cancel ----------------------------------------------------------------------------
def test_cancel_pending_future(client):
    blocker = client.submit(slowinc, 1, delay=2, pure=False)
    f = client.submit(slowinc, blocker, delay=0, pure=False)
    f.cancel()
    assert f.cancelled() and f.status == "cancelled"
    with pytest.raises(CancelledError, match=re.escape(f.key)):
        f.result()
    assert f.done()
    assert blocker.result() == 2


def test_cancel_never_kills_the_driver(client):
    """RAY-NOTES: ray.cancel with a small pending input crashed the driver; we must not."""
    for _ in range(3):
        x = client.submit(slowinc, 1, delay=0.3, pure=False)
        y = client.submit(inc, x, pure=False)
        client.cancel([y])
        assert x.result() == 2
    time.sleep(0.5)
    assert client.submit(inc, 1, pure=False).result() == 2


def test_cancel_then_resubmit_same_key_runs_again(client):
    f = client.submit(slowinc, 5, delay=1)
    key = f.key
    f.cancel()
    g = client.submit(slowinc, 5, delay=1)
    assert g.key == key and g.result() == 6


# -- release ---------------------------------------------------------------------------
def test_key_released_when_last_future_is_dropped(client):
    import gc

    f = client.submit(inc, 12345)
    g = client.submit(inc, 12345)
    key = f.key
    f.result()
    del f
    gc.collect()
    assert key in client.futures
    del g
    gc.collect()
    assert key not in client.futures


# -- reprs and info --------------------------------------------------------------------
def test_client_repr_like_dask(client):
    text = repr(client)
    assert re.fullmatch(r"<Client: 'ray://[0-9.]+:\d+' processes=1 threads=2, memory=[0-9.]+ [kMGT]?i?B>", text), text
    html = client._repr_html_()
    assert client.id in html and "Cluster" in html
    assert client.id.startswith("Client-")
    assert client.status == "running"


def test_scheduler_info_and_nthreads(client):
    info = client.scheduler_info()
    assert info["n_workers"] == 1
    (address, worker), = info["workers"].items()
    assert address.startswith("tcp://") and worker["nthreads"] == 2
    assert client.nthreads() == {address: 2}


def test_many_tasks_in_a_loop(client):
    """The seed's loop: thousands of dependent submissions."""
    zs = []
    for i in range(300):
        x = client.submit(inc, i)
        y = client.submit(lambda v: 2 * v, x)
        zs.append(client.submit(add, x, y))
    total = client.submit(sum, zs)
    assert total.result() == sum(3 * (i + 1) for i in range(300))


# -- lifecycle (own clusters) ------------------------------------------------------------
@pytest.mark.timeout(180)
def test_client_lifecycle_owns_its_cluster(no_client):
    with Client(n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        assert ray.is_initialized()
        assert c.submit(inc, 1).result() == 2
        reuse = Client(dashboard_address=None, set_as_default=False)  # joins the running Ray
        assert reuse.submit(inc, 2).result() == 3
        reuse.close()
        assert ray.is_initialized()  # closing a client never stops a Ray it did not start
        assert c.submit(inc, 3).result() == 4
    assert c.status == "closed"
    assert not ray.is_initialized()
    with pytest.raises(ClosedClientError, match="Client is closed"):
        c.submit(inc, 1)


def test_client_rejects_bad_arguments(no_client):
    with pytest.raises(ValueError, match="-1"):
        Client(n_workers=-1, dashboard_address=None)
    with pytest.raises(TypeError, match="42"):
        Client(address=42)
    Client(asynchronous=True).close()  # an asynchronous client starts when awaited: nothing ran
    assert not ray.is_initialized()


def test_a_client_that_fails_to_start_leaves_nothing_running(no_client):
    """A bad ``dashboard_address`` used to be found only after the whole cluster had started,
    which it left running (and the next ``Client()`` failed with "Ray is already running")."""
    import threading

    import psutil

    children = {p.pid for p in psutil.Process().children(recursive=True)}
    threads = {t.ident for t in threading.enumerate()}
    for bad, kind in (("not-an-address", ValueError), (":99999", ValueError), (3.5, TypeError)):
        with pytest.raises(kind, match=repr(bad) if not isinstance(bad, float) else "3.5"):
            Client(n_workers=1, threads_per_worker=1, dashboard_address=bad)
        assert not ray.is_initialized()
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= children  # no Ray process
    assert {t.ident for t in threading.enumerate()} <= threads  # no thread (no dashboard, no settler)
    with Client(n_workers=1, threads_per_worker=1, dashboard_address=None) as c:  # and the next one starts
        assert c.submit(inc, 1).result(timeout=60) == 2


@pytest.mark.timeout(180)
def test_client_on_a_local_cluster_object(no_client):
    """``Client(LocalCluster(...))`` as in Dask: the client uses it, closing the client leaves it up."""
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        client = Client(cluster, dashboard_address=None)
        assert client.cluster is cluster
        assert len(client.scheduler_info()["workers"]) == 2
        assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        client.close()
        assert ray.is_initialized() and cluster.status.value == "running"
        again = Client(cluster, dashboard_address=None)
        assert again.submit(sum, [4]).result(timeout=60) == 4
        again.close()
    assert cluster.status.value == "closed" and not ray.is_initialized()


def _ident(x):
    return x


def test_an_argument_ray_cannot_serialize_is_a_type_error_and_submits_stay_direct(client):
    import threading

    from raydask.direct import DirectSubmitter

    assert client.submit(_ident, 1).result() == 1  # the first call exports the function
    for _ in range(2):  # the second call goes the direct path (raydask.direct)
        with pytest.raises(TypeError, match="Could not serialize the argument <unlocked _thread.lock"):
            client.submit(_ident, threading.Lock())
    assert client.submit(_ident, 2).result() == 2
    rf = client._dispatcher.remote_function(_ident)
    assert isinstance(client._dispatcher._direct[rf], DirectSubmitter)
