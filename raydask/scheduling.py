"""From a submit call to a Ray task: argument packing, task functions, options.

Ray resolves only *top-level* ObjectRef arguments (RAY-NOTES), while Dask
resolves futures nested anywhere in lists, tuples, sets, dicts and namedtuples.
:func:`pack` flattens every future into a top-level ref and leaves a
placeholder in the structure; the task rebuilds it with the resolved values.
So Ray tracks each dependency, moves its data straight to the worker that needs
it, and nothing travels through the client.

Each user callable becomes a Ray remote function (cached; a second one for
calls with kwargs or containers), which returns one object, the value, and
posts a small receipt ``(type, nbytes, start, stop, node, pid)`` to the
client's sink (:mod:`raydask.receipts`).
"""

from __future__ import annotations

import os
import sys
import time
from types import CoroutineType

import ray

from . import raycompat
from .calling import run_coroutine
from .arguments import _resources, _retries
from .cluster import select_workers, wanted_workers
from .context import get_worker
from .direct import DirectSubmitter
from .errors import capture
from .future import Future, FutureState, Status, notify
from .keys import format_bytes, funcname, typename
from .plugins import prepare, task_hooks
from .receipts import post
from .sizeof import sizeof
from .structure import ATOMS as _ATOMS
from .structure import CONTAINERS as _CONTAINERS
from .structure import KEEP, walk

__all__ = ["Dispatcher", "TaskSpec", "node_has", "node_resources", "pack", "placement_options", "task_options"]



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

    def visit(obj):
        if type(obj) is future_type or isinstance(obj, future_type):
            st = obj._state
            i = index.get(id(st))
            if i is None:
                i = index[id(st)] = len(refs)
                refs.append(st.ref)
                deps.append(st)
            return _Dep(i)
        return KEEP

    packed_args = tuple(walk(a, visit) for a in args)
    packed_kwargs = {k: walk(v, visit) for k, v in kwargs.items()}
    return (packed_args, packed_kwargs), refs, deps


def call_args(packed, args, deps) -> list:
    """The top-level arguments of a packed call, with its dependencies' refs as they are now.

    A task held by the priority gate is packed at submit, when a dependency that
    is held too has no ref yet; this fills the refs in when it is dispatched.
    """
    if packed is None:
        return [a._state.ref if type(a) is Future else a for a in args]
    return [d.ref for d in deps]


class TaskSpec:
    """What a task was submitted as, kept for ``retry`` and ``recreate_*_locally``.

    ``args`` are the call's positional arguments (unpacked calls; a packed one
    keeps :func:`pack`'s structure instead), each Future replaced by its state,
    whose ref is read when the task is sent again (a dependency that was retried
    has a new ref); ``deps`` the dependencies' states, in order.  The client
    keeps it while the task is pending or failed
    (:class:`raydask.future.FutureState` drops it once the task finished, was
    cancelled or released), as Dask's scheduler keeps a task's ``run_spec``.
    """

    __slots__ = ("func", "packed", "args", "deps", "options", "name")

    def __init__(self, func, packed, args, deps, options, name):
        """``deps``: a tuple (the state's own ``dep_states`` is passed: one tuple for both)."""
        self.func, self.packed, self.deps, self.options, self.name = func, packed, deps, options, name
        if packed is None:
            self.args = tuple(a._state if type(a) is Future else a for a in args) if deps else tuple(args)
        else:
            self.args = ()

    def top_level(self) -> list:
        """The Ray task's arguments, with the dependencies' refs as they are now."""
        if self.packed is not None:
            return [d.ref for d in self.deps]
        if not self.deps:
            return list(self.args)
        return [a.ref if type(a) is FutureState else a for a in self.args]

    def local_call(self, values):
        """``(args, kwargs)`` of the call with ``values`` (the dependencies' results) in place."""
        if self.packed is not None:
            args, kwargs = _unpack(self.packed, values)
            return list(args), kwargs
        by_state = {id(d): v for d, v in zip(self.deps, values)}
        return [by_state[id(a)] if type(a) is FutureState else a for a in self.args], {}


def _unpack(obj, values):
    return walk(obj, lambda x: values[x.i] if type(x) is _Dep else KEEP)


# -- what runs in the worker ---------------------------------------------------------
_NODE_ID = None
_PID = os.getpid()


def _node_id():
    global _NODE_ID
    if _NODE_ID is None:
        _NODE_ID = ray.get_runtime_context().get_node_id()
    return _NODE_ID


