"""Future: statuses, results, errors with remote tracebacks, callbacks, pickling."""

from __future__ import annotations

import gc
import re
import threading
import time
import traceback

import pytest

from raydask import CancelledError, Future, FutureCancelledError


def inc(x):
    return x + 1


def slowinc(x, delay=0.3):
    time.sleep(delay)
    return x + 1


def deep_failure(x):
    return _inner_failure(x)


def _inner_failure(x):
    raise ZeroDivisionError(f"cannot divide {x!r}")


class CustomError(Exception):
    pass


def raise_custom(x):
    raise CustomError("custom", x)


def test_repr_moves_from_pending_to_finished(client):
    f = client.submit(slowinc, 1, delay=0.5, pure=False)
    assert re.fullmatch(r"<Future: pending, key: slowinc-[0-9a-f-]+>", repr(f))
    f.result()
    assert re.fullmatch(r"<Future: finished, type: int, key: slowinc-[0-9a-f-]+>", repr(f))
    assert f.type is int
    html = f._repr_html_()
    assert "finished" in html and f.key in html


def test_type_of_non_builtin_result(client):
    f = client.submit(lambda: Future.__name__ and re.compile("x"))
    f.result()
    assert f.type is re.Pattern  # the class, imported here as Dask's client unpickles it
    assert "type: re.Pattern" in repr(f)


def test_error_keeps_type_message_and_remote_frames(client):
    f = client.submit(deep_failure, 3)
    with pytest.raises(ZeroDivisionError, match=re.escape("cannot divide 3")) as info:
        f.result()
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert names[-2:] == ["deep_failure", "_inner_failure"], names
    assert f.status == "error"
    assert isinstance(f.exception(), ZeroDivisionError)
    tb_names = [frame.name for frame in traceback.extract_tb(f.traceback())]
    assert tb_names[-1] == "_inner_failure"
    assert "Ray" not in str(info.value)


def test_status_says_error_as_soon_as_result_raised(client):
    # result() fetches the value; the status comes from the receipt, which Ray may
    # store a moment later: result() settles the future itself
    futures = [client.submit(deep_failure, i, pure=False) for i in range(1, 40)]
    for f in futures:
        with pytest.raises(ZeroDivisionError) as info:
            f.result()
        assert f.status == "error"
        assert f.exception() is info.value


def test_custom_exception_type_and_args(client):
    f = client.submit(raise_custom, 7)
    with pytest.raises(CustomError) as info:
        f.result()
    assert info.value.args == ("custom", 7)


def test_dependents_of_a_failed_task_raise_the_same_exception(client):
    bad = client.submit(deep_failure, 1)
    dependent = client.submit(inc, bad)
    further = client.submit(inc, dependent)
    for f in (dependent, further):
        with pytest.raises(ZeroDivisionError, match="cannot divide 1"):
            f.result()
        assert f.status == "error"


def test_exception_is_none_on_success(client):
    f = client.submit(inc, 1)
    assert f.exception() is None and f.traceback() is None


def test_result_timeout_raises_builtin_timeout(client):
    f = client.submit(slowinc, 1, delay=2, pure=False)
    with pytest.raises(TimeoutError):
        f.result(timeout=0.1)
    with pytest.raises(TimeoutError):
        f.result(timeout="100ms")
    with pytest.raises(ValueError, match="'soon'"):
        f.result(timeout="soon")
    assert f.result() == 2


def test_cancelled_future_raises_cancelled_error(client):
    f = client.submit(slowinc, 1, delay=3, pure=False)
    f.cancel()
    assert f.cancelled()
    with pytest.raises(FutureCancelledError) as info:
        f.result()
    assert isinstance(info.value, CancelledError)
    assert str(info.value) == f"{f.key} cancelled for reason: unknown."
    assert f.exception() is None  # as Dask (concurrent.futures would raise)


