"""Task keys the way Dask spells them: ``inc-<token>``, ``int-<token>``.

A key is ``f"{funcname(func)}-{token}"``; the token is deterministic for pure
calls (same function, same arguments, same key; that is how Dask deduplicates
work) and a fresh uuid otherwise.  The token only has to be stable within a
process and collision-free; it need not equal the token dask would compute.
"""

from __future__ import annotations

import functools
import hashlib
import math
import numbers
import re
import sys
import threading
import uuid
from operator import methodcaller

import cloudpickle

__all__ = ["funcname", "key_split", "tokenize", "typename", "format_bytes", "validate_key"]

_ATOMS = (int, float, str, bytes, bool, complex, type(None))
_FunctionType = type(lambda: None)


def _normalize(obj, depth=0):
    """A cheap, hashable-by-repr stand-in for ``obj``; falls back to pickling."""
    t = type(obj)
    if t in _ATOMS:
        return obj
    if t is _FunctionType:  # the common first argument of a submit: skip the probing below
        return ("callable", obj.__module__, obj.__qualname__, id(obj))
    if t is dict and not obj:  # submit's kwargs, usually empty
        return ("dict", ())
    if depth > 50:
        return _pickled(obj)
    if t in (list, tuple):
        return (t.__name__, tuple(_normalize(o, depth + 1) for o in obj))
    if t is dict:
        return ("dict", tuple(sorted((repr(k), _normalize(v, depth + 1)) for k, v in obj.items())))
    if t in (set, frozenset):
        return (t.__name__, tuple(sorted(repr(_normalize(o, depth + 1)) for o in obj)))
    token = getattr(obj, "_raydask_token", None)  # Futures tokenize by key
    if token is not None:
        return ("future", token)
    dasks = _dask_normalizer(t)
    if dasks is not None:  # a normalize_token registration for this type (dask is imported)
        return ("dask", _normalize(dasks(obj), depth + 1))
    method = getattr(obj, "__dask_tokenize__", None)
    if method is not None and not isinstance(obj, type):  # Dask's protocol, dask or not
        return ("dask", _normalize(method(), depth + 1))
    if callable(obj) and hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
        # Functions: identity within this process is what makes pure calls dedup.
        return ("callable", obj.__module__, obj.__qualname__, id(obj))
    nbytes = getattr(obj, "nbytes", None)
    if nbytes is not None and hasattr(obj, "tobytes"):  # numpy and friends
        return ("array", str(getattr(obj, "dtype", "")), str(getattr(obj, "shape", "")),
                _digest(obj))
    return _pickled(obj)


def _dask_normalizer(t):
    """Dask's ``normalize_token`` registered for type ``t``, or None.

    Only when this process has imported dask already (a registration needs
    dask, so none exists otherwise): keys never import it.  Dask's fallback for
    any object (``normalize_object``) is not used; raydask's own rules below
    do that job, ``__dask_tokenize__`` included.
    """
    module = sys.modules.get("dask.tokenize")
    if module is None:
        return None
    dispatch = getattr(module, "normalize_token", None)
    try:
        found = dispatch.dispatch(t)
    except Exception:  # noqa: BLE001 - no registration, or a lazy one that failed to load
        return None
    if found is getattr(module, "normalize_object", None):
        return None
    return found


def _digest(obj) -> str:
    """Hash an array's bytes without copying them where possible.

    sha1 over a memoryview took 46 ms for 100 MB here, md5 over ``tobytes()``
    156 ms (sha1 has CPU instructions on most machines; md5 has none).
    """
    try:
        data = memoryview(obj).cast("B")  # C-contiguous buffers only
    except (TypeError, ValueError):
        data = obj.tobytes()
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


_tokenizing = threading.local()


def tokenizing() -> bool:
    """True while :func:`tokenize` pickles an object (a Future then pickles as its key)."""
    return getattr(_tokenizing, "active", False)


def _pickled(obj):
    _tokenizing.active = True
    try:
        return ("pickle", hashlib.md5(cloudpickle.dumps(obj, protocol=5)).hexdigest())
    except Exception:
        return ("unpicklable", uuid.uuid4().hex)  # never equal: no false dedup
    finally:
        _tokenizing.active = False


def tokenize(*args, **kwargs) -> str:
    """Return a 32-hex-digit deterministic token for ``args`` and ``kwargs``."""
    payload = repr(_normalize((args, kwargs) if kwargs else args)).encode()
    return hashlib.md5(payload, usedforsecurity=False).hexdigest()


def funcname(func) -> str:
    """The name Dask uses as a key prefix for ``func`` (``lambda`` for lambdas)."""
    if isinstance(func, functools.partial):
        return funcname(func.func)
    if isinstance(func, methodcaller):
        return func.method[:50]
    try:
        name = func.__name__
    except AttributeError:
        return str(func)[:50]
    return "lambda" if name == "<lambda>" else name[:50]


def typename(typ) -> str:
    """``int`` for builtins, ``module.Qualname`` otherwise (as ``dask.utils.typename``)."""
    if not isinstance(typ, type):
        typ = type(typ)
    if not typ.__module__ or typ.__module__ == "builtins":
        return typ.__qualname__
    return f"{typ.__module__}.{typ.__qualname__}"


