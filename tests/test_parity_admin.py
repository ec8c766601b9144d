"""Parity rows for the admin surface Dask notebooks call on a client and a cluster.

``get_versions``, ``cluster.get_client()``, ``scale_up``/``scale_down``,
``retire_workers``, ``nbytes``, ``log_event``/``get_events``: the same snippet
runs on ``distributed`` and on raydask; where raydask differs on purpose the
test branches on the engine's name and says why (listed in ``docs/migrating.md``,
"Cluster administration").
"""

from __future__ import annotations

import asyncio
import importlib
import time
import types
import uuid
import warnings

import pytest

from conftest import need
from test_parity import distributed_client, impl  # noqa: F401

pytestmark = [pytest.mark.parity, pytest.mark.timeout(120)]


def inc(x):
    return x + 1


def sleep_then(value, delay):
    time.sleep(delay)
    return value


def log_from_task(engine, topic, msg):
    """Log an event from inside a task, as Dask's ``get_worker().log_event``."""
    importlib.import_module(engine).get_worker().log_event(topic, msg)
    return msg


# -- get_versions ----------------------------------------------------------------------
def test_get_versions_shape(impl):
    v = impl.client.get_versions()
    assert set(v) == {"scheduler", "workers", "client"}
    assert set(v["workers"]) == set(impl.client.scheduler_info()["workers"])
    for entry in [v["scheduler"], v["client"], *v["workers"].values()]:
        assert set(entry) == {"host", "packages"}
        assert {"python", "python-bits", "OS", "OS-release", "machine", "processor", "byteorder", "LC_ALL",
                "LANG"} <= set(entry["host"])
        for package in ("python", "dask", "distributed", "msgpack", "cloudpickle", "tornado", "toolz",
                        "numpy", "pandas", "lz4"):
            assert package in entry["packages"]
        assert entry["packages"]["dask"] == v["client"]["packages"]["dask"]
    if impl.name == "raydask":  # raydask also reports the engine underneath
        import ray

        assert v["client"]["packages"]["ray"] == ray.__version__
        assert "raydask" in v["client"]["packages"]