#: Dask's ``distributed.admin.large-graph-warning-threshold`` ("10MB"): a call whose
#: arguments are larger than this warns at submit.
LARGE_GRAPH_BYTES = 10_000_000
_NUMBERS = frozenset({int, float, bool, complex, type(None)})


def arguments_nbytes(args, kwargs, future_type, stop=LARGE_GRAPH_BYTES) -> int:
    """About how many bytes a call's arguments pickle to; counting ends past ``stop``.

    Cheap on purpose (no pickling; it runs on every submit): numbers count 8,
    text and bytes their length, arrays their ``nbytes``, containers their
    items, futures nothing (their data never passes through the client), any
    other object ``sys.getsizeof`` (pandas counts its data there).
    """
    total = 0
    for part in (args, kwargs.values()) if kwargs else (args,):
        for a in part:
            t = type(a)
            if t in _NUMBERS or t is future_type:
                continue
            total += _nbytes_in(a, future_type, stop - total, 0)
            if total > stop:
                return total
    return total


def _nbytes_in(obj, future_type, stop, depth) -> int:
    t = type(obj)
    if t in _NUMBERS:
        return 8
    if t is str or t is bytes or t is bytearray:
        return len(obj)
    if t is future_type or isinstance(obj, future_type):
        return 0
    if isinstance(obj, _CONTAINERS):
        if depth > 100:
            return 0
        total = 0
        for item in (obj.values() if isinstance(obj, dict) else obj):
            total += _nbytes_in(item, future_type, stop - total, depth + 1)
            if total > stop:
                break
        return total
    n = getattr(obj, "nbytes", None)
    if type(n) is int:
        return n
    try:
        return sys.getsizeof(obj)
    except Exception:  # noqa: BLE001
        return 0


def warn_if_large(nbytes, stacklevel) -> None:
    """Dask's warning for a graph past :data:`LARGE_GRAPH_BYTES`, its class and text."""
    if nbytes <= LARGE_GRAPH_BYTES:
        return
    import warnings

    warnings.warn(
        f"Sending large graph of size {format_bytes(nbytes)}.\n"
        "This may cause some slowdown.\n"
        "Consider loading the data with Dask directly\n or using futures or "
        "delayed objects to embed the data into the graph without repetition.\n"
        "See also https://docs.dask.org/en/stable/best-practices.html#load-data-with-dask for more information.",
        UserWarning, stacklevel=stacklevel + 1)


def _runner(func, plugins=None, sink=None):
    """``run(packed, args)``: call ``func``, post its receipt to ``sink``, return its value.

    ``plugins`` is the client's plugin handle (:mod:`raydask.plugins`), None
    while it registered none: then nothing about plugins runs.  ``sink`` is the
    client's receipt sink (:mod:`raydask.receipts`), None for a client that
    collects no records (one made inside a task).
    """

    def run(packed, args):
        hooks = () if plugins is None else prepare(plugins)
        if hooks:
            key = ray.get_runtime_context().get_task_name()
            task_hooks(hooks, key, "ready", "executing")
        start = time.time()
        try:
            if packed is None:
                result = func(*args)
            else:
                a, kw = _unpack(packed, args)
                result = func(*a, **kw)
            if type(result) is CoroutineType:  # an ``async def`` function: Dask awaits it
                result = run_coroutine(result)
        except BaseException as exc:
            if hooks:
                task_hooks(hooks, key, "executing", "error")
            err = capture(exc)
            try:  # where and when it failed, for the dashboard's task stream (raydask.events)
                err._raydask_receipt = ("erred", 0, start, time.time(), _node_id(), os.getpid())
            except Exception:  # noqa: BLE001 - an exception type that refuses attributes
                pass
            raise err
        if hooks:
            task_hooks(hooks, key, "executing", "memory")
        if sink is not None:
            post(sink, typename(type(result)), sizeof(result), start, time.time())
        return result

    return run


def _as_ray_task(run, func):
    """Name ``run`` after ``func`` and make it a Ray remote function."""
    run.__name__ = run.__qualname__ = funcname(func)
    run.__module__ = "raydask.task"
    return ray.remote(run)


def make_task_function(func, packed=False, plugins=None, sink=None):
    """Wrap ``func`` as the Ray remote function that runs it and posts its receipt.

    ``plugins``: the plugin handle the task sets its process up to first;
    ``sink``: where its receipt goes (see :func:`_runner`).

    With ``packed=False`` the task takes ``func``'s positional arguments as they
    are; with ``packed=True`` its first argument is :func:`pack`'s structure and
    the rest are the refs it points to.  Two functions, because every argument
    costs: an extra ``None`` per call took a fifth of a submit (10 µs, measured).
    """
    run = _runner(func, plugins, sink)
    if packed:
        return _as_ray_task(lambda packed, *args: run(packed, args), func)
    return _as_ray_task(lambda *args: run(None, args), func)


