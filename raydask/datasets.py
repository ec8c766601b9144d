"""Published datasets: named data shared by every client of a Ray cluster.

Data flow::

    publish_dataset(x=fut)                       get_dataset("x") (any client, any task)
        │ structure pickled, futures → slots          ▲ futures rebuilt around the store's refs
        ▼                                              │
    DatasetStore actor ("raydask-datasets", namespace "raydask", detached)
        │ for each future's ref: _own(ref), a task the store submits,
        ▼ so the store owns its output
    the copy lives on the node where the data was (Ray runs _own where its input is)

Ray objects die with their owner, the process that made them: a future's data
dies with the client that computed it.  Dask's scheduler keeps published keys
alive after their client left, so the store takes ownership: the copy is made
by a task on the cluster, never routed through the client or the store's own
process, and lives until the name is unpublished (or the cluster stops).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, MutableMapping

import ray
import ray.cloudpickle
import ray.exceptions

from .errors import unwrap
from .future import Future, FutureState
from .structure import KEEP, is_dask_collection, walk

__all__ = ["Datasets", "NAMESPACE", "STORE_NAME", "get", "list_names", "publish", "unpublish"]

NAMESPACE = "raydask"
STORE_NAME = "raydask-datasets"

#: ``get_dataset``'s "no default": a KeyError for an unknown name.
no_default = "__no_default__"


class _Slot:
    """Where the i-th published future was, in a dataset's pickled structure."""

    __slots__ = ("i",)

    def __init__(self, i):
        self.i = i

    def __reduce__(self):
        return _Slot, (self.i,)


class _Persisted:
    """A persisted Dask collection in a dataset: how to rebuild it around its futures."""

    __slots__ = ("rebuild", "state", "graph")

    def __init__(self, rebuild, state, graph):
        self.rebuild, self.state, self.graph = rebuild, state, graph

    def __reduce__(self):
        return _Persisted, (self.rebuild, self.state, self.graph)


def _persisted(x, visit):
    """``x`` as a :class:`_Persisted` whose graph holds slots, or None if it is no
    persisted collection (``client.persist``'s result: a graph of futures)."""
    if not is_dask_collection(x):
        return None
    graph = dict(x.__dask_graph__())
    if not graph or not all(isinstance(v, Future) for v in graph.values()):
        return None
    rebuild, state = x.__dask_postpersist__()
    return _Persisted(rebuild, state, walk(graph, visit))


def _own(value):
    """Identity; run by the store, so the store owns its output (a copy of ``value``)."""
    return value


class DatasetStore:
    """The named actor holding every published dataset of the cluster.

    An entry is ``(pickled structure, keys, refs)``: the structure with slots
    where futures were, their keys, and refs this actor owns.  Threaded, so a
    publish that waits for its futures does not hold up ``get`` or ``list``.
    """

    def __init__(self):
        self._entries: dict = {}
        self._pending: set = set()
        self._lock = threading.Lock()
        self._own = ray.remote(num_cpus=0)(_own)

    def put(self, entries, override):
        """Store ``[(name, payload, keys, [refs])]``; KeyError for a taken name unless ``override``.

        Returns once the store's copies exist, so the publisher may leave.
        """
        with self._lock:
            for name, *_ in entries:
                if (name in self._entries or name in self._pending) and not override:
                    raise KeyError(f"Dataset {name} already exists")
            self._pending.update(name for name, *_ in entries)
        try:
            owned = [(name, payload, keys, [self._own.remote(r) for r in refs])
                     for name, payload, keys, refs in entries]
            copies = [r for *_, refs in owned for r in refs]
            if copies:  # errors stay in the refs: a failed future is published as failed
                ray.wait(copies, num_returns=len(copies), fetch_local=False)
            with self._lock:
                for name, payload, keys, refs in owned:
                    self._entries[name] = (payload, keys, refs)
        finally:
            with self._lock:
                self._pending.difference_update(name for name, *_ in entries)

    def get(self, names):
        with self._lock:
            return [self._entries.get(name) for name in names]

    def delete(self, names):
        with self._lock:
            for name in names:
                self._entries.pop(name, None)

    def list(self):
        with self._lock:
            return sorted(self._entries, key=str)


_store_class = None
_store_handles: dict = {}


def store():
    """The cluster's :class:`DatasetStore`, started by the first client that needs it."""
    global _store_class
    context = ray.get_runtime_context()
    # job ids restart at 01000000 on every cluster: the GCS address and this node tell them apart
    job = (context.gcs_address, context.get_node_id(), context.get_job_id())
    handle = _store_handles.get(job)
    if handle is None:
        if _store_class is None:
            _store_class = ray.remote(num_cpus=0, max_concurrency=16)(DatasetStore)
        handle = _store_class.options(name=STORE_NAME, namespace=NAMESPACE, lifetime="detached",
                                      get_if_exists=True).remote()
        _store_handles.clear()  # a handle of an earlier ray.init is of no use
        _store_handles[job] = handle
    return handle


