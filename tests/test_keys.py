"""Keys, tokens and formatting helpers (no cluster needed)."""

import functools
import re

import pytest

from raydask.keys import format_bytes, format_time, funcname, key_split, parse_timedelta, tokenize


def inc(x):
    return x + 1


def test_tokenize_is_deterministic_and_distinguishes_arguments():
    assert tokenize(inc, {}, 1) == tokenize(inc, {}, 1)
    assert tokenize(inc, {}, 1) != tokenize(inc, {}, 2)
    assert tokenize(inc, {}, 1) != tokenize(inc, {"y": 1}, 1)
    assert tokenize([1, 2]) != tokenize((1, 2))
    assert tokenize({"a": 1, "b": 2}) == tokenize({"b": 2, "a": 1})
    assert re.fullmatch(r"[0-9a-f]{32}", tokenize(object))


def test_tokenize_distinguishes_functions_with_the_same_name():
    def make():
        def f(x):
            return x
        return f

    assert tokenize(make()) != tokenize(make())


def test_funcname_matches_dask():
    assert funcname(inc) == "inc"
    assert funcname(lambda x: x) == "lambda"
    assert funcname(functools.partial(inc, 1)) == "inc"
    assert funcname(sum) == "sum"


@pytest.mark.parametrize("key, prefix", [
    ("inc-0a9f16d8886ad887355379debad3d8ff", "inc"),
    ("hello-world-1", "hello-world"),
    (("x-2", 1), "x"),
    ("x-abcdefab", "x"),
    ("ae05086432ca935f6eba409a8ecd4896", "data"),
])
def test_key_split_matches_dask(key, prefix):
    assert key_split(key) == prefix


def test_format_bytes_and_time_match_dask():
    assert format_bytes(1234) == "1.21 kiB"
    assert format_bytes(1234567890) == "1.15 GiB"
    assert format_time(1) == "1.00 s"
    assert format_time(1234.567) == "20m 34s"


def test_parse_timedelta_accepts_numbers_and_strings():
    assert parse_timedelta(None) is None
    assert parse_timedelta(3) == 3.0
    assert parse_timedelta("10s") == 10.0
    assert parse_timedelta("500ms") == 0.5
    assert parse_timedelta("2 minutes") == 120.0


@pytest.mark.parametrize("bad", ["soon", "10 parsecs", -1])
def test_parse_timedelta_rejects_nonsense_with_the_value(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_timedelta(bad)
