"""One Ray object per task; how it ended is read off its ref, where and when it ran arrives apart."""

from __future__ import annotations

import time

import numpy as np
import pytest
import ray

from raydask import Client, get_task_stream, wait
from raydask import raycompat, receipts
from raydask.events import EventLog
from raydask.future import FutureState, Status
from raydask.receipts import STORE, Store


def inc(x):
    return x + 1


def fail(x):
    raise ValueError(f"bad {x}")


def big(n):
    return np.ones(n)


def test_a_task_is_one_ray_object_and_its_record_arrives(client):
    f = client.submit(inc, 1, pure=False)
    assert isinstance(f._state.ref, ray.ObjectRef)
    assert ray.get(f._state.ref) == 2  # the value itself, no (value, receipt) pair
    wait([f])
    assert f.status == "finished"
    record = f._state.load_record()
    assert record is not None and record.type == "int" and record.nbytes > 0
    assert record.start <= record.stop <= time.time()
    assert f.type is int
    assert repr(f) == f"<Future: finished, type: int, key: {f.key}>"


def test_a_failure_is_told_from_a_value_without_fetching(client):
    good, bad = client.submit(inc, 1, pure=False), client.submit(fail, 1, pure=False)
    ray.wait([good._state.ref, bad._state.ref], num_returns=2, fetch_local=False)
    assert raycompat.failed([good._state.ref, bad._state.ref]) == [False, True]
    errors = raycompat.outcomes([good._state.ref, bad._state.ref])
    assert errors[0] is None and isinstance(errors[1], ValueError)
    assert bad.status == "error" and isinstance(bad.exception(), ValueError)
    assert bad._state.record is not None and bad._state.record.type == "erred"  # travels with the error


def test_callbacks_fire_on_ready_refs_of_every_kind(client):
    fired = []
    refs = [client.submit(inc, 1, pure=False)._state.ref, client.submit(fail, 2, pure=False)._state.ref,
            client.submit(big, 200_000, pure=False)._state.ref]  # 1.6 MB: in the object store
    for i, ref in enumerate(refs):
        raycompat.on_ready(ref, lambda i=i: fired.append(i))
    deadline = time.monotonic() + 30
    while len(fired) < 3:
        assert time.monotonic() < deadline, fired
        time.sleep(0.02)
    assert sorted(fired) == [0, 1, 2]
    assert raycompat.failed(refs) == [False, True, False]


@pytest.mark.multinode
def test_a_value_on_another_node_settles_without_moving(multinode_client):
    c = multinode_client
    rows = c.scheduler_info()["workers"]
    here = ray.get_runtime_context().get_node_id()
    far = next(a for a, w in rows.items() if w["node_id"] != here)
    f = c.submit(big, 500_000, workers=[far], pure=False)  # 4 MB, made and kept on `far`
    assert wait([f], timeout=60).not_done == set()
    assert f.status == "finished"
    places = ray.experimental.get_object_locations([f._state.ref])[f._state.ref]
    assert here not in places["node_ids"]  # learning that it finished did not bring it here
    assert c.who_has([f])[f.key] == [far]  # the record names the node it ran on
    assert f.type is np.ndarray


@pytest.mark.multinode
def test_the_sink_lives_on_the_drivers_node(multinode_client):
    """Never on a worker node, which it would keep busy (not idle to Ray: ``retire_workers()`` skips it)."""
    here = ray.get_runtime_context().get_node_id()
    name, namespace = multinode_client._sink
    assert ray.get(ray.get_actor(name, namespace=namespace).node_id.remote(), timeout=60) == here
    more = [receipts.Collector(Store()) for _ in range(4)]  # made right after one another, as at startup
    try:
        assert ray.get([c._actor.node_id.remote() for c in more], timeout=60) == [here] * 4
    finally:
        for c in more:
            c.close()


def test_the_task_stream_has_the_tasks_that_just_ended(client):
    with get_task_stream(client) as ts:
        client.gather(client.map(inc, range(40), pure=False))
    assert len(ts.data) == 40
    assert all(r["status"] == "OK" and r["typename"] == "int" for r in ts.data)


def test_clients_of_one_process_share_one_sink(client):
    other = Client(dashboard_address=None, set_as_default=False)
    try:
        assert other._sink == client._sink is not None
        f = other.submit(inc, 10, pure=False)
        assert f.result(timeout=60) == 11 and f.type is int
    finally:
        other.close()
    g = client.submit(inc, 20, pure=False)
    assert g.result(timeout=60) == 21 and g.type is int  # the first client's records still come


def test_the_log_fills_in_a_record_that_arrives_after_the_end(client):
    log = EventLog(max_tasks=100)
    ref = ray.ObjectRef.from_random()  # a task id nothing else has: the record's key
    st = FutureState("k-1", ref, True)
    log.add(st)
    st.settle(Status.FINISHED)
    _, rows = log.snapshot()
    assert rows[0].record is None
    cursor = log.cursor
    STORE.add("node", 7, [(receipts.task_id_of(ref), "int", 28, 1.0, 2.0)])
    cursor2, changed = log.snapshot(cursor)
    assert [r.key for r in changed] == ["k-1"] and changed[0].record.pid == 7
    assert cursor2 > cursor


class _Holder:
    record = None
    listener = None


def test_the_store_hands_records_to_their_claims_and_stays_bounded():
    store = Store(keep=100)
    store.add("n", 1, [(i.to_bytes(4, "big"), "int", i, 0.0, 1.0) for i in range(250)])
    assert len(store._records) <= 100  # nobody claimed them: the newest stay
    assert store.get((249).to_bytes(4, "big")).nbytes == 249 and store.get((0).to_bytes(4, "big")) is None
    early, late = _Holder(), _Holder()
    store.claim((249).to_bytes(4, "big"), early)  # arrived before the claim: taken at once
    assert early.record.nbytes == 249 and store.get((249).to_bytes(4, "big")) is None
    told = []
    late.listener = told.append
    store.claim(b"later", late)
    store.add("n", 2, [(b"later", "str", 5, 0.0, 1.0)])  # arrives after: set, and the listener told
    assert late.record.nbytes == 5 and told == [late]
    for i in range(300):
        store.claim(b"c%d" % i, _Holder())
    assert len(store._claims) <= 100  # claims whose record never comes do not pile up
    lost = _Holder()
    t0 = time.monotonic()
    store.wait(b"never", lost, timeout=5)  # no collector runs in this store: nothing to wait for
    assert lost.record is None and time.monotonic() - t0 < 1


def test_the_sink_answers_at_once_after_a_quiet_spell_and_at_most_once_a_window():
    """Leading-edge throttling: a lone task's record is not held back, a busy one's are batched."""
    import asyncio

    sink = receipts.ReceiptSink()  # the actor's class, driven in this process's event loop

    async def go():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await sink.add(b"first")
        first = await sink.take(5)
        t1 = loop.time()
        await sink.add(b"second")
        await sink.add(b"third")
        later = await sink.take(5)
        t2 = loop.time()
        empty = await sink.take(0.01)
        return first, later, empty, t1 - t0, t2 - t1

    first, later, empty, quiet, busy = asyncio.run(go())
    assert first == [b"first"] and later == [b"second", b"third"] and empty == []
    assert quiet < receipts.GATHER / 2  # after a quiet spell: at once
    assert busy >= receipts.GATHER * 0.95  # right after an answer: the window's batches go together
