"""Placement, resources and retries on a real three-node Ray cluster.

Placement is checked by where each task really ran: the task returns the id of
the Ray node executing it.
"""

from __future__ import annotations

import os
import time

import pytest
import ray

from raydask import KilledWorker
from raydask.scheduling import node_has, placement_options, task_options

pytestmark = pytest.mark.multinode


def where(x=None, delay=0.0):
    time.sleep(delay)
    return ray.get_runtime_context().get_node_id()


def flaky(path, failures):
    """Fail the first ``failures`` calls (counted in a file), then return the call count."""
    count = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as fh:
        fh.write(str(count + 1))
    if count < failures:
        raise ValueError(f"failure {count}")
    return count + 1


def die(path):
    count = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as fh:
        fh.write(str(count + 1))
    os._exit(1)


@pytest.fixture
def workers(multinode_client):
    info = multinode_client.scheduler_info()["workers"]
    return sorted(({"address": a, **w} for a, w in info.items()), key=lambda w: str(w["name"]))


# -- placement -----------------------------------------------------------------------
def test_workers_by_address_runs_there(multinode_client, workers):
    for w in workers:
        futures = [multinode_client.submit(where, i, workers=[w["address"]], pure=False) for i in range(3)]
        assert {f.result(timeout=60) for f in futures} == {w["node_id"]}


def test_workers_by_name_runs_there(multinode_client, workers):
    for w in workers:
        f = multinode_client.submit(where, w["name"], workers=w["name"], pure=False)
        assert f.result(timeout=60) == w["node_id"]


def test_several_workers_keep_tasks_among_them(multinode_client, workers):
    a, b, c = workers
    futures = multinode_client.map(where, range(8), delay=0.2, workers=[a["address"], b["name"]], pure=False)
    ran_on = {f.result(timeout=60) for f in futures}
    assert ran_on <= {a["node_id"], b["node_id"]}
    assert c["node_id"] not in ran_on


def test_hard_placement_waits_for_a_busy_worker(multinode_client, workers):
    a = workers[1]
    blocker = multinode_client.submit(where, "block", delay=2, workers=[a["address"]], pure=False)
    f = multinode_client.submit(where, "wait", workers=[a["address"]], pure=False)
    assert f.result(timeout=60) == a["node_id"]
    assert blocker.done()  # one slot on a: the pinned task could only run after the blocker


def test_allow_other_workers_runs_elsewhere_while_the_worker_is_busy(multinode_client, workers):
    a = workers[2]
    blocker = multinode_client.submit(where, "block-soft", delay=4, workers=[a["address"]], pure=False)
    time.sleep(1)  # the blocker holds a's only slot
    f = multinode_client.submit(where, "soft", workers=[a["address"]], allow_other_workers=True, pure=False)
    ran_on = f.result(timeout=60)
    assert not blocker.done()
    assert ran_on != a["node_id"]
    assert placement_options([a["address"]], True, [a])["fallback_strategy"] == [{"label_selector": {}}]
    blocker.result(timeout=60)


def test_allow_other_workers_needs_workers(multinode_client):
    with pytest.raises(ValueError, match="allow_other_workers"):
        multinode_client.submit(where, 1, allow_other_workers=True)


def test_unknown_worker_is_an_error(multinode_client):
    with pytest.raises(ValueError, match="no worker matches.*'tcp://10.0.0.1:1'"):
        multinode_client.submit(where, 1, workers=["tcp://10.0.0.1:1"])
    with pytest.raises(TypeError, match="workers must be"):
        multinode_client.submit(where, 1, workers=3.5)


# -- resources -----------------------------------------------------------------------
def test_resources_map_to_ray_options():
    opts = task_options({"CPU": 2, "GPU": 1, "memory": 1e9, "FOO": 1}, None, None)
    assert opts == {"num_cpus": 2, "num_gpus": 1, "memory": 10**9, "resources": {"FOO": 1}}
    with pytest.raises(ValueError, match="'FOO': -1"):
        task_options({"FOO": -1})
    assert node_has({"nthreads": 2, "memory_limit": 10, "resources": {"FOO": 1}}, {"CPU": 2, "FOO": 1})
    assert not node_has({"nthreads": 2, "memory_limit": 10, "resources": {}}, {"FOO": 1})