def test_add_done_callback_runs_on_a_raydask_thread(client):
    seen = []
    done = threading.Event()

    def callback(future):
        seen.append((future.key, future.status, threading.current_thread().name))
        done.set()

    f = client.submit(slowinc, 1, delay=0.3, pure=False)
    f.add_done_callback(callback)
    assert done.wait(10)
    (key, status, thread), = seen
    assert key == f.key and status == "finished" and thread.startswith("raydask")


def test_add_done_callback_on_a_finished_future_runs_too(client):
    done = threading.Event()
    f = client.submit(inc, 100)
    f.result()
    f.add_done_callback(lambda fut: done.set())
    assert done.wait(10)
    with pytest.raises(TypeError, match="42"):
        f.add_done_callback(42)


def test_a_failing_callback_does_not_stop_others(client):
    done = threading.Event()
    f = client.submit(inc, 200)
    f.add_done_callback(lambda fut: 1 / 0)
    f.add_done_callback(lambda fut: done.set())
    assert done.wait(10)


def test_future_pickled_inside_a_task_argument_works_in_the_task(client):
    class Box:  # not a container raydask unpacks: the Future itself travels
        def __init__(self, future):
            self.future = future

    x = client.submit(inc, 41)
    box = Box(x)
    assert client.submit(lambda b: b.future.result() + 1, box).result() == 43


def test_release_and_del(client):
    f = client.submit(inc, 99999)
    key = f.key
    f.release()
    assert key not in client.futures
    del f
    gc.collect()


def _wait_for_path(x, path, timeout=90):
    """``len(x)`` once ``path`` exists: a task the test holds running (at most ``timeout`` s,
    so a test that failed before letting it go does not keep a CPU of the shared cluster)."""
    import os

    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(x)


def _grow(x):
    return bytes(len(x) + 1)


def _live_links():
    from raydask.future import FutureState

    gc.collect()
    return [o.key for o in gc.get_objects() if type(o) is FutureState and o.key.startswith("_grow-")]


def _chain(client, go):
    """30 links the caller does not hold, then a last task that runs until ``go`` exists:
    ``(last, key of its input)``."""
    x = client.submit(bytes, 1000, pure=False)
    for _ in range(30):
        x = client.submit(_grow, x, pure=False)
    return client.submit(_wait_for_path, x, str(go), pure=False), x.key


@pytest.mark.timeout(120)
def test_a_chain_of_dropped_futures_does_not_pin_its_states(client, tmp_path):
    """Raw Ray frees a chain's values as their consumers run; the client must not keep them.

    Each link's state held its input's state, and so its ref and the value in
    Ray's object store, until the last task was seen to finish: 30 dropped links
    kept 30 states (and 30 values) alive while the last one still ran.
    """
    go = tmp_path / "go"
    last, key = _chain(client, go)
    try:
        assert _live_links() == [key]  # only the running task's own input (Ray holds the rest while they run)
        assert last.status == "pending"
    finally:
        go.touch()
    assert last.result(timeout=60) == 1030


@pytest.mark.timeout(120)
def test_with_the_dashboard_on_dropped_links_go_once_they_ended(client, tmp_path):
    """The dashboard's log follows every task, also dropped ones, until it knows how they ended.

    Nobody viewing the page, it learned that only when it grew crowded: the
    chain's states, refs and values stayed (420 MiB for 21 links of 20 MiB,
    even after the last task's result was read). Now Ray tells the client when
    a dropped task ends; the log keeps a small row.
    """
    from raydask import Client

    go = tmp_path / "go"
    c = Client(dashboard_address="127.0.0.1:0", set_as_default=False)
    try:
        last, key = _chain(c, go)
        deadline = time.monotonic() + 30
        while len(alive := _live_links()) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)  # each link goes once Ray ran it and its record came
        assert alive == [key]
        assert last.status == "pending"
        rows = {e.key: e.state for e in c._events.snapshot()[1] if e.key.startswith("_grow-")}
        assert len(rows) == 30 and {s for k, s in rows.items() if k != key} == {"released"}
        go.touch()
        assert last.result(timeout=60) == 1030
    finally:
        go.touch()
        c.close()
