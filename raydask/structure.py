"""The one walk over Dask's nested argument structures.

Dask looks for futures inside lists, tuples, sets, frozensets, dicts and their
subclasses (namedtuples included), at any depth.  A structure in which a future
was replaced is rebuilt as Dask rebuilds it for a task: a namedtuple as its own
class, from the arguments its ``__getnewargs_ex__``/``__getnewargs__`` give (so
one with a custom ``__new__`` is made as pickling would make it); any other
subclass as its base type (a list subclass as a ``list``, an ``OrderedDict`` or
``defaultdict`` as a ``dict``).  A structure without futures is left as it is.  Four things in raydask walk
those structures the same way: packing a call's arguments for Ray
(:func:`raydask.scheduling.pack`), unpacking them in the task, finding the
futures in an object (:func:`futures_of`), and putting gathered values where
the futures were (``Client.gather``).  They all use :func:`walk`.
"""

from __future__ import annotations

__all__ = ["CONTAINERS", "KEEP", "futures_of", "is_dask_collection", "is_namedtuple", "rebuild", "walk"]

ATOMS = frozenset({int, float, str, bytes, bool, complex, type(None)})
CONTAINERS = (list, tuple, set, frozenset, dict)
#: Returned by a ``visit`` function: "not a leaf of mine, look inside (or keep it)".
KEEP = object()
MAX_DEPTH = 100


def walk(obj, visit, depth=0):
    """A copy of ``obj`` with ``visit(x)`` put in place of every ``x`` it replaces.

    ``visit`` returns the replacement, or :data:`KEEP` to keep ``x`` (and look
    inside it, if it is a container).  Containers in which nothing was replaced
    are returned as they are (no copy); deeper than ``MAX_DEPTH`` nothing is
    visited.
    """
    t = type(obj)
    if t in ATOMS:
        return obj
    new = visit(obj)
    if new is not KEEP:
        return new
    if depth > MAX_DEPTH:
        return obj
    if isinstance(obj, dict):
        items = {k: walk(v, visit, depth + 1) for k, v in obj.items()}
        if all(items[k] is v for k, v in obj.items()):
            return obj
        return items
    if is_namedtuple(obj):
        return _walk_namedtuple(obj, visit, depth)
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [walk(v, visit, depth + 1) for v in obj]
        if all(n is o for n, o in zip(items, obj)):
            return obj
        return rebuild(t, items, obj)
    return obj


def is_namedtuple(obj) -> bool:
    """Whether ``obj`` has the namedtuple API (as ``dask.utils.is_namedtuple_instance``)."""
    return (isinstance(obj, tuple) and hasattr(obj, "_make") and hasattr(obj, "_asdict")
            and hasattr(obj, "_replace") and hasattr(obj, "_fields"))


def _walk_namedtuple(obj, visit, depth):
    """A namedtuple made again from its walked constructor arguments, as Dask and pickle make it."""
    if hasattr(obj, "__getnewargs_ex__"):
        args, kwargs = obj.__getnewargs_ex__()
    else:
        args, kwargs = obj.__getnewargs__(), {}
    new_args = [walk(v, visit, depth + 1) for v in args]
    new_kwargs = {k: walk(v, visit, depth + 1) for k, v in kwargs.items()}
    if all(n is o for n, o in zip(new_args, args)) and all(new_kwargs[k] is v for k, v in kwargs.items()):
        return obj
    return type(obj)(*new_args, **new_kwargs)


def rebuild(t, items, original):
    """``items`` (a list) in the container ``original`` was: its own type for the
    builtin ones, the builtin base type for a subclass (as Dask)."""
    if t in (list, tuple, set, frozenset):
        return t(items)
    return next(b for b in (list, tuple, set, frozenset) if isinstance(original, b))(items)


def futures_of(obj, future_type) -> list:
    """Every ``future_type`` inside ``obj``, each once, in the order met.

    Like Dask's ``futures_of`` it also looks inside Dask collections (anything
    with ``__dask_graph__``, duck-typed: this module never imports dask), whose
    graphs hold Futures once persisted.
    """
    collect = _Collect(future_type)
    walk(obj, collect)
    return collect.out


class _Collect:
    """:func:`futures_of`'s visitor.  An object, not a closure: a closure that passes
    itself on to ``walk`` is a reference cycle, which kept the futures (and so
    their keys) alive until the next garbage collection."""

    __slots__ = ("future_type", "out", "seen")

    def __init__(self, future_type):
        self.future_type = future_type
        self.out: list = []
        self.seen: set = set()

    def __call__(self, x):
        if isinstance(x, self.future_type):
            if id(x) not in self.seen:
                self.seen.add(id(x))
                self.out.append(x)
            return x
        if is_dask_collection(x):
            walk([getattr(v, "value", v) for v in x.__dask_graph__().values()], self)
            return x
        return KEEP


def is_dask_collection(x) -> bool:
    """Whether ``x`` is a Dask collection (duck-typed, as ``dask.is_dask_collection``)."""
    method = getattr(type(x), "__dask_graph__", None)
    if method is None or isinstance(x, type):
        return False
    try:
        return x.__dask_graph__() is not None
    except TypeError:
        return False
