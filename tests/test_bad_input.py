"""Bad input to the public API (issue 10): one clear exception, raised before anything reaches Ray.

Each property draws a keyword of ``Client``, ``submit``, ``map``, ``gather``,
``scatter``, ``wait``, ``as_completed`` or ``Future.result`` and a value of the
wrong type or range for it, and asserts that the call raises exactly the
expected exception type, with a one-line message showing the value's repr (or
Dask's own message where Dask's type is matched), that the client registered
nothing, and that it still runs a task afterwards.  What Dask raises for each
is in ``raydask/arguments.py``'s docstrings.

Also here: ``LocalCluster``'s numbers (``threads_per_worker=0`` once divided by
zero) and the :class:`KilledWorker` of a task whose worker process died.
"""

from __future__ import annotations

import os
import pickle

import pytest
import ray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raydask import Client, KilledWorker, LocalCluster, as_completed, wait
from raydask.errors import killed_worker, unwrap

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def inc(x):
    return x + 1


# -- the values ---------------------------------------------------------------------------
small_text = st.text(max_size=4)
small_lists = st.lists(st.integers(-3, 3), max_size=2)
small_dicts = st.dictionaries(st.text(max_size=2), st.integers(-3, 3), max_size=1)
things = st.builds(object)
floats = st.floats(allow_nan=False, allow_infinity=False)
#: neither a number nor None
not_numbers = st.one_of(small_text, small_lists, small_dicts, things, st.booleans())
#: not True or False (ints too: pure=1 is as likely a slip as pure="yes")
not_flags = st.one_of(small_text, small_lists, things, st.integers(), floats, st.none())
#: strings that are not durations
bad_duration_strings = st.sampled_from(["abc", "5 parsecs", "1..2s", "-1s", "", "ten seconds", "1 s s"])
bad_durations = st.one_of(
    st.tuples(st.just(ValueError), st.one_of(bad_duration_strings, st.floats(max_value=-1e-3), st.integers(max_value=-1),
                                             st.just(float("nan")), st.just(float("inf")))),
    st.tuples(st.just(TypeError), st.one_of(small_lists, small_dicts, things, st.booleans(), st.binary(max_size=2))),
)


def typed(kind, values):
    return st.tuples(st.just(kind), values)


WORKERS = st.one_of(
    typed(TypeError, st.one_of(floats, small_dicts, things, st.booleans())),
    typed(TypeError, st.lists(st.one_of(floats, st.none(), small_lists, things), min_size=1, max_size=2)),
)

#: keyword -> strategy of (expected exception type, bad value)
SUBMIT = {
    "key": typed(TypeError, st.one_of(small_lists, small_dicts, st.binary(max_size=3), things,
                                      st.tuples(small_text, st.lists(st.integers(), max_size=1)))),
    "workers": WORKERS,
    "resources": st.one_of(
        typed(TypeError, st.one_of(small_text, small_lists, st.integers(), things)),
        typed(TypeError, st.dictionaries(st.sampled_from(["GPU", "FOO"]), st.one_of(small_text, st.none(), st.booleans()),
                                         min_size=1, max_size=1)),
        typed(TypeError, st.dictionaries(st.integers(), st.integers(0, 3), min_size=1, max_size=1)),
        typed(ValueError, st.dictionaries(st.sampled_from(["GPU", "FOO", "CPU"]),
                                          st.one_of(st.integers(max_value=-1), st.floats(max_value=-1e-3),
                                                    st.just(float("nan")), st.just(float("inf"))),
                                          min_size=1, max_size=1)),
    ),
    "retries": st.one_of(typed(TypeError, st.one_of(floats, small_text, st.booleans(), small_lists)),
                         typed(ValueError, st.integers(max_value=-1))),
    # only invalid priorities: a valid one turns the shared client's priority gate on
    "priority": st.one_of(typed(TypeError, not_numbers), typed(ValueError, st.just(float("nan")))),
    "fifo_timeout": st.one_of(bad_durations, typed(TypeError, st.none())),
    # 0 and 1 pass Dask's check (1 == True), as they pass here
    "allow_other_workers": typed(TypeError, st.one_of(st.text(min_size=1, max_size=4),
                                                      st.lists(st.integers(), min_size=1, max_size=2), things,
                                                      floats.filter(lambda x: x not in (0, 1)))),
    "actor": typed(TypeError, st.one_of(small_text, small_lists, things)),
    "actors": typed(TypeError, st.one_of(small_text, small_lists, things)),
    "pure": typed(TypeError, not_flags),
}