def validate_key(key) -> None:
    """Accept what Dask accepts as a key: a str, int or float, or a tuple of keys.

    Raises:
        TypeError: naming the key, as ``dask.core.validate_key`` does.
    """
    typ = type(key)
    if typ in (str, int, float):
        return
    if typ is tuple:
        for index, part in enumerate(key):
            try:
                validate_key(part)
            except TypeError as e:
                raise TypeError(f"Composite key contains unexpected key type at {index=} ({key=!r})") from e
        return
    raise TypeError(f"Unexpected key type {typ} ({key=!r})")


_HEX8 = re.compile("^[0-9a-f]{8}$")


@functools.lru_cache(maxsize=100_000)
def key_split(key) -> str:
    """The prefix of a key: ``'inc'`` for ``'inc-ab12...'`` (as ``dask.utils.key_split``)."""
    if type(key) is bytes:
        key = key.decode()
    if type(key) is tuple:
        return key_split(key[0])
    try:
        words = key.split("-")
        if not words[0][0].isalpha():
            result = words[0].split(",")[0].strip("_'()\"")
        else:
            result = words[0]
        for word in words[1:]:
            if word.isalpha() and not (len(word) == 8 and _HEX8.match(word)):
                result += "-" + word
            else:
                break
        if len(result) == 32 and re.match(r"[a-f0-9]{32}", result):
            return "data"
        if result and result[0] == "<":
            result = result.strip("<>").split()[0].split(".")[-1]
        return result
    except Exception:
        return "Other"


def format_bytes(n: int) -> str:
    """``'6.78 GiB'``: bytes as text, as ``dask.utils.format_bytes``."""
    for prefix, k in (("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("ki", 2**10)):
        if n >= k * 0.9:
            return f"{n / k:.2f} {prefix}B"
    return f"{n} B"


def format_time(n: float) -> str:
    """``'1.70 s'``, ``'20m 34s'``: as ``dask.utils.format_time`` for progress bars."""
    if n > 24 * 60 * 60 * 2:
        d = int(n / 3600 / 24)
        return f"{d}d {int((n - d * 3600 * 24) / 3600)}hr"
    if n > 60 * 60 * 2:
        h = int(n / 3600)
        return f"{h}hr {int((n - h * 3600) / 60)}m"
    if n > 60 * 10:
        m = int(n / 60)
        return f"{m}m {int(n - m * 60)}s"
    if n >= 1:
        return f"{n:.2f} s"
    if n >= 1e-3:
        return f"{n * 1e3:.2f} ms"
    return f"{n * 1e6:.2f} us"


#: The longest duration accepted (about 31 years): Ray's ``ray.get`` overflows past ~9e15 s,
#: and a longer wait is what ``None`` means.
MAX_SECONDS = 1e9

_UNITS = {"": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1, "ms": 1e-3, "millisecond": 1e-3,
          "milliseconds": 1e-3, "us": 1e-6, "microsecond": 1e-6, "microseconds": 1e-6, "m": 60,
          "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600,
          "hours": 3600, "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800,
          "weeks": 604800}


def parse_timedelta(value, name="timeout"):
    """Seconds (a float) from ``10``, ``"10s"``, ``"500ms"``, ``"2 minutes"``, a ``timedelta``, or ``None``.

    Raises:
        TypeError: if ``value`` is not a number, a string, a ``timedelta`` or None.
        ValueError: if it is negative, NaN, infinite, longer than ``MAX_SECONDS``,
            or a string that is not a duration.

    Differences from dask.distributed:
        Dask raises ``KeyError`` for an unknown unit and a ``ValueError`` about
        ``'1-1'`` for ``-1``; this raises ``ValueError`` naming ``name`` and the value.
    """
    if value is None:
        return None
    t = type(value)
    if t is str:
        seconds = _parsed.get(value)
        if seconds is not None:  # "100 ms" on every submit: parse each text once
            return seconds
    elif (t is float or t is int) and 0 <= value <= MAX_SECONDS:  # NaN fails the comparison
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)) and not hasattr(value, "total_seconds"):
        raise TypeError(f"{name} must be a number of seconds or a string like '10s', got {value!r}")
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([-+]?)\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*", value)
        unit = _UNITS.get(m.group(3).lower()) if m else None
        if unit is None:
            raise ValueError(f"could not parse {name} {value!r} as a duration; use seconds or a string like '10s'")
        seconds = float(m.group(2)) * unit * (-1 if m.group(1) == "-" else 1)
    else:
        try:
            seconds = float(value.total_seconds() if hasattr(value, "total_seconds") else value)
        except (TypeError, ValueError, OverflowError):
            raise TypeError(f"{name} must be a number of seconds or a string like '10s', got {value!r}") from None
    if math.isnan(seconds):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{name} {value!r} is too long (at most {MAX_SECONDS:g} s); use None to wait without a limit")
    if t is str and len(_parsed) < 1024:
        _parsed[value] = seconds
    return seconds


_parsed: dict = {}  # duration text -> seconds, for texts that parsed