def test_get_versions_extra_packages_and_check(impl):
    v = impl.client.get_versions(packages=["pytest", "no-such-package-xyz"])
    for entry in [v["scheduler"], v["client"], *v["workers"].values()]:
        assert entry["packages"]["pytest"] == importlib.metadata.version("pytest")
        assert entry["packages"]["no-such-package-xyz"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one environment everywhere: check=True neither warns nor raises
        impl.client.get_versions(check=True)


def test_get_versions_mismatch_warns():
    """Dask's check warns (it does not raise) with a table of the differing packages."""
    from raydask import versions

    same = versions.versions()
    other = {"host": same["host"], "packages": dict(same["packages"], toolz="0.0.1")}
    rows = versions.mismatches(same, same, {"tcp://a:1": other})
    assert rows == [("toolz", same["packages"]["toolz"], same["packages"]["toolz"], "0.0.1")]
    text = versions.mismatch_message(rows)
    assert text.startswith("Mismatched versions found\n\n") and "| toolz" in text
    # msgpack differing only on the scheduler is not a mismatch (Dask leaves it out there)
    head = {"host": same["host"], "packages": dict(same["packages"], msgpack="0.0.1")}
    assert versions.mismatches(same, head, {"tcp://a:1": same}) == []


def test_get_versions_bad_input(impl):
    with pytest.raises(TypeError):  # Dask: "'int' object is not iterable"; raydask names the value
        impl.client.get_versions(packages=3)
    if impl.name == "raydask":  # Dask accepts a string and reports each of its letters; raydask says no
        with pytest.raises(TypeError, match="packages must be a list"):
            impl.client.get_versions(packages="numpy")
    else:
        assert {"n", "u", "m", "p", "y"} <= set(impl.client.get_versions(packages="numpy")["client"]["packages"])
    assert impl.client.submit(inc, 1).result(timeout=30) == 2


# -- nbytes ----------------------------------------------------------------------------
def test_nbytes_per_key_and_summary(impl):
    futures = impl.client.map(inc, [10, 20, 30], key=[f"inc-nb-{i}{uuid.uuid4().hex[:6]}" for i in range(3)])
    big = impl.client.submit(bytes, 10_000, key=f"blob-{uuid.uuid4().hex}")
    impl.wait(futures + [big])
    keys = [f.key for f in futures] + [big.key]
    per_key = impl.client.nbytes(keys=keys, summary=False)
    assert per_key == {**{f.key: 28 for f in futures}, big.key: per_key[big.key]}
    assert 10_000 <= per_key[big.key] < 10_100
    assert impl.client.nbytes(keys=keys) == {"inc-nb": 84, "blob": per_key[big.key]}
    everything = impl.client.nbytes(summary=False)
    assert all(everything[k] == v for k, v in per_key.items())
    with pytest.raises(KeyError):
        impl.client.nbytes(keys=["no-such-key"])


# -- a LocalCluster's admin surface: get_client, scale_up/scale_down, retire_workers ----------
def _engine(name):
    return importlib.import_module(name)


@pytest.fixture(params=["distributed", "raydask"])
def local(request):
    """A three-worker LocalCluster on each engine, closed after the test."""
    need(request.param)
    m = _engine(request.param)
    if request.param == "raydask":
        from conftest import _pool

        _pool.close()
    # Dask's in-process workers: the admin calls are the same, and they start fast
    cluster = m.LocalCluster(n_workers=3, threads_per_worker=1, processes=False, dashboard_address=None)
    client = cluster.get_client()
    try:
        client.wait_for_workers(3, timeout=120)
        yield types.SimpleNamespace(name=request.param, m=m, cluster=cluster, client=client)
    finally:
        client.close()
        cluster.close()


def _wait_until(condition, timeout=90):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.multinode
@pytest.mark.timeout(400)
def test_cluster_admin(local):
    cluster, client = local.cluster, local.client
    assert isinstance(client, local.m.Client) and client.cluster is cluster
    assert cluster.get_client() is client  # the default client is on this cluster: the same one
    assert isinstance(cluster.name, str) and cluster.name
    assert cluster.asynchronous is False

    # scale_down takes worker names (and addresses); it is not a death: nothing replaces them
    workers = client.scheduler_info()["workers"]
    by_name = {str(w["name"]): a for a, w in workers.items()}
    last = max(by_name, key=int)
    if local.name == "distributed":  # Dask's scale_down is a coroutine function even here
        cluster.sync(cluster.scale_down, [int(last)])
    else:
        assert cluster.scale_down([last]) is None
    _wait_until(lambda: len(client.scheduler_info()["workers"]) == 2)
    time.sleep(3)
    assert by_name[last] not in client.scheduler_info()["workers"]
    assert len(client.scheduler_info()["workers"]) == 2

    # scale_up is scale
    cluster.scale_up(3)
    client.wait_for_workers(3, timeout=120)

    # retire_workers: Dask's shape, the retired worker's info by its address
    workers = client.scheduler_info()["workers"]
    victim = max(workers, key=lambda a: int(workers[a]["name"]))
    retired = client.retire_workers(workers=[victim])
    assert list(retired) == [victim]
    assert retired[victim]["name"] == workers[victim]["name"]
    assert retired[victim]["nthreads"] == 1 and retired[victim]["status"] == "closed"
    _wait_until(lambda: victim not in client.scheduler_info()["workers"])
    time.sleep(3)
    assert len(client.scheduler_info()["workers"]) == 2
    assert client.submit(inc, 1).result(timeout=60) == 2

    if local.name == "raydask":  # the first worker is Ray's head node: never removed
        head = next(a for a, w in client.scheduler_info()["workers"].items() if w["is_head"])
        with pytest.raises(ValueError, match="head node"):
            client.retire_workers(workers=[head])
        with pytest.raises(TypeError, match="workers must be a list"):
            cluster.scale_down(3.5)
        assert len(client.scheduler_info()["workers"]) == 2
        # no workers named: every idle worker but the head, as Dask retires those it can spare
        other = next(a for a, w in client.scheduler_info()["workers"].items() if not w["is_head"])
        # "idle" is Ray's report, which lags a task's end (the inc above may have run on `other`)
        _wait_until(lambda: len(cluster.idle_workers()) == 1, timeout=30)
        assert list(client.retire_workers()) == [other]
        assert list(client.scheduler_info()["workers"]) == [head]
        assert client.submit(inc, 2).result(timeout=60) == 3


# -- log_event / get_events ----------------------------------------------------------------
def test_log_event_and_get_events(impl):
    topic, other = f"admin-{uuid.uuid4().hex}", f"admin-other-{uuid.uuid4().hex}"
    before = time.time()
    impl.client.log_event(topic, {"action": "start", "n": 1})
    impl.client.log_event([topic, other], "both")
    assert impl.client.submit(log_from_task, impl.name, topic, [1, "two"]).result(timeout=60) == [1, "two"]
    _wait_until(lambda: len(impl.client.get_events(topic)) == 3, timeout=30)  # Dask's worker sends in batches
    events = impl.client.get_events(topic)
    assert isinstance(events, tuple) and all(isinstance(e, tuple) and len(e) == 2 for e in events)
    assert [msg for _, msg in events] == [{"action": "start", "n": 1}, "both", [1, "two"]]
    assert all(before - 1 <= t <= time.time() + 1 for t, _ in events)
    assert [t for t, _ in events] == sorted(t for t, _ in events)
    everything = impl.client.get_events()
    assert isinstance(everything, dict)
    assert everything[topic] == events and [m for _, m in everything[other]] == ["both"]
    assert impl.client.get_events(f"never-{uuid.uuid4().hex}") == ()


def test_log_event_bounded_per_topic(impl):
    topic = f"admin-many-{uuid.uuid4().hex}"
    for i in range(1005):  # Dask keeps distributed.admin.low-level-log-length (1,000) per topic
        impl.client.log_event(topic, i)
    events = impl.client.get_events(topic)
    assert len(events) == 1000 and events[0][1] == 5 and events[-1][1] == 1004


def test_log_event_bad_message(impl):
    with pytest.raises(TypeError, match="Message must be msgpack serializable"):
        impl.client.log_event("admin-bad", {1: "not a string key"})
    with pytest.raises(TypeError, match="Message must be msgpack serializable"):
        impl.client.log_event("admin-bad", object())
    assert impl.client.submit(inc, 1).result(timeout=30) == 2


def test_log_event_asynchronous(no_client):
    """An asynchronous client's log_event/get_events/get_versions/nbytes are awaitable, as Dask's."""
    import raydask

    async def main():
        async with raydask.Client(n_workers=1, threads_per_worker=1, dashboard_address=None,
                                  asynchronous=True) as client:
            topic = f"admin-async-{uuid.uuid4().hex}"
            await client.log_event(topic, "hello")
            assert [m for _, m in await client.get_events(topic)] == ["hello"]
            v = await client.get_versions()
            assert set(v) == {"scheduler", "workers", "client"}
            f = client.submit(inc, 1, key="inc-async-nbytes")
            assert await f == 2
            assert await client.nbytes(summary=False) == {"inc-async-nbytes": 28}

    asyncio.run(main())


def test_asynchronous_cluster_get_client(no_client):
    """An asynchronous cluster's get_client() is awaited, and scale_down is awaitable inside the loop."""
    import raydask

    async def main():
        async with raydask.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None,
                                        asynchronous=True) as cluster:
            assert cluster.asynchronous is True  # called inside its event loop
            client = await cluster.get_client()
            try:
                assert client.cluster is cluster and client.asynchronous
                assert await client.submit(inc, 1) == 2
                assert await cluster.scale_down(["no-such-worker"]) is None  # unknown: ignored, as in Dask
                assert len((await asyncio.to_thread(client.scheduler_info))["workers"]) == 1
            finally:
                await client.close()
        return cluster

    cluster = asyncio.run(main())
    assert cluster.asynchronous is False  # outside a loop: calls block


# -- processing ------------------------------------------------------------------------------
def test_processing(impl):
    workers = set(impl.client.scheduler_info()["workers"])
    futures = impl.client.map(sleep_then, [1, 2], [6, 6], key=[f"sleepy-{uuid.uuid4().hex}" for _ in range(2)])
    keys = {f.key for f in futures}

    def running():
        return {k for ks in impl.client.processing().values() for k in ks} & keys

    _wait_until(lambda: running() == keys, timeout=30)  # raydask: Ray reports a start within ~1-2 s
    table = impl.client.processing()
    assert set(table) == workers and all(isinstance(v, list) for v in table.values())
    assert impl.client.processing(workers=list(workers)[:1]).keys() == set(list(workers)[:1])
    impl.wait(futures)
    _wait_until(lambda: not running(), timeout=30)