def _ask(method, *args):
    """Call the store and wait; its exceptions (``KeyError``) are raised as they are."""
    try:
        return ray.get(getattr(store(), method).remote(*args))
    except ray.exceptions.RayError as err:
        raise unwrap(err) from None


def _pack(data):
    """``(pickled structure, keys, refs)`` of one dataset."""
    keys, refs, index = [], [], {}

    def visit(x):
        if isinstance(x, Future):
            st = x._state
            i = index.get(st.key)
            if i is None:
                if st.ref is None:  # held by the priority gate: publish its Ray task
                    st.wait_dispatched()
                i = index[st.key] = len(keys)
                keys.append(st.key)
                refs.append(st.ref)
            return _Slot(i)
        persisted = _persisted(x, visit)
        return KEEP if persisted is None else persisted

    return ray.cloudpickle.dumps(walk(data, visit)), keys, refs


def publish(client, args, name=None, override=False, **kwargs) -> None:
    """``Client.publish_dataset``: Dask's three call forms, one store call."""
    names, data = list(kwargs), list(kwargs.values())
    if name is not None:
        if not args:
            raise ValueError("If name is provided, expecting call signature like publish_dataset(df, name='ds')")
        names.append(name)
        data.append(args[0] if len(args) == 1 else args)
    elif args:
        if len(args) != 1 or not isinstance(args[0], Mapping):
            raise ValueError("If name is omitted, positional argument must be a {name: value} dict")
        names.extend(args[0])
        data.extend(args[0].values())
    if not isinstance(override, bool):
        raise TypeError(f"override must be True or False, got {override!r}")
    entries = [(n, *_pack(d)) for n, d in zip(names, data)]
    refs = [r for *_, rs in entries for r in rs]
    if refs:
        # Wait here (nothing is fetched): a still-pending ref of a second driver,
        # handed on by the store, reached _own as OwnerDiedError while that driver
        # was alive.  Seen on Ray 2.60 only when the driver had joined with
        # raydask's use_local_auth_token() (token auth switched on in the joining
        # driver; a plain ray.init(address=...) worked): resolving a pending borrowed
        # ref asks its owner over RPC, a finished small one travels inlined.
        ray.wait(refs, num_returns=len(refs), fetch_local=False)
    _ask("put", entries, override)


def get(client, name, default=no_default):
    """``Client.get_dataset``: futures of this client around the store's refs."""
    names = name if isinstance(name, list) else [name]
    found = _ask("get", names)
    outs = []
    for entry in found:
        if entry is None:
            if default is no_default:
                raise KeyError(f"Dataset '{name}' not found")
            outs.append(default)
            continue
        payload, keys, refs = entry
        futures = [_adopt(client, k, r) for k, r in zip(keys, refs)]

        def visit(x, futures=futures):
            if type(x) is _Slot:
                return futures[x.i]
            if type(x) is _Persisted:  # a persisted collection, around this client's futures
                return x.rebuild(walk(x.graph, visit), *x.state)
            return KEEP

        outs.append(walk(ray.cloudpickle.loads(payload), visit))
    return outs if isinstance(name, list) else outs[0]


def _adopt(client, key, ref):
    """A Future of ``client`` for ``key``: its own state if it holds the key, else one on ``ref``."""
    with client._lock:
        state = client._states.get(key)
        if state is None:
            state = client._states[key] = FutureState(key, ref, False)
            if client._events is not None:
                client._events.add(state)
    return Future(state, client)


def unpublish(client, name) -> None:
    """``Client.unpublish_dataset``: unknown names are ignored, as in Dask."""
    _ask("delete", name if isinstance(name, list) else [name])


def list_names(client) -> list:
    """``Client.list_datasets``: every published name, sorted as text."""
    return _ask("list")


class Datasets(MutableMapping):
    """``client.datasets``: the published datasets as a mapping (Dask's ``Datasets``)."""

    __slots__ = ("_client",)

    def __init__(self, client):
        self._client = client

    def __getitem__(self, key):
        return self._client.get_dataset(key)

    def __setitem__(self, key, value):
        self._client.publish_dataset(value, name=key)

    def __delitem__(self, key):
        return self._client.unpublish_dataset(key)

    def __iter__(self):
        yield from self._client.list_datasets()

    def __len__(self):
        return len(self._client.list_datasets())