@pytest.mark.timeout(30)
def test_resource_no_worker_has_is_an_error_not_a_hang(multinode_client):
    with pytest.raises(ValueError, match=r"no worker has the resources \{'FOO': 1\}"):
        multinode_client.submit(where, 1, resources={"FOO": 1})
    with pytest.raises(ValueError, match="no worker has the resources"):
        multinode_client.submit(where, 1, resources={"CPU": 2})  # every node has one CPU
    with pytest.raises(ValueError, match="no worker has the resources"):
        multinode_client.map(where, [1, 2], resources={"GPU": 1})


def test_cpu_resource_within_a_node_runs(multinode_client):
    f = multinode_client.submit(where, 2, resources={"CPU": 1}, pure=False)
    assert f.result(timeout=60)


# -- retries -------------------------------------------------------------------------
def test_retries_rerun_on_exception(multinode_client, tmp_path):
    path = str(tmp_path / "count")
    f = multinode_client.submit(flaky, path, 2, retries=2, pure=False)
    assert f.result(timeout=60) == 3
    assert open(path).read() == "3"


def test_too_few_retries_raise_the_task_error(multinode_client, tmp_path):
    path = str(tmp_path / "count")
    f = multinode_client.submit(flaky, path, 2, retries=1, pure=False)
    with pytest.raises(ValueError, match="failure 1"):
        f.result(timeout=60)
    assert open(path).read() == "2"


def test_no_retries_by_default_on_exception(multinode_client, tmp_path):
    path = str(tmp_path / "count")
    f = multinode_client.submit(flaky, path, 1, pure=False)
    with pytest.raises(ValueError, match="failure 0"):
        f.result(timeout=60)
    assert open(path).read() == "1"


@pytest.mark.timeout(90)
def test_dying_worker_process_ends_as_killed_worker(multinode_client, tmp_path):
    path = str(tmp_path / "count")
    f = multinode_client.submit(die, path, retries=1, pure=False)
    with pytest.raises(KilledWorker) as info:
        f.result(timeout=80)
    assert f.key in str(info.value)
    assert open(path).read() == "2"  # Ray ran it once more after the first crash
    assert f.status in ("error", "lost")


def die_unless(path, live):
    if live:
        return 0
    die(path)


def test_default_task_is_retried_by_ray_after_its_worker_dies(multinode_client, tmp_path):
    # The second submit of a callable goes straight to Ray's core worker
    # (raydask.direct): it must get Ray's default retries, as _remote gives.
    from raydask.direct import DirectSubmitter

    path = str(tmp_path / "count")
    assert multinode_client.submit(die_unless, path, True, pure=False).result(timeout=60) == 0
    f = multinode_client.submit(die_unless, path, False, pure=False)
    assert any(isinstance(d, DirectSubmitter) for d in multinode_client._dispatcher._direct.values())
    with pytest.raises(KilledWorker):
        f.result(timeout=120)
    assert open(path).read() == "4"  # once, and Ray's 3 retries (Dask's allowed-failures is 3 too)


# -- priorities ----------------------------------------------------------------------
def stamp(label, delay=0.0):
    """Return when the task started (wall clock; every node is on this machine)."""
    start = time.time()
    time.sleep(delay)
    return start


def stamp_after(dep, label):
    return time.time()


def touch(path):
    open(path, "w").close()


@pytest.fixture
def prio(multinode_client):
    """A second client on the same Ray cluster, so its priority gate does not outlive the test."""
    from raydask import Client

    client = Client(dashboard_address=None, set_as_default=False)
    yield client
    client.close()
    assert ray.is_initialized()  # the shared cluster survives


def _block_every_slot(client, first=1.0, step=1.0):
    """Fill what the gate lets into Ray: every CPU (nothing waits in Ray's queue)."""
    blockers = [client.submit(stamp, "block-0", first, priority=1, pure=False)]
    capacity = client._gate.stats()["capacity"]
    assert capacity == ray.cluster_resources()["CPU"]
    # staggered, so slots free one at a time and the order of starts is unambiguous
    blockers += [client.submit(stamp, f"block-{i}", first + i * step, priority=1, pure=False)
                 for i in range(1, capacity)]
    assert client._gate.stats()["ready"] == 0
    return blockers


