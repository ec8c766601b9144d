"""raydask.arguments: the checks of the public API's keywords, without Ray (no cluster starts here)."""

from __future__ import annotations

import ast
import datetime
import math
import pathlib

import pytest

from conftest import need
from hypothesis import given, settings
from hypothesis import strategies as st

from raydask import arguments as A
from raydask.keys import MAX_SECONDS, parse_timedelta

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / "raydask" / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_arguments_imports_no_ray():
    # pure functions: a check that fails must not have touched Ray
    assert _imports("arguments") <= {"__future__", "math", "numbers", "typing", ".keys"}
    assert not any(name.split(".")[0] == "ray" for name in _imports("keys"))


# -- durations ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, seconds", [
    (None, None), (0, 0.0), (3, 3.0), (1.5, 1.5), ("10s", 10.0), ("500ms", 0.5), ("2 minutes", 120.0),
    (" 3 ", 3.0), ("1e3", 1000.0), (".5s", 0.5), ("1h", 3600.0), ("1 week", 604800.0),
    (datetime.timedelta(seconds=3), 3.0),
])
def test_parse_timedelta_accepts_durations(value, seconds):
    assert parse_timedelta(value) == seconds


@pytest.mark.parametrize("value, kind, text", [
    (float("nan"), ValueError, "nan"), (float("inf"), ValueError, "inf"), (-1, ValueError, "negative"),
    ("-1s", ValueError, "negative"), ("abc", ValueError, "'abc'"), ("", ValueError, "''"),
    ("1..2s", ValueError, "'1..2s'"), ("5 parsecs", ValueError, "'5 parsecs'"), (1e300, ValueError, r"1e\+300"),
    (datetime.timedelta(seconds=-1), ValueError, "negative"), (True, TypeError, "True"), ([1], TypeError, r"\[1\]"),
    ({}, TypeError, r"\{\}"), (b"1s", TypeError, "b'1s'"), (1j, TypeError, "1j"),
])
def test_parse_timedelta_refuses_bad_values(value, kind, text):
    with pytest.raises(kind, match=text):
        parse_timedelta(value, "timeout")


def test_parse_timedelta_accepts_numpy_numbers():
    np = need("numpy")  # in the test extra: under CI=true a missing numpy fails
    assert parse_timedelta(np.int64(5)) == 5.0
    assert parse_timedelta(np.float32(0.5)) == 0.5


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=MAX_SECONDS), st.sampled_from([("", 1), ("s", 1), ("ms", 1e-3), ("m", 60)]))
def test_parse_timedelta_round_trips_numbers_and_strings(x, unit):
    suffix, scale = unit
    assert parse_timedelta(x) == x
    if x * scale <= MAX_SECONDS:
        assert math.isclose(parse_timedelta(f"{x!r}{suffix}"), x * scale)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=8), st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                 st.lists(st.integers(), max_size=2), st.none(), st.booleans()))
def test_parse_timedelta_returns_seconds_or_raises_type_or_value_error(value):
    try:
        seconds = parse_timedelta(value)
    except (TypeError, ValueError) as exc:
        assert repr(value) in str(exc)
    else:
        assert seconds is None or (isinstance(seconds, float) and 0 <= seconds <= MAX_SECONDS)


# -- submit / map ------------------------------------------------------------------------
def test_submit_defaults_normalise():
    opts = A.check_submit_options()
    assert opts == A.SubmitOptions(None, None, None, None, None, 0.1, False, True)


def test_submit_good_values_normalise():
    opts = A.check_submit_options(key=("x", 1), workers="tcp://1.2.3.4:5", resources={"GPU": 1, "FOO": 0.5},
                                  retries=2, priority=-3, fifo_timeout="1s", allow_other_workers=True, pure=False)
    assert opts.workers == ["tcp://1.2.3.4:5"] and opts.fifo_timeout == 1.0 and opts.retries == 2
    assert opts.priority == -3 and opts.allow_other_workers is True and opts.pure is False
    assert A.check_submit_options(workers={0, 1}).workers in ([0, 1], [1, 0])
    assert A.check_submit_options(priority=float("inf")).priority == math.inf
    assert A.check_submit_options(allow_other_workers=None).allow_other_workers is False


