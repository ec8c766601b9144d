"""Dask collections through the client: a Dask graph becomes raydask tasks, one per key.

``client.compute``, ``client.persist``, ``client.get`` and — while the client is
Dask's default scheduler — ``dask.compute``/``collection.compute()`` all end in
:func:`submit_graph`::

    collection ──► Dask expression ──► optimize ──► graph {key: Task | DataNode | Alias}
        ──► in dependency order, per key: client._submit(run_node, key, node, deps...)
        ──► a Future per key (Dask's key, e.g. ('sum-…', 0, 1)), dependencies as
            top-level ObjectRefs: Ray moves intermediate data worker to worker

Every graph task is an ordinary raydask task (its record, the dashboard, the
priority gate, ``retries=``/``resources=``/``workers=`` all apply); a key the
client already holds — a persisted chunk, a Future placed into a graph with
``delayed(f)(future)`` or ``dd.from_delayed(futures)`` — is reused, not rerun.
Dask recognises raydask futures inside graphs through its duck-typed
``__dask_future__`` protocol, so nothing here has to register with Dask.

Only this module imports dask, and only when a collection reaches the client;
``import raydask`` does not.
"""

from __future__ import annotations

from .future import Future, FutureState
from .keys import key_split
from .structure import futures_of, is_dask_collection

__all__ = ["compute", "get", "is_collection", "persist", "submit_graph", "use_as_dask_scheduler"]

EXTRA = "pip install 'raydask[dask]'"


def _require_dask():
    try:
        import dask  # noqa: F401
        import dask._task_spec  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"Dask collections need dask installed ({EXTRA})") from exc


def run_node(node, keys, *values):
    """The Ray task of one graph node: evaluate it with its dependencies' values."""
    return node(dict(zip(keys, values)))


def _toposort(graph) -> list:
    """Keys of ``graph`` with every in-graph dependency before its dependents."""
    order, done, visiting = [], set(), set()
    for root in graph:
        if root in done:
            continue
        stack = [(root, iter(graph[root].dependencies))]
        visiting.add(root)
        while stack:
            key, deps = stack[-1]
            for dep in deps:
                if dep in graph and dep not in done:
                    if dep in visiting:
                        raise ValueError(f"the graph has a cycle through {dep!r}")
                    visiting.add(dep)
                    stack.append((dep, iter(graph[dep].dependencies)))
                    break
            else:
                stack.pop()
                visiting.discard(key)
                done.add(key)
                order.append(key)
    return order


def _graph_of(dsk) -> dict:
    if hasattr(dsk, "__dask_graph__"):  # an expression or a collection
        dsk = dsk.__dask_graph__()
    return dict(dsk)


def submit_graph(client, dsk, keys, options=None, priority=None, fifo_timeout="100 ms") -> dict:
    """Submit the part of graph ``dsk`` that ``keys`` need; return ``{key: Future}`` for ``keys``.

    Raises:
        KeyError: a dependency is neither in the graph nor a key this client holds.
    """
    _require_dask()
    from dask._task_spec import Alias, DataNode, convert_legacy_graph, cull

    raw = _graph_of(dsk)
    futures: dict = {}  # key -> Future, for the graph's keys as they are submitted
    for key, value in raw.items():
        if isinstance(value, Future):  # a persisted collection's chunk
            futures[key] = value
    graph = convert_legacy_graph({k: v for k, v in raw.items() if k not in futures}, all_keys=set(raw))
    graph = cull(graph, list(k for k in keys if k not in futures))

    def dependency(dep):
        found = futures.get(dep)
        if found is None:
            with client._lock:
                state = client._states.get(dep)
            if state is None:
                raise KeyError(f"the graph needs key {dep!r}, which is neither in the graph nor held by this client")
            found = futures[dep] = Future(state, client)
        return found

    for key in _toposort(graph):
        node = graph[key]
        with client._lock:
            known = client._states.get(key)
        if known is not None:  # computed (or running) already: reuse it, as Dask does
            futures[key] = Future(known, client)
        elif isinstance(node, DataNode) and isinstance(node.value, Future):  # delayed(future)
            futures[key] = _alias(client, key, node.value, options, priority, fifo_timeout)
        elif isinstance(node, DataNode):
            futures[key] = client._scatter_one(node.value, key)
        elif isinstance(node, Alias) and node.target != key:
            futures[key] = _alias(client, key, dependency(node.target), options, priority, fifo_timeout)
        else:
            node = _futures_as_dependencies(node)
            dep_keys = list(node.dependencies)
            deps = [dependency(d) for d in dep_keys]
            # Ray's task is named after the key's prefix ('sum', 'from-pandas'): Dask's groups,
            # and few distinct names (a name per key stalls Ray's metrics; RAY-NOTES)
            state = client._submit(run_node, key, (node, dep_keys, *deps), {}, options, priority, fifo_timeout,
                                   name=key_split(key))
            futures[key] = Future(state, client)
    return {k: futures[k] if k in futures else dependency(k) for k in keys}


def _holds_future(x, depth=0) -> bool:
    from dask._task_spec import DataNode, Task

    if isinstance(x, Future):
        return True
    if depth > 50:
        return False
    if isinstance(x, DataNode):
        return isinstance(x.value, Future)
    if isinstance(x, Task):
        return any(_holds_future(a, depth + 1) for a in x.args) or any(
            _holds_future(v, depth + 1) for v in x.kwargs.values())
    if isinstance(x, (list, tuple, set, frozenset)):
        return any(_holds_future(v, depth + 1) for v in x)
    if isinstance(x, dict):
        return any(_holds_future(v, depth + 1) for v in x.values())
    return False


