"""wait and as_completed: completion order, the whole as_completed API, timeouts."""

from __future__ import annotations

import time

import pytest

from raydask import FIRST_COMPLETED, as_completed, wait


def sleep_then(x, delay):
    time.sleep(delay)
    return x


def fail(x):
    raise ValueError(f"bad {x}")


def test_as_completed_yields_in_completion_order(client):
    slow = client.submit(sleep_then, "slow", 1.5, pure=False)
    fast = client.submit(sleep_then, "fast", 0.1, pure=False)
    assert [f.result() for f in as_completed([slow, fast])] == ["fast", "slow"]


def test_as_completed_add_count_and_the_seed_loop(client):
    zs = client.map(lambda x: x + 1, range(16))
    seq = as_completed(zs)
    assert seq.count() == 16
    while seq.count() > 1:
        a = next(seq)
        b = next(seq)
        seq.add(client.submit(lambda x, y: x + y, a, b, priority=1))
    assert next(seq).result() == sum(range(1, 17))
    assert seq.is_empty()
    with pytest.raises(StopIteration):
        next(seq)


def test_future_added_twice_is_yielded_twice(client):
    f = client.submit(sleep_then, 1, 1.0, pure=False)
    seq = as_completed([f])
    seq.add(f)
    assert seq.count() == 1  # as Dask: distinct pending futures
    assert list(seq) == [f, f]


def test_update_has_ready_next_batch_and_batches(client):
    fs = [client.submit(sleep_then, i, 0.05, pure=False) for i in range(6)]
    seq = as_completed()
    assert seq.is_empty()
    seq.update(fs)
    batch = seq.next_batch(block=True)
    assert batch and all(f in fs for f in batch)
    time.sleep(0.5)
    assert seq.has_ready()
    rest = [f for b in seq.batches() for f in b]
    assert sorted(f.result() for f in batch + rest) == list(range(6))
    assert seq.next_batch(block=False) == []


def test_with_results_and_raise_errors(client):
    good = client.submit(sleep_then, "ok", 0, pure=False)
    bad = client.submit(fail, 1, pure=False)
    pairs = list(as_completed([good, bad], with_results=True, raise_errors=False))
    results = {f.key: r for f, r in pairs}
    assert results[good.key] == "ok" and isinstance(results[bad.key][1], ValueError)  # Dask: exc_info
    with pytest.raises(ValueError, match="bad 1"):
        list(as_completed([bad], with_results=True))


def test_as_completed_timeout_counts_from_construction(client):
    f = client.submit(sleep_then, 1, 3, pure=False)
    seq = as_completed([f], timeout=0.3)
    time.sleep(0.3)
    with pytest.raises(TimeoutError):
        next(seq)


def test_clear_and_repr(client):
    f = client.submit(sleep_then, 1, 2, pure=False)
    seq = as_completed([f])
    assert repr(seq) == "<as_completed: waiting=1 done=0>"
    seq.clear()
    assert seq.count() == 0 and list(seq) == []


def test_as_completed_rejects_non_futures(client):
    with pytest.raises(TypeError, match="got 1"):
        as_completed([1])


def test_wait_all_and_first_completed(client):
    fast = client.submit(sleep_then, 1, 0.05, pure=False)
    slow = client.submit(sleep_then, 2, 1.5, pure=False)
    done, not_done = wait([fast, slow], return_when=FIRST_COMPLETED)
    assert fast in done and slow in not_done
    result = wait([fast, slow])
    assert result.done == {fast, slow} and result.not_done == set()


def test_wait_raises_timeout_like_dask_not_partial_like_ray(client):
    slow = client.submit(sleep_then, 1, 3, pure=False)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        wait([slow], timeout="200ms")
    assert time.monotonic() - start < 2
    with pytest.raises(TimeoutError):
        wait([slow], timeout=0.1)


def test_wait_counts_errors_as_done(client):
    bad = client.submit(fail, 2, pure=False)
    done, not_done = wait([bad])
    assert done == {bad} and bad.status == "error"


def test_wait_rejects_bad_input(client):
    f = client.submit(sleep_then, 1, 0, pure=False)
    assert wait(f).done == {f}  # a single future is accepted, as in Dask
    with pytest.raises(ValueError, match="'SOMETIMES'"):
        wait([f], return_when="SOMETIMES")
    with pytest.raises(TypeError, match="'x'"):
        wait(["x"])
    assert wait([f]).done == {f}


def test_waited_and_gathered_futures_are_released_without_the_garbage_collector(client):
    # futures_of's walker once closed over itself: the cycle kept every Future it saw
    # (and so its key) alive until the next garbage collection
    import gc

    gc.disable()
    try:
        futures = client.map(sleep_then, [1, 2], delay=0, pure=False)
        wait(futures)
        assert client.gather(futures) == [1, 2]
        keys = {f.key for f in futures}
        del futures
        assert not keys & set(client.futures)
    finally:
        gc.enable()