MAP = {
    **{k: v for k, v in SUBMIT.items() if k != "key"},
    "key": st.one_of(typed(TypeError, st.one_of(small_dicts, things, st.binary(max_size=3))),
                     typed(TypeError, st.lists(st.one_of(small_lists, things), min_size=2, max_size=2)),
                     # two calls below: a list of keys of another length
                     typed(ValueError, st.one_of(st.lists(st.text(min_size=1, max_size=3), max_size=1),
                                                 st.lists(st.text(min_size=1, max_size=3), min_size=3, max_size=4)))),
    "batch_size": st.one_of(typed(TypeError, st.one_of(small_text, floats, st.booleans(), small_lists)),
                            typed(ValueError, st.integers(max_value=0))),
}

GATHER = {
    "errors": typed(ValueError, st.one_of(small_text.filter(lambda s: s not in ("raise", "skip")), st.integers(),
                                          st.none(), small_lists)),
    "direct": typed(TypeError, st.one_of(small_text, st.integers(), small_lists, things)),
}

SCATTER = {
    "workers": WORKERS,
    "broadcast": typed(TypeError, not_flags),
    "hash": typed(TypeError, not_flags),
    "timeout": bad_durations,
    "direct": typed(TypeError, st.one_of(small_text, st.integers(), small_lists, things)),
}

WAIT = {
    "timeout": bad_durations,
    "return_when": typed(ValueError, st.one_of(small_text, st.integers(), st.none(), small_lists)),
}

AS_COMPLETED = {
    "with_results": typed(TypeError, not_flags.filter(lambda v: v is not None)),
    "raise_errors": typed(TypeError, not_flags),
    "timeout": bad_durations,
}

CLIENT = {
    "timeout": bad_durations,
    "set_as_default": typed(TypeError, not_flags),
    "name": typed(TypeError, st.one_of(st.integers(), floats, small_lists, small_dicts, things, st.booleans())),
    "asynchronous": typed(TypeError, st.one_of(small_text, st.integers(), small_lists, things)),
}

#: Dask's own wording, where it has none showing the value
DASK_MESSAGES = {"allow_other_workers": "allow_other_workers= must be True or False"}


def drawn(table):
    """``(keyword, expected type, bad value)`` from one of ``table``'s keywords."""
    return st.sampled_from(sorted(table)).flatmap(lambda k: table[k].map(lambda kv: (k, *kv)))


def assert_refused(client, call, keyword, kind, value):
    """``call()`` raises exactly ``kind`` naming ``value``; nothing was registered; the client still works."""
    before = set(client.futures)
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001 - the type is what is tested
        assert type(exc) is kind, f"{keyword}={value!r}: expected {kind.__name__}, got {type(exc).__name__}: {exc}"
        text = str(exc)
        assert "\n" not in text, f"{keyword}={value!r}: a one-line message, got {text!r}"
        wanted = DASK_MESSAGES.get(keyword, repr(value))
        assert wanted in text, f"{keyword}={value!r}: the message {text!r} does not show {wanted!r}"
    else:
        raise AssertionError(f"{keyword}={value!r} was accepted (returned {result!r}), expected {kind.__name__}")
    finally:
        assert set(client.futures) <= before, f"{keyword}={value!r} left futures behind"
        assert client.submit(inc, 1, pure=False).result(timeout=30) == 2


@pytest.fixture
def guarded(client):
    """The shared client; closed afterwards if a bad priority slipped through and turned its gate on.

    Today's client starts its priority gate on any ``priority=`` it is given; the
    later tests of the session must not inherit that.
    """
    had_gate = client._gate is not None
    yield client
    if client._gate is not None and not had_gate:
        import conftest

        conftest._pool.close()


@pytest.fixture
def done(guarded):
    f = guarded.submit(inc, 10)
    assert f.result(timeout=30) == 11
    return f


