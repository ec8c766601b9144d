"""Workers are Ray nodes: scale, adapt, cluster information, run, upload_file, restart.

One two-node cluster (1 thread each, custom resource FOO=1 per node) is shared
by this module; scaling is verified by the nodes Ray reports alive.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
import ray

from raydask import Client, LocalCluster, TimeoutError, WorkerStartTimeoutError
from raydask.cluster import cluster_load

pytestmark = pytest.mark.multinode


def where(x=None, delay=0.0):
    time.sleep(delay)
    return ray.get_runtime_context().get_node_id()


def big(seed):
    return bytes([seed % 256]) * 600_000  # > Ray's inline limit: lives in a node's object store


def alive_nodes():
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def wait_until(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def c():
    from conftest import _pool  # Ray allows one cluster per process: close the shared one

    _pool.close()
    client = Client(n_workers=2, threads_per_worker=1, resources={"FOO": 1}, dashboard_address=None)
    yield client
    client.close()


def by_name(client):
    return {str(w["name"]): {"address": a, **w} for a, w in client.scheduler_info()["workers"].items()}


# -- information ---------------------------------------------------------------------
def test_scheduler_info_has_dasks_shape(c):
    info = c.scheduler_info()
    assert info["type"] == "Scheduler" and info["n_workers"] == 2
    assert len(info["workers"]) == 2
    for address, w in info["workers"].items():
        assert address.startswith("tcp://")
        assert w["nthreads"] == 1 and w["memory_limit"] > 0
        assert w["resources"] == {"FOO": 1.0}
        assert {"name", "host", "id"} <= set(w)
    assert c.nthreads() == {a: 1 for a in info["workers"]}
    assert c.ncores() == c.nthreads()
    assert {str(w["name"]) for w in info["workers"].values()} == {"0", "1"}
    assert "workers=2" in repr(c.cluster)


def test_local_cluster_resources_are_usable_and_checked(c):
    futures = c.map(where, range(4), resources={"FOO": 1}, pure=False)
    assert len({f.result(timeout=60) for f in futures}) >= 1
    with pytest.raises(ValueError, match="no worker has the resources"):
        c.submit(where, 1, resources={"FOO": 2})


def test_local_cluster_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_workers must be a non-negative integer, got -1"):
        LocalCluster(n_workers=-1)
    with pytest.raises(TypeError, match="resources must be a dict"):
        LocalCluster(resources=["FOO"])


def test_wait_for_workers_times_out(c):
    with pytest.raises(WorkerStartTimeoutError) as info:
        c.wait_for_workers(5, timeout=0.5)
    assert isinstance(info.value, TimeoutError)
    assert "2/5" in str(info.value)
    c.wait_for_workers(2, timeout=5)
    with pytest.raises(ValueError, match="n_workers must be a positive integer"):
        c.wait_for_workers(0)


def test_who_has_and_has_what_follow_where_tasks_ran(c):
    names = by_name(c)
    f0 = c.submit(where, "wh0", workers=["0"], pure=False)
    f1 = c.submit(where, "wh1", workers=["1"], pure=False)
    assert f0.result(timeout=60) == names["0"]["node_id"]
    f1.result(timeout=60)
    who = c.who_has([f0, f1])
    assert who == {f0.key: [names["0"]["address"]], f1.key: [names["1"]["address"]]}
    has = c.has_what()
    assert set(has) == {names["0"]["address"], names["1"]["address"]}
    assert f0.key in has[names["0"]["address"]] and f1.key in has[names["1"]["address"]]
    assert f0.key not in has[names["1"]["address"]]


def test_run_calls_once_per_worker(c):
    names = by_name(c)
    result = c.run(where)
    assert result == {w["address"]: w["node_id"] for w in names.values()}
    assert c.run(where, workers=[names["1"]["address"]]) == {names["1"]["address"]: names["1"]["node_id"]}

    def who(dask_worker):
        return dask_worker.name

    assert sorted(map(str, c.run(who).values())) == ["0", "1"]


def test_run_errors(c):
    def fail():
        raise ZeroDivisionError("nope")

    with pytest.raises(ZeroDivisionError, match="nope"):
        c.run(fail)
    out = c.run(fail, on_error="return")
    assert len(out) == 2 and all(isinstance(e, ZeroDivisionError) for e in out.values())
    with pytest.raises(ValueError, match="on_error"):
        c.run(fail, on_error="bad")


def test_run_works_while_every_slot_is_busy(c):
    busy = c.map(where, ["b0", "b1"], delay=8, pure=False)
    time.sleep(0.5)
    assert len(c.run(os.getpid)) == 2
    assert not any(f.done() for f in busy)  # run did not wait for a free slot
    c.gather(busy)


def test_upload_file_is_importable_by_later_tasks(c, tmp_path):
    name = f"raydask_upload_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text("VALUE = 1\n")
    c.upload_file(str(path))

    def read(x):
        import importlib

        return importlib.import_module(name).VALUE

    names = by_name(c)
    futures = [c.submit(read, w, workers=[w], pure=False) for w in names for _ in range(2)]
    assert c.gather(futures) == [1] * len(futures)
    path.write_text("VALUE = 2\n")
    c.upload_file(str(path))
    assert set(c.run(read, 0).values()) == {2}  # the node's process reloaded the module


def test_upload_file_missing_raises(c):
    with pytest.raises(FileNotFoundError):
        c.upload_file("/nonexistent/raydask_nothing.py")


# -- scaling -------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_scale_up_and_down_prefers_idle_nodes(c):
    before = alive_nodes()
    c.cluster.scale(3)
    c.wait_for_workers(3, timeout=60)
    assert len(alive_nodes()) == 3
    names = by_name(c)
    assert set(names) == {"0", "1", "2"}
    # keep the newest node busy: scaling down must remove the idle older one
    busy = c.submit(where, "busy", delay=6, workers=["2"], pure=False)
    wait_until(lambda: cluster_load(c.cluster._gcs_address)[0].get(names["2"]["node_id"]), 20, "usage report")
    c.cluster.scale(2)
    wait_until(lambda: len(alive_nodes()) == 2, 30, "two nodes")
    assert names["1"]["node_id"] not in alive_nodes()
    assert busy.result(timeout=60) == names["2"]["node_id"]
    assert names["0"]["node_id"] in alive_nodes() and before & alive_nodes()
    assert c.cluster.node_start_times and max(c.cluster.node_start_times) < 60


@pytest.mark.timeout(120)
def test_results_on_removed_nodes_are_recomputed(c):
    c.cluster.scale(3)
    c.wait_for_workers(3, timeout=60)
    others = [w for w in by_name(c).values() if not w["is_head"]]
    futures = [c.submit(big, i, workers=[w["address"]], allow_other_workers=True, pure=False)
               for i, w in enumerate(others)]
    from raydask import wait

    wait(futures, timeout=60)
    assert sorted(c.who_has(futures)[f.key][0] for f in futures) == sorted(w["address"] for w in others)
    c.cluster.scale(1)  # only the head stays: every result above lived on a removed node
    wait_until(lambda: len(alive_nodes()) == 1, 30, "one node")
    assert c.gather(futures) == [big(i) for i in range(len(others))]  # re-run from lineage


def test_scale_rejects_bad_counts(c):
    with pytest.raises(ValueError, match="-1"):
        c.cluster.scale(-1)


@pytest.mark.timeout(150)
def test_adapt_grows_while_tasks_wait_and_shrinks_when_idle(c):
    c.cluster.scale(2)
    wait_until(lambda: len(alive_nodes()) == 2, 30, "two nodes")
    adaptive = c.cluster.adapt(minimum=2, maximum=3, interval="300ms", wait_count=3)
    try:
        assert any(t.name == "raydask-adapt" for t in __import__("threading").enumerate())
        futures = c.map(where, range(8), delay=2.5, pure=False)
        wait_until(lambda: len(alive_nodes()) == 3, 60, "adapt to grow to 3")
        c.gather(futures)
        wait_until(lambda: len(alive_nodes()) == 2, 60, "adapt to shrink to 2")
        assert c.cluster.target == 2
    finally:
        adaptive.stop()
    assert not adaptive._thread.is_alive()
    with pytest.raises(ValueError, match="maximum"):
        c.cluster.adapt(minimum=3, maximum=1)


# -- restart -------------------------------------------------------------------------
def test_restart_cancels_every_future_and_the_cluster_keeps_working(c):
    done = c.submit(where, "done-before-restart", pure=False)
    done.result(timeout=60)
    running = c.submit(where, "running", delay=5, pure=False)
    c.restart()
    assert done.status == "cancelled" and running.status == "cancelled"
    from raydask import CancelledError

    with pytest.raises(CancelledError, match="scheduler-restart"):
        running.result()
    assert c.futures == {}
    assert c.submit(where, "after", pure=False).result(timeout=60) in alive_nodes()