def task_options(resources=None, retries=None, placement=None) -> dict:
    """Ray ``.options()`` for Dask's ``resources=``, ``retries=`` and placement.

    ``{"CPU": 2, "GPU": 1, "memory": 1e9, "FOO": 1}`` maps to ``num_cpus``,
    ``num_gpus``, ``memory`` and custom resources.  ``retries=n`` re-runs a task
    whose code raised, up to ``n`` times, and also bounds Ray's re-runs after a
    worker process or node died (Ray's default for those is 3, Dask's
    ``allowed-failures`` is 3 too).  ``placement`` is what :func:`placement_options`
    returns.
    """
    opts = {}
    resources, retries = _resources(resources), _retries(retries)  # raydask.arguments' one rule
    if resources:
        custom = {}
        for name, amount in resources.items():
            if name == "CPU":
                opts["num_cpus"] = amount
            elif name == "GPU":
                opts["num_gpus"] = amount
            elif name == "memory":  # Ray's memory; "MEMORY" (Dask's docs' example) is a custom resource
                opts["memory"] = int(amount)
            else:
                custom[name] = amount
        if custom:
            opts["resources"] = custom
    if retries is not None:
        opts["max_retries"] = retries
        opts["retry_exceptions"] = retries > 0
    if placement:
        opts.update(placement)
    return opts


def node_resources(worker: dict) -> dict:
    """A worker row's resources in Dask's spelling (``CPU``, ``memory``, ``GPU``, custom)."""
    return {"CPU": worker["nthreads"], "memory": worker["memory_limit"], **worker["resources"]}


def node_has(worker: dict, resources: dict) -> bool:
    """Whether the node could ever run a task asking for ``resources`` (its totals suffice)."""
    have = node_resources(worker)
    return all(have.get(k, 0) >= v for k, v in resources.items())


def placement_options(workers, allow_other_workers, table) -> dict:
    """Ray options keeping a task on ``workers``: addresses, names, node ids or hosts.

    Several workers become a label selector on Ray's ``ray.io/node-id`` node
    label; ``allow_other_workers=True`` adds a fallback to any node (Ray's soft
    constraint).

    Raises:
        TypeError: if ``workers`` is not a worker or a collection of them.
        ValueError: if none of ``workers`` is a known worker.
    """
    if isinstance(workers, (str, int)):
        workers = [workers]
    if not isinstance(workers, (list, tuple, set, frozenset)):
        raise TypeError(f"workers must be a list or set of workers or None, got {workers!r}")
    matches = {}
    for w in table:
        for label in {w["address"], str(w["name"]), w["node_id"], w["host"]}:
            matches.setdefault(label, []).append(w["node_id"])
    chosen = []
    for w in workers:
        for node_id in matches.get(str(w), ()):
            if node_id not in chosen:
                chosen.append(node_id)
    if not chosen:
        raise ValueError(
            f"no worker matches {sorted(map(str, workers))!r}; known workers: "
            f"{sorted(w['address'] for w in table)!r} (names {sorted(str(w['name']) for w in table)!r})"
        )
    opts = {"label_selector": {"ray.io/node-id": f"in({','.join(chosen)})"}}
    if allow_other_workers:
        opts["fallback_strategy"] = [{"label_selector": {}}]
    return opts