def _futures_as_dependencies(node):
    """``node`` with the raydask Futures among its literal arguments made dependencies.

    ``delayed(f)(future)`` and ``delayed(future)`` leave the Future itself in the
    graph (Dask's ``delayed`` turns only its own ``TaskRef`` into a dependency,
    not a duck-typed future), and Dask's optimizer may fuse it into a subgraph
    task.  Rebuilt, each Future becomes an ``Alias`` of its key — for a fused
    subgraph, one more of its input keys — so Ray passes the value as a
    top-level argument, worker to worker.
    """
    from dask._task_spec import Task, _execute_subgraph

    if not isinstance(node, Task) or not _holds_future(node):
        return node
    if node.func is _execute_subgraph and not node.kwargs:
        inner, outkey, inkeys, *deps = node.args
        found: dict = {}
        inner = {k: _lift(v, found, inner_key=k) for k, v in inner.items()}
        extra = tuple(k for k in found if k not in inkeys)
        return Task(node.key, _execute_subgraph, inner, outkey, tuple(inkeys) + extra, *deps,
                    *(_alias_node(k) for k in extra))
    return _lift(node, {})


def _alias_node(key):
    from dask._task_spec import Alias

    return Alias(key)


def _lift(x, found: dict, inner_key=None):
    """``x`` with every Future ``f`` in it replaced by ``Alias(f.key)``; ``found`` collects them."""
    from dask._task_spec import Alias, DataNode, Task

    if isinstance(x, Future):
        found[x.key] = x
        return Alias(x.key)
    if isinstance(x, DataNode) and isinstance(x.value, Future):
        found[x.value.key] = x.value
        return Alias(inner_key, target=x.value.key) if inner_key is not None else Alias(x.value.key)
    if isinstance(x, Task) and _holds_future(x):
        return Task(x.key, x.func, *[_lift(a, found) for a in x.args],
                    **{k: _lift(v, found) for k, v in x.kwargs.items()})
    if isinstance(x, (list, tuple, set, frozenset, dict)) and _holds_future(x):
        from dask._task_spec import parse_input

        for f in futures_of(x, Future):
            found[f.key] = f
        return parse_input(x)  # Dask's own containers, each Future an Alias of its key
    return x


def _alias(client, key, target: Future, options, priority, fifo_timeout) -> Future:
    """A Future of ``key`` whose value is ``target``'s: the same Ray objects when
    ``target`` is a Ray task already, else a task that passes the value on."""
    st = target._state
    if st.ref is not None:
        state = FutureState(key, st.ref, not st.scattered, (st.key,), (st,), st.priority)
        if st.scattered:  # scattered data: finished from birth, record and all
            state.record = st.record
        with client._lock:
            client._states.setdefault(key, state)
            state = client._states[key]
        return Future(state, client)
    return Future(client._submit(_identity, key, (target,), {}, options, priority, fifo_timeout), client)


def _identity(x):
    return x


def _flat(keys):
    if isinstance(keys, list):
        for k in keys:
            yield from _flat(k)
    else:
        yield keys


def _shaped(keys, found):
    if isinstance(keys, list):
        return [_shaped(k, found) for k in keys]
    return found[keys]


def get(client, dsk, keys, options=None, priority=None, fifo_timeout="100 ms"):
    """Futures for ``keys`` (a key or nested lists of keys), in the same shape."""
    flat = list(dict.fromkeys(_flat(keys)))
    return _shaped(keys, submit_graph(client, dsk, flat, options, priority, fifo_timeout))


def compute(client, collection, optimize_graph=True, options=None, priority=None, fifo_timeout="100 ms"):
    """A Future of ``collection``'s computed value (its finalize key)."""
    _require_dask()
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr
    from dask.core import flatten

    expr = FinalizeCompute(collections_to_expr([collection], optimize_graph)).optimize()
    (key,) = flatten(expr.__dask_keys__())
    return submit_graph(client, expr, [key], options, priority, fifo_timeout)[key]


def persist(client, collections: list, optimize_graph=True, options=None, priority=None,
            fifo_timeout="100 ms") -> list:
    """``collections``, each rebuilt around Futures of its keys (Dask's persist protocol)."""
    _require_dask()
    import dask

    def schedule(expr, keys, **kwargs):  # a plain function: dask.persist must not call back into us
        found = submit_graph(client, expr, list(keys), options, priority, fifo_timeout)
        return [found[k] for k in keys]

    return list(dask.persist(*collections, scheduler=schedule, optimize_graph=optimize_graph))


def use_as_dask_scheduler(client, in_task=False):
    """Make ``client.get`` Dask's scheduler; return the config change (``__exit__`` undoes it),
    or None when dask is not installed.

    Importing dask takes about a third of a second here: a driver pays it once
    (beside seconds of cluster start), but a client made inside a task (``get_client()``)
    only hooks in when the task's process has imported dask already, as one
    running a graph task has.
    """
    import importlib.util
    import sys

    if in_task and "dask" not in sys.modules:
        return None
    if importlib.util.find_spec("dask") is None:
        return None
    import dask.config

    return dask.config.set(scheduler=client.get)


def is_collection(x) -> bool:
    """A Dask collection, never a Future."""
    return not isinstance(x, Future) and is_dask_collection(x)