BAD_SUBMIT = [
    (dict(priority="high"), TypeError, "'high'"),
    (dict(priority=[1]), TypeError, r"\[1\]"),
    (dict(priority=True), TypeError, "True"),
    (dict(priority=float("nan")), ValueError, "nan"),
    (dict(retries=-1), ValueError, "-1"),
    (dict(retries=1.5), TypeError, "1.5"),
    (dict(retries="3"), TypeError, "'3'"),
    (dict(retries=True), TypeError, "True"),
    (dict(resources=[1]), TypeError, r"\[1\]"),
    (dict(resources="GPU"), TypeError, "'GPU'"),
    (dict(resources={"GPU": -1}), ValueError, "'GPU': -1"),
    (dict(resources={"GPU": float("inf")}), ValueError, "inf"),
    (dict(resources={"GPU": "a"}), TypeError, "'a'"),
    (dict(resources={1: 1}), TypeError, r"\{1: 1\}"),
    (dict(workers=1.5), TypeError, "1.5"),
    (dict(workers={"a": 1}), TypeError, r"\{'a': 1\}"),
    (dict(workers=[None]), TypeError, "None"),
    (dict(workers=True), TypeError, "True"),
    (dict(pure="yes"), TypeError, "'yes'"),
    (dict(pure=None), TypeError, "None"),
    (dict(fifo_timeout="abc"), ValueError, "'abc'"),
    (dict(fifo_timeout=-1), ValueError, "-1"),
    (dict(fifo_timeout=None), TypeError, "None"),
    (dict(fifo_timeout=[1]), TypeError, r"\[1\]"),
    (dict(allow_other_workers="x"), TypeError, "allow_other_workers= must be True or False"),
    (dict(allow_other_workers=True), ValueError, "Only use allow_other_workers= if using workers="),
    (dict(actor=1), TypeError, "1"),
    (dict(actors="x"), TypeError, "'x'"),
    (dict(key=[1]), TypeError, r"\[1\]"),
    (dict(key=b"x"), TypeError, "b'x'"),
    (dict(key=("a", [1])), TypeError, r"\[1\]"),
]


@pytest.mark.parametrize("kwargs, kind, text", BAD_SUBMIT, ids=[repr(k) for k, _, _ in BAD_SUBMIT])
def test_submit_options_refused(kwargs, kind, text):
    with pytest.raises(kind, match=text):
        A.check_submit_options(**kwargs)


BAD_MAP = [case for case in BAD_SUBMIT if "key" not in case[0]]  # map's key: see test_map_keys


@pytest.mark.parametrize("kwargs, kind, text", BAD_MAP, ids=[repr(k) for k, _, _ in BAD_MAP])
def test_map_options_refused_as_submit_options(kwargs, kind, text):
    with pytest.raises(kind, match=text):
        A.check_map_options(**kwargs)