class Dispatcher:
    """Sends task specs to Ray: one remote function per callable, refs back."""

    def __init__(self):
        self._functions: dict = {}
        self._packed: dict = {}
        self._direct: dict = {}  # remote function -> DirectSubmitter, or False where it does not apply
        self.plugins = None  # the plugin handle every task function closes over (raydask.plugins)
        self.sink = None  # the receipt sink every task function closes over (raydask.receipts)

    def set_plugins(self, handle) -> None:
        """Make the task functions anew around plugin ``handle`` (a newer one than before).

        The handle is a constant of each remote function, so a task carries it
        at no cost per call; a change of plugins makes (and exports) each
        function once more.
        """
        old = self.plugins
        if handle is None or (old is not None and old[0] == handle[0] and old[1] >= handle[1]):
            return
        self.plugins = handle
        self.clear()

    def remote_function(self, func, packed=False):
        cache = self._packed if packed else self._functions
        try:
            return cache[func]
        except KeyError:
            rf = cache[func] = make_task_function(func, packed, self.plugins, self.sink)
            return rf
        except TypeError:  # unhashable callable
            entry = cache.get(id(func))
            if entry is None or entry[0] is not func:
                entry = cache[id(func)] = (func, make_task_function(func, packed, self.plugins, self.sink))
            return entry[1]

    def submit(self, func, packed, call_args, options=None, name=None):
        """Start the task; return its value's ref.

        ``name`` is the Ray task's name; None gives Ray's default, the function's
        name.  Not the key: Ray counts tasks per name in its metrics, and a new
        name per task made those grow with every task and stalled the cluster
        for 100-200 ms every few seconds (measured; none with repeated names).
        """
        if packed is None:
            rf, args = self.remote_function(func), call_args
        else:
            rf, args = self.remote_function(func, packed=True), (packed, *call_args)
        if options:
            return rf.options(name=name, **options).remote(*args)
        direct = self._direct.get(rf)
        if direct:
            try:
                refs = direct.submit(args, name or "")
            except TypeError:
                # An argument Ray cannot serialize (then _remote raises it too, for the
                # user), or not the submit_task this was written for: then never again.
                refs = [raycompat.submit_remote(rf, args, 1, name=name)]
                self._direct[rf] = False
            if refs is not None:
                return refs[0]
        # ``_remote`` is what ``.remote()`` and ``.options()`` call, without their
        # per-call wrapper class (15-30 % of a submit, measured in benchmarks/).
        ref = raycompat.submit_remote(rf, args, 1, name=name)
        if direct is None:  # exported now: from the next call on, go direct (raydask.direct)
            self._direct[rf] = DirectSubmitter.create(rf, 1) or False
        return ref

    def clear(self):
        self._functions.clear()
        self._packed.clear()
        self._direct.clear()


# -- whole-cluster helpers for the client ------------------------------------------
def refresh(states, num_returns=None, timeout=0) -> int:
    """Settle the states whose tasks have ended, with a few local Ray calls in all; return how many.

    With ``timeout`` (seconds, None for no limit), first wait in Ray (the GIL is
    released there) until ``num_returns`` of them ended (default: all).  One
    ``ray.wait`` over many refs is how ``wait`` and ``as_completed`` learn
    about completions: a completion callback per task would run on Ray's I/O
    thread and hold it up behind the GIL (measured: 10 % fewer tasks/s).
    """
    by_ref = {st.ref: st for st in states if st.status is Status.PENDING and st.ref is not None}
    return harvest(by_ref, num_returns, timeout)


def harvest(by_ref: dict, num_returns=None, timeout=0) -> int:
    """:func:`refresh` for a ready-made ``{value ref: state}`` of pending states.

    Nothing is fetched: ``ray.wait(fetch_local=False)`` says which ended, and
    :func:`raycompat.outcomes` which of those failed.
    """
    if not by_ref:
        return 0
    n = len(by_ref) if num_returns is None else max(1, min(num_returns, len(by_ref)))
    ready, _ = ray.wait(list(by_ref), num_returns=n, timeout=timeout, fetch_local=False)
    if not ready:
        return 0
    for ref, error in zip(ready, raycompat.outcomes(ready)):
        st = by_ref[ref]
        notify(st.settle_from_outcome(error), st)
    return len(ready)


def _call_on_node(function, args, kwargs):
    import inspect

    try:
        wants_worker = "dask_worker" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        wants_worker = False
    if wants_worker:
        kwargs = dict(kwargs, dask_worker=get_worker())
    try:
        return function(*args, **kwargs)
    except BaseException as exc:
        raise capture(exc)


_call_on_node_remote = None


def run_on_nodes(function, args, kwargs, workers, table) -> dict:
    """Start ``function`` once on each chosen node; ``{address: ref}`` (``{}`` for ``workers=[]``).

    Raises:
        ValueError: if ``workers`` names workers and none of them is known.
    """
    global _call_on_node_remote
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if workers is not None:
        wanted = wanted_workers(workers)
        table = select_workers(table, workers)
        if not table and wanted:  # ``workers=[]``: nowhere, as Dask's ``run`` ({})
            raise ValueError(f"no worker matches {sorted(wanted)!r}")
    if _call_on_node_remote is None:
        _call_on_node_remote = ray.remote(_call_on_node)
    refs = {}
    for w in table:
        refs[w["address"]] = _call_on_node_remote.options(
            num_cpus=0, max_retries=0, name=f"run-{funcname(function)}",
            scheduling_strategy=NodeAffinitySchedulingStrategy(w["node_id"], soft=False),
        ).remote(function, args, kwargs)
    return refs
