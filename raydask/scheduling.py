"""From a submit call to a Ray task: argument packing, task functions, options.

Ray resolves only *top-level* ObjectRef arguments (RAY-NOTES), while Dask
resolves futures nested anywhere in lists, tuples, sets, dicts and namedtuples.
:func:`pack` flattens every future into a top-level ref and leaves a
placeholder in the structure; the task rebuilds it with the resolved values.
So Ray tracks each dependency, moves its data straight to the worker that needs
it, and nothing travels through the client.

Each user callable becomes one Ray remote function (cached), which returns two
objects: the value and a small receipt ``(type, nbytes, start, stop, node, pid)``.
"""

from __future__ import annotations

import os
import sys
import time

import ray

from .errors import capture
from .keys import funcname, typename

__all__ = ["Dispatcher", "pack", "task_options"]

_ATOMS = frozenset({int, float, str, bytes, bool, complex, type(None)})
_CONTAINERS = (list, tuple, set, frozenset, dict)


class _Dep:
    """Placeholder for the i-th dependency in a packed argument structure."""

    __slots__ = ("i",)

    def __init__(self, i):
        self.i = i

    def __reduce__(self):
        return _Dep, (self.i,)


def pack(args, kwargs, future_type):
    """Split a call's arguments into ``(packed, top_level_args, dependency_states)``.

    ``packed`` is None on the fast path (no kwargs, no containers): the call's
    arguments go to Ray as they are, futures replaced by their refs.  Otherwise it
    is ``(args, kwargs)`` with placeholders, and ``top_level_args`` holds one ref
    per future found.
    """
    if not kwargs:
        for a in args:
            t = type(a)
            if t not in _ATOMS and t is not future_type and isinstance(a, _CONTAINERS):
                break
        else:
            deps = [a._state for a in args if type(a) is future_type]
            if not deps:
                return None, args, deps
            return None, [a._state.ref if type(a) is future_type else a for a in args], deps
    refs, deps, index = [], [], {}

    def walk(obj, depth):
        t = type(obj)
        if t in _ATOMS:
            return obj
        if t is future_type or isinstance(obj, future_type):
            st = obj._state
            i = index.get(id(st))
            if i is None:
                i = index[id(st)] = len(refs)
                refs.append(st.ref)
                deps.append(st)
            return _Dep(i)
        if depth > 100:
            return obj
        if isinstance(obj, dict):
            new = {k: walk(v, depth + 1) for k, v in obj.items()}
            if all(new[k] is v for k, v in obj.items()):
                return obj
            return new if t is dict else _rebuilt(t, new, obj)
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = [walk(v, depth + 1) for v in obj]
            if all(n is o for n, o in zip(items, obj)):
                return obj
            if t in (list, tuple, set, frozenset):
                return t(items)
            if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
                return t(*items)
            return _rebuilt(t, items, obj)
        return obj

    packed_args = tuple(walk(a, 0) for a in args)
    packed_kwargs = {k: walk(v, 0) for k, v in kwargs.items()}
    return (packed_args, packed_kwargs), refs, deps


def _rebuilt(t, items, original):
    try:
        return t(items)
    except Exception:  # a subclass that cannot be rebuilt from items: give the base type
        base = dict if isinstance(original, dict) else next(b for b in (list, tuple, set, frozenset) if isinstance(original, b))
        return base(items)


def _unpack(obj, values):
    t = type(obj)
    if t is _Dep:
        return values[obj.i]
    if t in _ATOMS:
        return obj
    if isinstance(obj, dict):
        new = {k: _unpack(v, values) for k, v in obj.items()}
        return new if t is dict else _rebuilt(t, new, obj)
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_unpack(v, values) for v in obj]
        if t in (list, tuple, set, frozenset):
            return t(items)
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return t(*items)
        return _rebuilt(t, items, obj)
    return obj


# -- what runs in the worker ---------------------------------------------------------
_NODE_ID = None
_PID = os.getpid()


def _node_id():
    global _NODE_ID
    if _NODE_ID is None:
        _NODE_ID = ray.get_runtime_context().get_node_id()
    return _NODE_ID


def _nbytes(value) -> int:
    n = getattr(value, "nbytes", None)
    if isinstance(n, int):
        return n
    try:
        return sys.getsizeof(value)
    except Exception:  # noqa: BLE001
        return 0


def make_task_function(func):
    """Wrap ``func`` as the Ray remote function that runs it and writes a receipt."""

    def run(packed, *args):
        start = time.time()
        try:
            if packed is None:
                result = func(*args)
            else:
                a, kw = _unpack(packed, args)
                result = func(*a, **kw)
        except BaseException as exc:
            raise capture(exc)
        return result, (typename(type(result)), _nbytes(result), start, time.time(), _node_id(), os.getpid())

    name = funcname(func)
    run.__name__ = run.__qualname__ = name
    run.__module__ = "raydask.task"
    return ray.remote(run)


def task_options(resources=None, retries=None, strategy=None) -> dict:
    """Ray ``.options()`` for Dask's ``resources=`` and ``retries=``.

    ``{"CPU": 2, "GPU": 1, "memory": 1e9, "FOO": 1}`` maps to ``num_cpus``,
    ``num_gpus``, ``memory`` and custom resources.
    """
    opts = {}
    if resources:
        if not isinstance(resources, dict):
            raise TypeError(f"resources must be a dict like {{'GPU': 1}}, got {resources!r}")
        custom = {}
        for name, amount in resources.items():
            if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount < 0:
                raise ValueError(f"resource amounts must be non-negative numbers, got {name!r}: {amount!r}")
            if name == "CPU":
                opts["num_cpus"] = amount
            elif name == "GPU":
                opts["num_gpus"] = amount
            elif name in ("memory", "MEMORY"):
                opts["memory"] = int(amount)
            else:
                custom[name] = amount
        if custom:
            opts["resources"] = custom
    if retries is not None:
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        opts["max_retries"] = retries
        opts["retry_exceptions"] = retries > 0
    if strategy is not None:
        opts["scheduling_strategy"] = strategy
    return opts


class Dispatcher:
    """Sends task specs to Ray: one remote function per callable, refs back."""

    def __init__(self):
        self._functions: dict = {}

    def remote_function(self, func):
        try:
            return self._functions[func]
        except KeyError:
            rf = self._functions[func] = make_task_function(func)
            return rf
        except TypeError:  # unhashable callable
            entry = self._functions.get(id(func))
            if entry is None or entry[0] is not func:
                entry = self._functions[id(func)] = (func, make_task_function(func))
            return entry[1]

    def submit(self, func, key, packed, call_args, options=None):
        """Start the task; return ``(value_ref, receipt_ref)``."""
        rf = self.remote_function(func)
        if options:
            return rf.options(num_returns=2, name=key, **options).remote(packed, *call_args)
        return rf.options(num_returns=2, name=key).remote(packed, *call_args)

    def clear(self):
        self._functions.clear()
