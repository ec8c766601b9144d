"""Checks of the public API's keyword arguments, made before anything reaches Ray.

Each ``check_*`` function takes the keywords of one public call, raises a
``TypeError`` (wrong type) or ``ValueError`` (wrong value) whose one-sentence
message names the argument and shows the offending value with ``!r``, and
returns the values normalised (durations as float seconds, ``workers`` as a
list).  They are pure: no Ray, no client, nothing started or registered, so a
call that fails here leaves the client and the cluster exactly as they were.

Where dask.distributed raises a specific exception for a bad argument at the
call (``allow_other_workers``, ``key``, ``errors``), the type and wording are
Dask's; where Dask accepts the value and fails later (a string ``priority``
fails on the scheduler with ``TypeError``) or never (``pure="yes"``), the type
is the one Dask's eventual failure has, or the plain Python rule.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

from .keys import parse_timedelta, validate_key

__all__ = [
    "ClientOptions",
    "ScatterOptions",
    "SubmitOptions",
    "check_as_completed_options",
    "check_client_options",
    "check_cluster_options",
    "check_gather_options",
    "check_map_options",
    "check_result_timeout",
    "check_scatter_options",
    "check_submit_options",
    "check_wait_options",
]

RETURN_WHEN = ("ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION")  # as raydask.waiting's constants


class SubmitOptions(NamedTuple):
    """What ``submit``/``map`` were asked for, checked (``fifo_timeout`` in seconds)."""

    key: object
    workers: list | None
    resources: dict | None
    retries: int | None
    priority: int | float | None
    fifo_timeout: float
    allow_other_workers: bool
    pure: bool
    batch_size: int | None = None


class ScatterOptions(NamedTuple):
    workers: list | None
    broadcast: bool
    hash: bool
    timeout: float | None
    direct: bool | None


class ClientOptions(NamedTuple):
    timeout: float | None
    set_as_default: bool
    name: str | None
    asynchronous: bool


# -- the pieces -----------------------------------------------------------------------
def _flag(name, value, none_ok=False):
    """``value`` if it is True or False (or None, with ``none_ok``); else TypeError."""
    if isinstance(value, bool) or (none_ok and value is None):
        return value
    allowed = "True, False or None" if none_ok else "True or False"
    raise TypeError(f"{name} must be {allowed}, got {value!r}")


def _workers(value, name="workers"):
    """None, or a list of worker addresses or names (Dask: a str, a name, a list or set of them)."""
    if value is None:
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(f"{name} must be a worker address or name, or a list or set of them, got {value!r}")
    for w in value:
        # Dask's scheduler: "addresses should be strings or tuples, got 1.5"; raydask also
        # takes a worker's name (LocalCluster names them 0, 1, ...)
        if isinstance(w, bool) or not isinstance(w, (str, int)):
            raise TypeError(f"{name} entries must be worker addresses or names (str or int), got {w!r} in {value!r}")
    return list(value)


def _resources(value):
    """None, or a dict of resource name to a finite, non-negative amount."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"resources must be a dict like {{'GPU': 1}}, got {value!r}")
    for rname, amount in value.items():
        if not isinstance(rname, str):
            raise TypeError(f"resource names must be strings, got {rname!r} in {value!r}")
        if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
            raise TypeError(f"resource amounts must be numbers, got {rname!r}: {amount!r} in {value!r}")
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"resource amounts must be finite and non-negative, got {rname!r}: {amount!r} in {value!r}")
    return dict(value)


def _retries(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"retries must be a non-negative integer or None, got {value!r}")
    if value < 0:
        raise ValueError(f"retries must not be negative, got {value!r}")
    return int(value)


