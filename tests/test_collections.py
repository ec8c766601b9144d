"""Dask collections through the client, on three Ray nodes: compute, persist, get,
the client as Dask's default scheduler, and raydask futures inside Dask graphs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import need

dask = need("dask")
da = need("dask.array")
need("pandas")
dd = need("dask.dataframe")
np = need("numpy")
import pandas as pd  # noqa: E402

from raydask import Client, Future, futures_of, progress, wait  # noqa: E402

pytestmark = [pytest.mark.multinode, pytest.mark.timeout(180)]


def inc(x):
    return x + 1


def pid(_=None):
    return os.getpid()


def node_of(_=None):
    import ray

    return ray.get_runtime_context().get_node_id()


def part(i):
    return pd.DataFrame({"a": [i, i + 1, i + 2], "g": [i % 2, 0, 1]})


def test_compute_after_client_runs_on_ray_workers_not_in_the_client(multinode_client):
    c = multinode_client
    assert dask.config.get("scheduler") == c.get  # the default client is Dask's scheduler
    pids = dask.compute(*[dask.delayed(pid)(i) for i in range(6)])
    assert os.getpid() not in pids
    nodes = set(dask.compute(*[dask.delayed(node_of)(i) for i in range(30)]))
    assert nodes <= {w["node_id"] for w in c.scheduler_info()["workers"].values()}
    x = da.ones((400, 400), chunks=(100, 100))
    assert (x + 1).sum().compute() == 2 * 400 * 400
    assert dask.compute((x * 2).mean(), x.max()) == (2.0, 1.0)


def test_compute_keywords_reach_the_tasks(multinode_client):
    c = multinode_client
    workers = c.scheduler_info()["workers"]
    address, info = sorted(workers.items())[1]
    got = dask.delayed(node_of)(1).compute(workers=[address], retries=2, priority=3)
    assert got == info["node_id"]
    got = c.compute(dask.delayed(node_of)(2), workers=[address]).result()
    assert got == info["node_id"]
    with pytest.raises(ValueError, match="NOSUCH"):  # resources= are checked as submit's are
        dask.delayed(inc)(1).compute(resources={"NOSUCH": 1})
    assert dask.delayed(inc)(1).compute(resources={"CPU": 1}) == 2
    kept = (da.ones(8, chunks=4) + 5).persist()  # the collection's own .persist() goes to the client
    assert all(isinstance(f, Future) for f in futures_of(kept)) and len(futures_of(kept)) == 2


def test_client_compute_returns_futures_with_dask_keys(multinode_client):
    c = multinode_client
    x = da.arange(100, chunks=10)
    f = c.compute(x.sum())
    assert isinstance(f, Future) and f.key.startswith("finalize-")
    assert f.result() == sum(range(100))
    fs = c.compute([x.sum(), x.max(), 7])
    assert [type(v) for v in fs[:2]] == [Future, Future] and fs[2] == 7
    assert c.gather(fs[:2]) == [sum(range(100)), 99]
    assert c.compute([x.min(), x.mean()], sync=True) == [0, 49.5]


def test_persist_gives_the_same_kind_of_collection_of_futures(multinode_client):
    c = multinode_client
    x = da.ones((40, 40), chunks=(10, 10)) + 1
    p = c.persist(x)
    assert type(p) is type(x) and p.chunks == x.chunks
    futures = futures_of(p)
    assert len(futures) == 16 and all(isinstance(f, Future) for f in futures)
    assert {f.key for f in futures} == {k for row in p.__dask_keys__() for k in row}
    key = futures[0].key
    assert isinstance(key, tuple) and key[0].startswith("add-")  # Dask's own keys
    done, not_done = wait(p)
    assert len(done) == 16 and not not_done
    progress(p)  # the futures inside, as Dask does
    assert p.sum().compute() == 2 * 40 * 40
    assert c.persist(x.sum()).compute() == 3200
    q1, q2 = dask.persist(x, x * 2)  # dask.persist goes through the client as well
    assert all(isinstance(f, Future) for f in futures_of(q2))
    assert q2.sum().compute() == 6400


def test_get_runs_a_raw_graph(multinode_client):
    c = multinode_client
    dsk = {"a": 1, "b": (inc, "a"), "c": (sum, ["a", "b"]), "unused": (inc, "c")}
    assert c.get(dsk, "c") == 3
    assert c.get(dsk, ["b", ["c"]]) == [2, [3]]
    futures = c.get(dsk, ["b", "c"], sync=False)
    assert [type(f) for f in futures] == [Future, Future]
    assert [f.key for f in futures] == ["b", "c"]
    assert c.gather(futures) == [2, 3]


def test_futures_inside_graphs(multinode_client):
    c = multinode_client
    fut = c.submit(inc, 1)
    assert dask.delayed(inc)(fut).compute() == 3
    assert dask.delayed(sum)([fut, fut, 1]).compute() == 5
    assert dask.delayed(lambda d: d["k"] * 2)({"k": fut}).compute() == 4

    parts = [c.submit(part, i) for i in range(4)]
    df = dd.from_delayed(parts, meta=part(0))
    assert df.a.sum().compute() == sum(part(i).a.sum() for i in range(4))
    inferred = dd.from_delayed(parts)  # meta computed from the first future, on the cluster
    assert inferred.groupby("g").a.sum().compute().to_dict() == \
        pd.concat([part(i) for i in range(4)]).groupby("g").a.sum().to_dict()

    arr = da.from_delayed(c.submit(np.arange, 6.0), shape=(6,), dtype=float)
    assert arr.sum().compute() == 15.0
    assert (c.compute(arr * 2).result() == np.arange(6.0) * 2).all()


def test_a_future_s_data_goes_worker_to_worker(multinode_client):
    """A 20 MB array made on one node, consumed in a graph pinned to another: the
    client's process never holds it (its RSS does not grow by the array's size)."""
    import psutil

    c = multinode_client
    workers = sorted(c.scheduler_info()["workers"])
    big = c.submit(np.ones, 20 * 2**20 // 8, workers=[workers[1]], pure=False)
    wait([big])
    before = psutil.Process().memory_info().rss
    nbytes = dask.delayed(lambda a: int(a.nbytes))(big).compute(workers=[workers[2]])
    assert nbytes == 20 * 2**20
    assert psutil.Process().memory_info().rss - before < 10 * 2**20


def test_a_graph_key_the_client_does_not_hold_is_a_clear_error(multinode_client):
    from dask._task_spec import Task, TaskRef

    c = multinode_client
    with pytest.raises(KeyError, match="'missing-key'"):
        c.get({"b": Task("b", inc, TaskRef("missing-key"))}, "b")
    assert c.submit(inc, 1).result() == 2


def test_closing_restores_dask_s_scheduler_and_set_as_default_false_leaves_it(multinode_client):
    before = dask.config.get("scheduler", None)
    side = Client(set_as_default=False, dashboard_address=None)  # joins this process's Ray
    try:
        assert dask.config.get("scheduler", None) == before
        assert side.compute(dask.delayed(inc)(1)).result() == 2
    finally:
        side.close()
    assert dask.config.get("scheduler", None) == before


def test_without_dask_the_core_imports_and_collections_name_the_extra():
    code = (
        "import sys\n"
        "import raydask\n"
        "assert not [m for m in sys.modules if m == 'dask' or m.startswith('dask.')], 'dask imported'\n"
        "sys.modules['dask'] = None  # as if not installed\n"
        "from raydask import graphs\n"
        "try:\n"
        "    graphs.submit_graph(None, {}, [])\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "raydask[dask]" in out.stdout


def test_publish_a_persisted_collection_and_get_it_back(multinode_client):
    c = multinode_client
    x = c.persist(da.arange(40, chunks=10) * 2)
    c.publish_dataset(doubled=x)
    try:
        back = c.get_dataset("doubled")
        assert type(back) is type(x) and back.chunks == x.chunks
        assert all(isinstance(f, Future) for f in futures_of(back))
        assert back.sum().compute() == 2 * sum(range(40))
    finally:
        c.unpublish_dataset("doubled")


def current_task(_=None):
    from raydask import get_worker

    return get_worker().get_current_task()


def test_graph_tasks_are_named_after_their_key_prefix_in_ray(multinode_client):
    """Ray's own view (its dashboard, ``ray list tasks``) groups them as Dask does."""
    d = dask.delayed(current_task)(1, dask_key_name="probe-task-0123456789abcdef")  # Dask's key shape
    assert d.compute() == "probe-task"
    blocks = da.ones(4, chunks=2).map_blocks(  # an array's tasks too: 'lambda', not 'run_node'
        lambda b: np.array([current_task()] * len(b), dtype=object), dtype=object)
    assert set(blocks.compute().tolist()) == {"lambda"}