@pytest.mark.timeout(90)
def test_high_priority_starts_before_queued_low_priority(prio):
    blockers = _block_every_slot(prio)
    lows = [prio.submit(stamp, f"low-{i}", 0.05, pure=False) for i in range(20)]
    time.sleep(0.3)
    high = prio.submit(stamp, "high", priority=10, pure=False)
    assert prio._gate.stats()["ready"] >= 20  # the low ones wait in the gate, not in Ray
    high_start = high.result(timeout=60)
    low_starts = prio.gather(lows)
    assert sum(s < high_start for s in low_starts) <= 1
    assert high_start < min(prio.gather(blockers)) + 10


@pytest.mark.timeout(90)
def test_equal_priorities_start_in_submission_order(prio):
    _block_every_slot(prio, first=0.5, step=0.3)
    tasks = [prio.submit(stamp, f"fifo-{i}", 0.05, priority=2, pure=False) for i in range(8)]
    starts = prio.gather(tasks)
    late = sum(a > b for a, b in zip(starts, starts[1:]))
    assert late <= 2  # three one-slot workers: neighbours may swap by milliseconds


@pytest.mark.timeout(90)
def test_high_priority_dependency_jumps_the_low_priority_queue(prio):
    _block_every_slot(prio)
    lows = [prio.submit(stamp, f"unrelated-{i}", 0.2, pure=False) for i in range(12)]
    dep = prio.submit(stamp, "dep", 0.05, priority=-5, pure=False)  # lowest of all ...
    high = prio.submit(stamp_after, dep, "high", priority=10)  # ... until a high one needs it
    dep_start, high_start = dep.result(timeout=60), high.result(timeout=60)
    low_starts = prio.gather(lows)
    assert sum(s < dep_start for s in low_starts) <= 1
    assert sum(s < high_start for s in low_starts) <= 3
    assert high_start > dep_start


@pytest.mark.timeout(90)
def test_cancelled_held_task_never_runs(prio, tmp_path):
    blockers = _block_every_slot(prio, first=1.5, step=0.2)
    marker = str(tmp_path / "ran")
    held = prio.submit(touch, marker, priority=1, pure=False)
    assert prio._gate.stats()["ready"] == 1
    held.cancel()
    assert held.status == "cancelled"
    from raydask import CancelledError

    with pytest.raises(CancelledError):
        held.result()
    prio.gather(blockers)
    after = prio.submit(stamp, "after-cancel", priority=1, pure=False)
    after.result(timeout=60)
    assert not os.path.exists(marker)


@pytest.mark.timeout(120)
def test_seed_as_completed_loop_with_priority_adds(prio):
    from raydask import as_completed

    def inc(x):
        return x + 1

    def add(x, y):
        return x + y

    zs = prio.map(inc, range(30), pure=False)
    seq = as_completed(zs)
    while seq.count() > 1:
        a = next(seq)
        b = next(seq)
        seq.add(prio.submit(add, a, b, priority=1))
    assert next(seq).result(timeout=60) == sum(range(1, 31))


def test_default_path_has_no_gate(multinode_client):
    from raydask import Client

    client = Client(dashboard_address=None, set_as_default=False)
    try:
        futures = client.map(stamp, range(5), pure=False)
        client.gather(futures)
        assert client._gate is None
        client.submit(stamp, "p", priority=1, pure=False).result(timeout=60)
        assert client._gate is not None
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_priority_with_placement_and_retries(prio, workers, tmp_path):
    w = workers[1]
    f = prio.submit(where, "gated-placed", workers=[w["address"]], priority=3, pure=False)
    assert f.result(timeout=60) == w["node_id"]
    path = str(tmp_path / "count")
    g = prio.submit(flaky, path, 1, retries=1, priority=3, pure=False)
    assert g.result(timeout=60) == 2