def _priority(value):
    """None, or a number other than NaN (Dask negates it on the scheduler: a str fails there with TypeError)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"priority must be a number, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if math.isnan(value):
        raise ValueError(f"priority must be a number, not NaN, got {value!r}")  # it cannot be ordered
    return float(value)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# -- one per public call ----------------------------------------------------------------
def check_submit_options(*, key=None, workers=None, resources=None, retries=None, priority=None,
                         fifo_timeout="100 ms", allow_other_workers=False, actor=False, actors=False,
                         pure=True) -> SubmitOptions:
    """Check ``Client.submit``'s keywords (all but the function and its arguments).

    Returns:
        A :class:`SubmitOptions`; ``workers`` as a list, ``fifo_timeout`` in seconds.
    Raises:
        TypeError: a keyword of the wrong type, or a ``key`` Dask would refuse.
        ValueError: a negative ``retries``, a negative or non-finite resource amount,
            a NaN ``priority``, an unparsable ``fifo_timeout``, or
            ``allow_other_workers=True`` without ``workers`` (Dask's message).
    """
    if key is not None:
        validate_key(key)
    if not isinstance(pure, bool):
        raise TypeError(f"pure must be True or False, got {pure!r}")
    opts = _common(workers, resources, retries, priority, fifo_timeout, allow_other_workers, actor, actors)
    return SubmitOptions(key, *opts, pure)


def check_map_options(*, n_calls=None, key=None, batch_size=None, workers=None, resources=None,
                      retries=None, priority=None, fifo_timeout="100 ms", allow_other_workers=False,
                      actor=False, actors=False, pure=True) -> SubmitOptions:
    """Check ``Client.map``'s keywords; ``n_calls`` (if known) checks a list of keys' length.

    ``key`` is a prefix (a str, or an int or float as Dask formats it) or a list
    of full keys, one per call.

    Raises:
        as :func:`check_submit_options`, and ``ValueError`` for a list of keys of the
        wrong length (Dask silently makes extra futures) or a ``batch_size`` below 1.
    """
    if isinstance(key, list):
        for k in key:
            try:
                validate_key(k)
            except TypeError as e:
                raise TypeError(f"{e} in map's key={key!r}") from None
        if n_calls is not None and len(key) != n_calls:
            raise ValueError(f"map got {len(key)} keys for {n_calls} calls: key={key!r}")
    elif key is not None and (isinstance(key, bool) or not isinstance(key, (str, int, float))):
        raise TypeError(f"map's key must be a key prefix (str) or a list of keys, got {key!r}")
    if batch_size is not None:
        batch_size = _positive_int("batch_size", batch_size)
    opts = check_submit_options(workers=workers, resources=resources, retries=retries, priority=priority,
                                fifo_timeout=fifo_timeout, allow_other_workers=allow_other_workers,
                                actor=actor, actors=actors, pure=pure)
    return opts._replace(key=key, batch_size=batch_size)


def _common(workers, resources, retries, priority, fifo_timeout, allow_other_workers, actor, actors):
    if allow_other_workers not in (True, False, None):  # Dask's own check, and message
        raise TypeError(f"allow_other_workers= must be True or False, got {allow_other_workers!r}")
    workers = _workers(workers)
    if allow_other_workers and workers is None:
        raise ValueError("Only use allow_other_workers= if using workers=")
    for name, value in (("actor", actor), ("actors", actors)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if fifo_timeout is None:  # Dask fails later adding None to a float
        raise TypeError(f"fifo_timeout must be a duration such as '100 ms', got {fifo_timeout!r}")
    fifo = parse_timedelta(fifo_timeout, "fifo_timeout")
    return (workers, _resources(resources), _retries(retries), _priority(priority), fifo,
            bool(allow_other_workers))


def check_gather_options(*, errors="raise", direct=None) -> tuple[str, bool | None]:
    """Check ``Client.gather``'s keywords; returns ``(errors, direct)``.

    Raises:
        ValueError: ``errors`` other than ``"raise"`` or ``"skip"`` (Dask's type; Dask
            raises it only once a future failed).
        TypeError: ``direct`` not True, False or None.
    """
    if not isinstance(errors, str) or errors not in ("raise", "skip"):
        raise ValueError(f"Bad value, `errors={errors!r}`; use 'raise' or 'skip'")
    return errors, _flag("direct", direct, none_ok=True)


def check_scatter_options(*, workers=None, broadcast=False, hash=True, timeout=None,
                          direct=None) -> ScatterOptions:
    """Check ``Client.scatter``'s keywords.

    Raises:
        TypeError: ``workers`` not a worker or a collection of them (as Dask's
            scheduler), a flag that is not True or False, or a ``timeout`` that is
            not a duration.
        ValueError: a negative or unparsable ``timeout``.
    """
    return ScatterOptions(_workers(workers), _flag("broadcast", broadcast), _flag("hash", hash),
                          parse_timedelta(timeout, "timeout"), _flag("direct", direct, none_ok=True))


def check_wait_options(*, timeout=None, return_when="ALL_COMPLETED") -> tuple[float | None, str]:
    """Check ``wait``'s keywords; returns ``(timeout in seconds or None, return_when)``.

    Raises:
        TypeError: a ``timeout`` that is not a duration (Dask's type for a list).
        ValueError: a negative or unparsable ``timeout``; a ``return_when`` other than
            ``ALL_COMPLETED``, ``FIRST_COMPLETED`` or ``FIRST_EXCEPTION`` (Dask raises
            ``NotImplementedError``; raydask has ``FIRST_EXCEPTION``, see test_parity).
    """
    if not isinstance(return_when, str) or return_when not in RETURN_WHEN:
        raise ValueError(f"return_when must be ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION, got {return_when!r}")
    return parse_timedelta(timeout, "timeout"), return_when


def check_as_completed_options(*, with_results=False, raise_errors=True, timeout=None) -> tuple[bool, bool, float | None]:
    """Check ``as_completed``'s keywords; returns ``(with_results, raise_errors, timeout in seconds)``."""
    return (_flag("with_results", with_results), _flag("raise_errors", raise_errors),
            parse_timedelta(timeout, "timeout"))


def check_result_timeout(timeout=None) -> float | None:
    """Check ``Future.result``/``exception``/``traceback``'s ``timeout``; seconds or None."""
    return parse_timedelta(timeout, "timeout")


def check_client_options(*, timeout=None, set_as_default=True, name=None, asynchronous=False) -> ClientOptions:
    """Check ``Client(...)``'s scalar keywords (the cluster's are :class:`LocalCluster`'s).

    ``asynchronous=True`` passes: refusing (or supporting) it is the Client's business.

    Raises:
        TypeError: a ``timeout`` that is not a duration, a flag that is not True or
            False, or a ``name`` that is not a str.
        ValueError: a negative or unparsable ``timeout``.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {name!r}")
    return ClientOptions(parse_timedelta(timeout, "timeout"), _flag("set_as_default", set_as_default), name,
                         _flag("asynchronous", asynchronous))


#: Ray refuses a smaller object store (``ray_constants.OBJECT_STORE_MINIMUM_MEMORY_BYTES``, 2.60).
MIN_OBJECT_STORE_BYTES = 75 * 2**20


def _count(name, value, minimum):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise ValueError(f"{name} must be {kind} integer, got {value!r}")
    return int(value)


def check_cluster_options(*, n_workers=None, threads_per_worker=None, memory_limit="auto", resources=None,
                          object_store_memory=512 * 2**20) -> None:
    """Check ``LocalCluster``'s numbers before any node starts.

    ``n_workers`` may be 0 (Dask's "start none now, scale later"; raydask still
    starts the head node); ``threads_per_worker`` must be at least 1 (a node
    with no CPU runs nothing, and ``threads_per_worker=0`` once divided by zero).
    ``memory_limit`` strings are parsed by the cluster; here only their type
    and the numbers' range are checked.

    Raises:
        TypeError: a count that is not an integer, a ``memory_limit`` that is not a
            number or a string, ``resources`` that is not a dict of numbers.
        ValueError: a negative ``n_workers``, ``threads_per_worker`` below 1, a
            negative or non-finite ``memory_limit`` or resource amount, an
            ``object_store_memory`` below Ray's minimum of 75 MiB.
    """
    _count("n_workers", n_workers, 0)
    _count("threads_per_worker", threads_per_worker, 1)
    if memory_limit is not None and (isinstance(memory_limit, bool)
                                     or not isinstance(memory_limit, (numbers.Real, str))):
        raise TypeError(f"memory_limit must be a number of bytes, a string like '4GiB' or 'auto', got {memory_limit!r}")
    if isinstance(memory_limit, numbers.Real) and not (math.isfinite(memory_limit) and memory_limit >= 0):
        raise ValueError(f"memory_limit must be a finite, non-negative number of bytes, got {memory_limit!r}")
    _resources(resources)
    if isinstance(object_store_memory, bool) or not isinstance(object_store_memory, numbers.Real):
        raise TypeError(f"object_store_memory must be a number of bytes, got {object_store_memory!r}")
    if not math.isfinite(object_store_memory) or object_store_memory < MIN_OBJECT_STORE_BYTES:
        raise ValueError(f"object_store_memory must be at least {MIN_OBJECT_STORE_BYTES} bytes (75 MiB), "
                         f"got {object_store_memory!r}")
