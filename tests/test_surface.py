"""raydask-only rows of the "surface" methods, where a parity row cannot apply.

``restart_workers`` on a real multi-node ``LocalCluster`` (Dask's needs a
nanny cluster of processes; the parity rows run on in-process workers), and
``scale_down`` / ``retire_workers`` / ``restart_workers`` on a Ray cluster
raydask did not start (``RayCluster``), built here by hand with
``ray.cluster_utils``.
"""

from __future__ import annotations

import time

import pytest

from test_parity_admin import _wait_until

pytestmark = pytest.mark.timeout(300)


def big(n):
    return b"x" * n


def inc(x):
    return x + 1


def sleep_then(value, delay):
    time.sleep(delay)
    return value


def _names(client) -> dict:
    return {str(w["name"]): a for a, w in client.scheduler_info()["workers"].items()}


# -- restart_workers on a LocalCluster --------------------------------------------------------
@pytest.mark.multinode
def test_restart_workers_restarts_a_node_under_its_name(multinode_client):
    c = multinode_client
    c.wait_for_workers(3, timeout=120)
    before = _names(c)
    victim = before["1"]
    f = c.submit(big, 3_000_000, workers=[victim], pure=False)  # stored in that node's object store
    assert len(f.result(timeout=60)) == 3_000_000
    old_id = c.scheduler_info()["workers"][victim]["node_id"]
    # running there when the node restarts: Ray retries it on another node (soft affinity)
    running = c.submit(sleep_then, "done", 3, workers=[victim], allow_other_workers=True, pure=False)
    time.sleep(1.5)

    started = time.monotonic()
    out = c.restart_workers([victim])
    took = time.monotonic() - started
    assert out == {victim: "OK"}  # Dask's shape, keyed by the workers as given
    after = _names(c)
    assert set(after) == set(before)  # the same names
    assert after["1"] != victim  # a new node: a new address...
    assert after["0"] == before["0"] and after["2"] == before["2"]  # ...and only that one
    assert old_id not in {w["node_id"] for w in c.scheduler_info()["workers"].values()}
    assert len(c.scheduler_info()["workers"]) == 3
    assert took < 120
    # the result whose copy lived on the old node is still there (a copy, or Ray's lineage)
    assert len(f.result(timeout=120)) == 3_000_000
    assert c.submit(inc, 1, workers=[after["1"]]).result(timeout=60) == 2
    assert running.result(timeout=120) == "done"

    # by name, a timeout too short to wait: "timed out" (raise_for_error=False), and it comes back
    out = c.restart_workers(["2"], timeout=0.01, raise_for_error=False)
    assert out == {"2": "timed out"}
    _wait_until(lambda: "2" in _names(c) and _names(c)["2"] != after["2"] and len(_names(c)) == 3, 120)


@pytest.mark.multinode
def test_restart_workers_bad_input(multinode_client):
    c = multinode_client
    c.wait_for_workers(3, timeout=120)
    names = _names(c)
    with pytest.raises(ValueError, match="head node"):
        c.restart_workers([names["0"]])
    with pytest.raises(ValueError, match="unknown worker 'no-such-worker'"):
        c.restart_workers(["no-such-worker"])
    with pytest.raises(TypeError, match="workers must be a list"):
        c.restart_workers(3.5)
    with pytest.raises(ValueError, match="timeout must"):
        c.restart_workers(["1"], timeout=-1)
    assert _names(c) == names  # nothing was restarted
    assert c.submit(inc, 1).result(timeout=60) == 2


# -- a Ray cluster raydask did not start ---------------------------------------------------------
@pytest.mark.multinode
def test_a_joined_cluster_drains_workers_it_did_not_start(multinode_client):
    """A second client of the process's Ray connection has a ``RayCluster``: nodes it did not start.

    The nodes are the shared three-node ``LocalCluster``'s; that cluster sees the
    drained node's raylet exit and starts another under its name (as Dask's
    nanny would), so the fixture is whole again after the test.
    """
    import raydask
    from raydask.cluster import RayCluster

    multinode_client.wait_for_workers(3, timeout=120)
    names = _names(multinode_client)
    client = raydask.Client(dashboard_address=None, set_as_default=False)
    try:
        assert isinstance(client.cluster, RayCluster)
        workers = client.scheduler_info()["workers"]
        head = next(a for a, w in workers.items() if w["is_head"])
        other = names["2"]

        with pytest.raises(ValueError, match="restart_workers needs a LocalCluster"):
            client.restart_workers([other])
        with pytest.raises(ValueError, match="needs workers="):
            client.retire_workers()
        with pytest.raises(ValueError, match="head node"):
            client.retire_workers(workers=[head])
        with pytest.raises(ValueError, match="head node"):
            client.cluster.scale_down([head])
        with pytest.raises(TypeError, match="workers must be a list"):
            client.cluster.scale_down(3.5)
        assert client.cluster.scale_down(["no-such-worker"]) is None  # unknown: ignored, as Dask
        assert len(client.scheduler_info()["workers"]) == 3

        f = client.submit(big, 2_000_000, workers=[other], pure=False)
        assert len(f.result(timeout=60)) == 2_000_000
        # Ray's drain waits for the node's objects still in use: let go of the only one
        f.release()
        del f
        started = time.monotonic()
        retired = client.retire_workers(workers=[other])
        took = time.monotonic() - started
        assert list(retired) == [other] and retired[other]["status"] == "closed"
        assert other not in client.scheduler_info()["workers"]
        assert took < 60
        assert client.submit(inc, 1).result(timeout=60) == 2
    finally:
        client.close()
    # the LocalCluster replaced its drained worker under the same name
    _wait_until(lambda: len(_names(multinode_client)) == 3 and _names(multinode_client)["2"] != names["2"], 120)
    assert multinode_client.submit(inc, 2).result(timeout=60) == 3


def test_bind_client_refuses_what_is_not_a_client():
    from raydask.future import Future, FutureState

    f = Future(FutureState("surface-unbound", None, None))  # finished data, no Ray involved
    with pytest.raises(TypeError, match="bind_client expects a raydask Client, got 'not a client'"):
        f.bind_client("not a client")