# -- the properties ------------------------------------------------------------------------
@SETTINGS
@given(case=drawn(SUBMIT))
def test_submit_refuses_bad_keywords(guarded, case):
    keyword, kind, value = case
    assert_refused(guarded, lambda: guarded.submit(inc, 1, **{keyword: value}), keyword, kind, value)


@SETTINGS
@given(case=drawn(MAP))
def test_map_refuses_bad_keywords(guarded, case):
    keyword, kind, value = case
    assert_refused(guarded, lambda: guarded.map(inc, [1, 2], **{keyword: value}), keyword, kind, value)


@SETTINGS
@given(case=drawn(GATHER))
def test_gather_refuses_bad_keywords(guarded, done, case):
    keyword, kind, value = case
    assert_refused(guarded, lambda: guarded.gather([done], **{keyword: value}), keyword, kind, value)


@SETTINGS
@given(case=drawn(SCATTER))
def test_scatter_refuses_bad_keywords(guarded, case):
    keyword, kind, value = case
    assert_refused(guarded, lambda: guarded.scatter(12345, **{keyword: value}), keyword, kind, value)


@SETTINGS
@given(case=drawn(WAIT))
def test_wait_refuses_bad_keywords(guarded, done, case):
    keyword, kind, value = case
    assert_refused(guarded, lambda: wait([done], **{keyword: value}), keyword, kind, value)


@SETTINGS
@given(case=drawn(AS_COMPLETED))
def test_as_completed_refuses_bad_keywords(guarded, done, case):
    keyword, kind, value = case
    # list(): a check made only while iterating would count too, but must still come first
    assert_refused(guarded, lambda: list(as_completed([done], **{keyword: value})), keyword, kind, value)


@SETTINGS
@given(case=bad_durations)
def test_future_result_refuses_bad_timeouts(guarded, done, case):
    kind, value = case
    assert_refused(guarded, lambda: done.result(timeout=value), "timeout", kind, value)


@SETTINGS
@given(case=drawn(CLIENT))
def test_client_refuses_bad_keywords(guarded, case):
    keyword, kind, value = case

    def make():
        # Ray runs in this process already: a Client that wrongly accepted this would
        # join it; close such a client again
        c = Client(dashboard_address=None, **{keyword: value})
        c.close()
        return c

    assert_refused(guarded, make, keyword, kind, value)


def test_an_asynchronous_client_in_a_running_client_s_process_is_refused_when_awaited(guarded):
    """``Client(asynchronous=True, n_workers=...)`` where Ray already runs: the error comes
    from ``await`` (where it starts), names the problem, and the running client keeps working."""
    import asyncio

    async def start():
        return await Client(asynchronous=True, dashboard_address=None, n_workers=1)

    with pytest.raises(ValueError, match="already running"):
        asyncio.run(start())
    assert guarded.submit(inc, 1, pure=False).result(timeout=30) == 2


# -- LocalCluster's numbers: refused before any node starts ------------------------------------
@pytest.mark.parametrize("kwargs, kind, text", [
    (dict(threads_per_worker=0), ValueError, "threads_per_worker must be a positive integer, got 0"),
    (dict(n_workers=2, threads_per_worker=0), ValueError, "threads_per_worker must be a positive integer, got 0"),
    (dict(n_workers=0, threads_per_worker=0), ValueError, "got 0"),
    (dict(threads_per_worker=-2), ValueError, "got -2"),
    (dict(threads_per_worker=1.5), TypeError, "got 1.5"),
    (dict(n_workers=-1), ValueError, "n_workers must be a non-negative integer, got -1"),
    (dict(n_workers="2"), TypeError, "got '2'"),
    (dict(memory_limit=float("nan")), ValueError, "nan"),
    (dict(memory_limit=float("inf")), ValueError, "inf"),
    (dict(memory_limit=-1), ValueError, "-1"),
    (dict(memory_limit=[1]), TypeError, r"\[1\]"),
    (dict(memory_limit="lots"), ValueError, "'lots'"),
    (dict(object_store_memory=1), ValueError, "got 1$"),
    (dict(object_store_memory="1GiB"), TypeError, "'1GiB'"),
    (dict(object_store_memory=float("nan")), ValueError, "nan"),
    (dict(resources={"GPU": -1}), ValueError, "'GPU': -1"),
    (dict(resources={"GPU": "one"}), TypeError, "'one'"),
    (dict(resources={"GPU": float("nan")}), ValueError, "nan"),
    (dict(resources={1: 1}), TypeError, r"\{1: 1\}"),
    (dict(resources=["GPU"]), TypeError, "resources must be a dict"),
])
def test_local_cluster_refuses_bad_numbers_before_starting(guarded, kwargs, kind, text):
    # Ray already runs in this process: a LocalCluster that got past its checks would
    # try to start a second one
    with pytest.raises(kind, match=text) as info:
        LocalCluster(dashboard_address=None, **kwargs)
    assert type(info.value) is kind
    assert guarded.submit(inc, 1, pure=False).result(timeout=30) == 2