def test_map_keys_and_batch_size():
    assert A.check_map_options(n_calls=2, key=["a", "b"]).key == ["a", "b"]
    assert A.check_map_options(key="prefix").key == "prefix"
    assert A.check_map_options(key=1).key == 1  # Dask formats a number prefix too
    assert A.check_map_options(batch_size=3).batch_size == 3
    with pytest.raises(ValueError, match=r"2 keys for 1 calls: key=\['a', 'b'\]"):
        A.check_map_options(n_calls=1, key=["a", "b"])
    with pytest.raises(TypeError, match=r"\[1\]"):
        A.check_map_options(key=["a", [1]])
    with pytest.raises(TypeError, match="<object"):
        A.check_map_options(key=object())
    for bad, kind in ((0, ValueError), (-1, ValueError), ("a", TypeError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(kind, match=repr(bad)):
            A.check_map_options(batch_size=bad)


# -- gather, scatter, wait, as_completed, result, Client ---------------------------------
def test_gather_options():
    assert A.check_gather_options() == ("raise", None)
    assert A.check_gather_options(errors="skip", direct=True) == ("skip", True)
    with pytest.raises(ValueError, match="errors='x'"):
        A.check_gather_options(errors="x")
    with pytest.raises(ValueError, match="errors=1"):
        A.check_gather_options(errors=1)
    with pytest.raises(TypeError, match="direct.*'x'"):
        A.check_gather_options(direct="x")


def test_scatter_options():
    assert A.check_scatter_options() == A.ScatterOptions(None, False, True, None, None)
    assert A.check_scatter_options(workers=["a"], broadcast=True, hash=False, timeout="2s").timeout == 2.0
    for kwargs, kind, text in [(dict(workers=1.5), TypeError, "1.5"), (dict(workers=object()), TypeError, "object"),
                               (dict(broadcast="x"), TypeError, "'x'"), (dict(hash="x"), TypeError, "'x'"),
                               (dict(timeout="x"), ValueError, "'x'"), (dict(timeout=-1), ValueError, "-1"),
                               (dict(direct=1), TypeError, "1")]:
        with pytest.raises(kind, match=text):
            A.check_scatter_options(**kwargs)


def test_wait_options():
    assert A.check_wait_options() == (None, "ALL_COMPLETED")
    assert A.check_wait_options(timeout="1s", return_when="FIRST_EXCEPTION") == (1.0, "FIRST_EXCEPTION")
    for kwargs, kind, text in [(dict(timeout="x"), ValueError, "'x'"), (dict(timeout=[1]), TypeError, r"\[1\]"),
                               (dict(return_when="x"), ValueError, "'x'"), (dict(return_when=1), ValueError, "1")]:
        with pytest.raises(kind, match=text):
            A.check_wait_options(**kwargs)


def test_as_completed_and_result_options():
    assert A.check_as_completed_options() == (False, True, None)
    assert A.check_as_completed_options(with_results=True, raise_errors=False, timeout=2) == (True, False, 2.0)
    for kwargs, kind in [(dict(with_results="x"), TypeError), (dict(raise_errors=None), TypeError),
                         (dict(timeout="x"), ValueError), (dict(timeout=float("nan")), ValueError)]:
        with pytest.raises(kind, match=repr(next(iter(kwargs.values())))):
            A.check_as_completed_options(**kwargs)
    assert A.check_result_timeout("1 minute") == 60.0
    with pytest.raises(ValueError, match="-1"):
        A.check_result_timeout(-1)


def test_client_options():
    assert A.check_client_options() == A.ClientOptions(None, True, None, False)
    assert A.check_client_options(asynchronous=True).asynchronous is True
    for kwargs, kind in [(dict(timeout="x"), ValueError), (dict(timeout=[1]), TypeError),
                         (dict(set_as_default="x"), TypeError), (dict(name=1), TypeError),
                         (dict(asynchronous="x"), TypeError)]:
        with pytest.raises(kind, match=repr(next(iter(kwargs.values())))):
            A.check_client_options(**kwargs)


def test_cluster_options():
    A.check_cluster_options()
    A.check_cluster_options(n_workers=0, threads_per_worker=1, memory_limit="4GiB", resources={"FOO": 2})
    for kwargs, kind, text in [
        (dict(threads_per_worker=0), ValueError, "threads_per_worker must be a positive integer, got 0"),
        (dict(threads_per_worker=-1), ValueError, "-1"), (dict(threads_per_worker=1.5), TypeError, "1.5"),
        (dict(n_workers=-1), ValueError, "n_workers must be a non-negative integer, got -1"),
        (dict(n_workers="2"), TypeError, "'2'"), (dict(memory_limit=[1]), TypeError, r"\[1\]"),
        (dict(memory_limit=float("nan")), ValueError, "nan"), (dict(memory_limit=-1), ValueError, "-1"),
        (dict(resources=["FOO"]), TypeError, "resources must be a dict"),
        (dict(resources={"GPU": -1}), ValueError, "-1"), (dict(object_store_memory=10), ValueError, "10"),
        (dict(object_store_memory=None), TypeError, "None"), (dict(object_store_memory="1GiB"), TypeError, "'1GiB'"),
    ]:
        with pytest.raises(kind, match=text):
            A.check_cluster_options(**kwargs)