# -- KilledWorker: how often and where -------------------------------------------------------------
def die(path):
    count = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as fh:
        fh.write(str(count + 1))
    os._exit(1)


def test_killed_worker_keeps_dasks_signature_and_pickles():
    e = KilledWorker("inc-1", "tcp://10.0.0.1:1234", 3)
    assert (e.task, e.last_worker, e.allowed_failures, e.attempts) == ("inc-1", "tcp://10.0.0.1:1234", 3, 4)
    assert "Attempted to run task 'inc-1' 4 times" in str(e)
    assert "The last worker that attempted to run the task was tcp://10.0.0.1:1234." in str(e)
    e = KilledWorker("inc-1", "tcp://b:2", 1, workers=["tcp://a:1", "tcp://b:2"], attempts=2)
    back = pickle.loads(pickle.dumps(e))
    assert (back.workers, back.attempts, str(back)) == (["tcp://a:1", "tcp://b:2"], 2, str(e))
    assert "2 times on tcp://a:1, tcp://b:2" in str(e)


def test_killed_worker_without_ray_details_counts_the_retries():
    assert "'k' 4 times (allowed failures: 3)" in str(killed_worker("k", retries=None))  # Ray's default: 3 retries
    assert "'k' 2 times" in str(killed_worker("k", retries=1))
    assert "'k' once" in str(unwrap(ray.exceptions.WorkerCrashedError(), "k", retries=0))
    # knowing neither the retries nor the task: no count rather than a wrong one
    unknown = unwrap(ray.exceptions.WorkerCrashedError(), "k")
    assert isinstance(unknown, KilledWorker) and unknown.attempts is None
    assert "Attempted to run task 'k' (allowed failures: unknown), but each time" in str(unknown)


@pytest.mark.timeout(120)
def test_unwrap_learns_attempts_and_workers_from_ray(guarded, tmp_path):
    path = str(tmp_path / "count")
    ref = ray.remote(max_retries=1)(die).remote(path)
    with pytest.raises(ray.exceptions.WorkerCrashedError) as info:
        ray.get(ref, timeout=90)
    assert open(path).read() == "2"
    (worker,) = guarded.scheduler_info()["workers"]  # the shared client has one worker
    for retries in ({"retries": 1}, {}):  # from the retries and the task events, or from the events alone
        err = unwrap(info.value, "die-1", ref=ref, **retries)
        assert isinstance(err, KilledWorker)
        assert err.attempts == 2 and err.workers == [worker] and err.last_worker == worker
        assert f"Attempted to run task 'die-1' 2 times on {worker} (allowed failures: 1)" in str(err)


@pytest.mark.timeout(120)
def test_dying_worker_process_ends_as_killed_worker_naming_attempts_and_worker(guarded, tmp_path):
    # Needs the client to pass the future's ref (and retries) to errors.unwrap.
    path = str(tmp_path / "count")
    f = guarded.submit(die, path, retries=1, pure=False)
    with pytest.raises(KilledWorker) as info:
        f.result(timeout=90)
    assert open(path).read() == "2"
    (worker,) = guarded.scheduler_info()["workers"]
    message = str(info.value)
    assert f.key in message and "2 times" in message and worker in message
    assert guarded.submit(inc, 1, pure=False).result(timeout=30) == 2


# last: it closes the shared client (Ray must not be running for Client() to start a LocalCluster)
def test_client_refuses_threads_per_worker_zero(no_client):
    with pytest.raises(ValueError, match="threads_per_worker must be a positive integer, got 0"):
        Client(threads_per_worker=0, dashboard_address=None)
    assert not ray.is_initialized()
