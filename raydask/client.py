"""Client: dask.distributed's futures API on a Ray cluster (glue only).

``client.submit(add, x, y)`` reads as a straight line: key and dedup
(:mod:`keys`), argument packing (:mod:`scheduling`), one Ray task returning
its value (its record travels apart: :mod:`receipts`), a :class:`Future`
sharing the key's :class:`FutureState` (held in :mod:`registry`), and, when
somebody watches, a completion callback that settles it (:mod:`future`) and
records an event (:mod:`events`) for progress and the dashboard.

Each method of Dask's name checks its arguments, says how Dask's differs, and
hands over to the module that does the work: :mod:`gathering` (``gather``),
:mod:`cancelling` (``cancel``, ``retry``, ``restart``), :mod:`recreate`,
:mod:`story`, :mod:`admin` (what the cluster is and changing its workers),
:mod:`priority` (``priority=``), :mod:`graphs` (Dask collections),
:mod:`datasets`, :mod:`metadata`, :mod:`topics`, :mod:`plugins` and
:mod:`actor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import enum
import inspect
import logging
import os
import queue as pyqueue
import tempfile
import time
import uuid
import warnings
import weakref
from collections.abc import Iterator

import ray
import ray.exceptions

from . import (actor, admin, arguments, cancelling, datasets, gathering, limits, metadata, plugins, receipts, recreate,
               story, structure, topics, versions)
from . import cluster as _cluster, context as _context
from .awaiting import LoopThread, StartOnce, in_loop, run, run_call
from .cluster import LocalCluster, RayCluster, _ClusterBase, select_workers, worker_table
from .errors import (CancelledFuturesGroup, ClosedClientError, FutureCancelledError, FuturesCancelledError, fresh,
                     task_traceback, unwrap)
from .events import EventLog
from .executor import ClientExecutor
from .future import Future, FutureState, Settler, Status, _result_steps, notify, quick
from .keys import format_bytes, funcname, parse_timedelta, tokenize, typename, validate_key
from .messages import Listener
from .records import TaskRecord
from .registry import Registry
from .scheduling import (
    LARGE_GRAPH_BYTES, Dispatcher, TaskSpec, arguments_nbytes, call_args, harvest, node_has, node_resources, pack,
    placement_options, refresh, run_on_nodes, task_options, warn_if_large,
)
from .sizeof import sizeof
from .uploads import install_upload

__all__ = [
    "ClosedClientError", "Client", "ensure_default_client", "fire_and_forget", "futures_of",
    "temp_default_client",
]

logger = logging.getLogger("raydask")

#: ``fifo_timeout``'s default, "100 ms", in seconds (parsed once, not per submit).
FIFO_TIMEOUT = 0.1


class ClientStatus(enum.Enum):
    NEWLY_CREATED = "newly-created"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Client:
    """Connect to (or start) a Ray cluster and run Dask-style futures on it.

    Args:
        address: None to start a local cluster (or to reuse the Ray this process
            already joined), a ``LocalCluster``, or a Ray address: ``"auto"``,
            ``"ray://host:port"``, ``"host:port"``; ``RAY_ADDRESS`` is honoured.
        set_as_default: make this the client that ``get_client()`` and friends use.
        name: a label for this client.
        timeout: seconds to wait for the cluster to come up.
        dashboard_address: where the dashboard listens (``":8787"``); None disables it.
        dashboard_max_tasks: how many tasks the dashboard remembers; past it the
            oldest ones the client released are forgotten (raydask only).
        asynchronous: Dask's asynchronous mode: ``client = await Client(asynchronous=True)``
            or ``async with Client(asynchronous=True) as client``; inside the event
            loop the methods Dask makes awaitable return coroutines.
        **cluster_kwargs: passed to :class:`LocalCluster` (``n_workers``,
            ``threads_per_worker``, ``processes``, ``memory_limit``, ``resources``...).
    """

    def __init__(self, address=None, loop=None, timeout=None, set_as_default=True, scheduler_file=None,
                 security=None, asynchronous=False, name=None, heartbeat_interval=None,
                 serializers=None, deserializers=None, extensions=None, direct_to_workers=None,
                 connection_limit=512, dashboard_address=":8787", dashboard_max_tasks=10_000,
                 **cluster_kwargs):
        # Everything is checked before anything starts: a constructor that fails
        # leaves no Ray, no thread and no port behind.
        arguments.check_client_options(timeout=timeout, set_as_default=set_as_default, name=name,
                                       asynchronous=asynchronous)
        if address is not None and not isinstance(address, (str, _ClusterBase)):
            raise TypeError(f"address must be a Ray address string or a LocalCluster, got {address!r}")
        if dashboard_address is not None:
            from .dashboard.server import parse_address

            parse_address(dashboard_address)
        if (not isinstance(dashboard_max_tasks, int) or isinstance(dashboard_max_tasks, bool)
                or dashboard_max_tasks < 1):
            raise ValueError(f"dashboard_max_tasks must be a positive integer, got {dashboard_max_tasks!r}")
        self.status_enum = ClientStatus.NEWLY_CREATED
        self.id = f"Client-{uuid.uuid1()}"
        self.name = name
        self._asynchronous = bool(asynchronous)
        self._keys = Registry()  # the keys this client holds, counted by their Futures
        self._lock = self._keys.lock
        self._states = self._keys.states  # read by raydask.graphs and raydask.datasets
        self._dispatcher = Dispatcher()
        self._resources_ok: set = set()
        self._gate = None  # raydask.priority.Gate, once a priority was seen
        self._threads: list = []  # short-lived helper threads (force-cancel), joined on close
        self._background: set = set()  # run_on_scheduler(wait=False) tasks on an asynchronous client's loop
        self._owns_cluster = False
        self._events = None
        self._dashboard = None
        self._stream_source = None  # the task stream's reader without a dashboard (raydask.task_stream)
        self._max_tasks = dashboard_max_tasks
        self._settler = None
        self._sink = None  # the receipt sink of this process (raydask.receipts); none inside a task
        self._loop_thread = None  # runs Client.sync's coroutines for a synchronous client
        self._listener = None  # raydask.messages.Listener from the first task on (False inside a task)
        self._subscriber = None  # raydask.topics.Subscriber from the first subscribe_topic on
        self._starting = StartOnce(self._start) if asynchronous else None  # ``await client`` runs it
        self._dask_config = None  # made Dask's default scheduler (raydask.graphs), undone on close
        self.cluster = None
        self._startup = (address, cluster_kwargs, dashboard_address, dashboard_max_tasks, set_as_default)
        self._set_as_default = set_as_default  # also: ``with Client()`` makes it current in the block
        self._current_token = None
        if not self._asynchronous:
            self._start()
        # asynchronous: ``await client`` (or ``async with``) starts it, off the event loop

    def _start(self) -> None:
        """Connect (starting a cluster if asked to), then the settler and the dashboard."""
        address, cluster_kwargs, dashboard_address, dashboard_max_tasks, set_as_default = self._startup
        self._startup = None
        self.cluster = self._connect(address, cluster_kwargs)
        if isinstance(self.cluster, LocalCluster) and self.cluster.status.value == "created":
            self.cluster._boot()  # an asynchronous LocalCluster handed over before it was awaited
        self._settler = Settler(name="raydask")
        try:
            if not _context.in_task():
                self._sink = self._dispatcher.sink = receipts.join()
            if dashboard_address is not None and not _context.in_task():
                self._events = EventLog(max_tasks=dashboard_max_tasks)
                self._start_dashboard(dashboard_address)
        except BaseException:
            self._abandon()
            raise
        if _context.in_task():  # a client made in a task: its tasks get the plugins this process has
            self._dispatcher.set_plugins(plugins.current_handle())
        self.status_enum = ClientStatus.RUNNING
        _context.register(self, set_as_default)
        if set_as_default:  # Dask's collections compute here while this is the default client
            from .graphs import use_as_dask_scheduler

            self._dask_config = use_as_dask_scheduler(self, in_task=_context.in_task())

    # -- the asynchronous client: ``await Client(asynchronous=True)`` -------------------
    def __await__(self):
        return self._started().__await__()

    async def _started(self):
        if self._starting is not None and self.status_enum is not ClientStatus.CLOSED:
            await self._starting()
        return self

    async def __aenter__(self):
        client = await self._started()
        if self._set_as_default:
            self._current_token = _context.set_current(self)
        return client

    async def __aexit__(self, *exc):
        self._leave_current()
        await asyncio.to_thread(self._close)

    @classmethod
    def current(cls, allow_global=True):
        """The client of the enclosing :meth:`as_current` block, else the default client.

        Args:
            allow_global: False to accept only an ``as_current`` block's client.
        Raises:
            ValueError: if no client is running (or, ``allow_global=False``, outside
                ``as_current``), as Dask's.
        """
        client = _context.in_as_current()
        if client is not None:
            return client
        if allow_global:
            return _context.default_client()
        raise ValueError("Not running inside the `as_current` context manager")

    @contextlib.contextmanager
    def as_current(self):
        """Make this the current client inside the ``with`` block, in this thread or asyncio task only.

        ``Client.current()``, ``default_client()``, ``get_client()`` and a Future
        without a client return this client inside the block; Dask collections
        computed there run on it (Dask's ``scheduler="dask.distributed"``).  The
        previous current client is back after the block, as in Dask.
        """
        from .graphs import use_as_dask_scheduler

        with _context.as_current(self):
            config = use_as_dask_scheduler(self, in_task=_context.in_task())
            try:
                yield
            finally:
                if config is not None:
                    config.__exit__(None, None, None)

    @property
    def asynchronous(self) -> bool:
        """Whether calls return coroutines: an asynchronous client, called inside an event loop.

        As in Dask, an asynchronous client called from a thread without a
        running loop blocks and returns values.
        """
        return self._asynchronous and in_loop()

    def _use_async(self, asynchronous) -> bool:
        return self.asynchronous if asynchronous is None else bool(asynchronous) and in_loop()

    @property
    def loop(self):
        """The event loop ``Client.sync`` runs coroutines on."""
        if self._asynchronous:
            return asyncio.get_running_loop() if in_loop() else None
        return self._ensure_loop_thread().loop

    def _ensure_loop_thread(self):
        with self._lock:
            if self._loop_thread is None:
                self._loop_thread = LoopThread(name="raydask-loop")
            return self._loop_thread

    def sync(self, func, *args, asynchronous=None, callback_timeout=None, **kwargs):
        """Call ``func(*args, **kwargs)``; if it returns a coroutine, run it to its value.

        An asynchronous client inside its loop returns the coroutine to be awaited
        (as Dask's); otherwise the coroutine runs on the client's event-loop thread
        and this blocks until it is done (or ``callback_timeout`` seconds pass:
        ``TimeoutError``).
        """
        timeout = parse_timedelta(callback_timeout)
        result = func(*args, **kwargs)
        if not inspect.isawaitable(result):
            return result
        if self._use_async(asynchronous):
            return result if timeout is None else asyncio.wait_for(result, timeout)
        return self._ensure_loop_thread().run(result, timeout)

    def _connect(self, address, cluster_kwargs):
        if isinstance(address, _ClusterBase):
            return address
        address = address or None
        if address is None and ray.is_initialized():
            if cluster_kwargs and not _context.in_task():
                raise ValueError(
                    f"Ray is already running in this process; cannot start a new cluster with {cluster_kwargs!r}"
                )
            return RayCluster(owns_connection=False)
        if address is None and os.environ.get("RAY_ADDRESS"):
            address = os.environ["RAY_ADDRESS"]
        if address is not None:
            if cluster_kwargs:
                raise TypeError(f"cluster arguments {sorted(cluster_kwargs)!r} cannot be used with address={address!r}")
            return RayCluster(address)
        self._owns_cluster = True
        return LocalCluster(**cluster_kwargs)

    def _abandon(self) -> None:
        """Undo a constructor that failed half-way: stop what it started."""
        if self._dashboard is not None:
            self._dashboard.stop()
        if self._settler is not None:
            self._settler.close()
        if self._sink is not None:
            receipts.leave(self._sink)
        if self._owns_cluster or isinstance(self.cluster, RayCluster):
            self.cluster.close()
        self.status_enum = ClientStatus.CLOSED

    def _start_dashboard(self, dashboard_address):
        try:
            from .dashboard.server import DashboardServer
        except ImportError:  # the dashboard arrives in its own module
            return
        self._dashboard = DashboardServer(self, dashboard_address)
        self._dashboard.start()
        self.cluster._dashboard_link = self._dashboard.link

    # -- identity and reprs ---------------------------------------------------------
    @property
    def status(self) -> str:
        return self.status_enum.value

    @property
    def dashboard_link(self):
        return self._dashboard.link if self._dashboard is not None else None

    @property
    def scheduler_address(self) -> str:
        return self.cluster.scheduler_address

    @property
    def futures(self) -> dict:
        """Keys this client holds, mapped to their shared state."""
        return dict(self._states)

    def __repr__(self):
        if self.status_enum is not ClientStatus.RUNNING:
            return "<Client: No scheduler connected>"
        table = worker_table()
        return (
            f"<Client: {self.scheduler_address!r} processes={len(table)} "
            f"threads={sum(w['nthreads'] for w in table)}, "
            f"memory={format_bytes(sum(w['memory_limit'] for w in table))}>"
        )

    def _repr_html_(self):
        link = self.dashboard_link
        dash = f'<a href="{link}" target="_blank">{link}</a>' if link else "not running"
        kind = "Cluster object" if self._owns_cluster else "Direct"
        cluster_html = self.cluster._repr_html_() if hasattr(self.cluster, "_repr_html_") else ""
        return (
            f'<div><h3 style="margin-bottom: 0px;">Client</h3>'
            f'<p style="color: #9D9D9D; margin-bottom: 0px;">{self.id}</p>'
            f"<table><tr><td><strong>Connection method:</strong> {kind}</td>"
            f"<td><strong>Cluster type:</strong> raydask.{type(self.cluster).__name__}</td></tr>"
            f"<tr><td colspan=2><strong>Dashboard:</strong> {dash}</td></tr></table>"
            f"<details><summary>Cluster Info</summary>{cluster_html}</details></div>"
        )

    def __enter__(self):
        """``with Client() as c``: ``c`` is also the current client inside the block, as in Dask."""
        if self._set_as_default:
            self._current_token = _context.set_current(self)
        return self

    def __exit__(self, *exc):
        self._leave_current()
        self._close()

    def _leave_current(self):
        token, self._current_token = self._current_token, None
        if token is not None:
            _context.reset_current(token)

    def _check_running(self, graph=False):
        """Raise unless the client runs; ``graph``: the call sends tasks (Dask's "update-graph").

        Raises:
            ClosedClientError: for ``graph`` calls on a closing or closed client, as Dask.
            RuntimeError: otherwise.
        """
        if self.status_enum is not ClientStatus.RUNNING:
            if graph and self.status_enum in (ClientStatus.CLOSING, ClientStatus.CLOSED):
                raise ClosedClientError(f"Client is {self.status}. Can't send update-graph message.")
            raise RuntimeError(f"cannot schedule new futures: the client is {self.status}")

    # -- refcounting: a key lives while a Future of it does (raydask.registry) ----------
    def _retain(self, state):
        self._keys.retain(state)

    def _adopt(self, state):
        """This client's state of ``state.key``: its own if it holds the key, else ``state``, now held."""
        state, new = self._keys.adopt(state)
        if new and self._events is not None:
            self._events.add(state)
        return state

    def _release(self, state):
        if self._keys.release(state):
            state.drop()
            if (state.listener is not None and state.status is Status.PENDING
                    and self.status_enum is ClientStatus.RUNNING):
                # the dashboard's log still follows it: learn its end from Ray, so that the
                # log freezes its row and lets the state (with its ref, and Ray the value) go
                state.watch(self._settler)

    # -- submit and map -------------------------------------------------------------
    def submit(self, func, *args, key=None, workers=None, resources=None, retries=None, priority=None,
               fifo_timeout="100 ms", allow_other_workers=False, actor=False, actors=False, pure=True,
               **kwargs):
        """Run ``func(*args, **kwargs)`` on the cluster; return a Future at once.

        Futures among the arguments, also nested in lists, tuples, sets, dicts and
        namedtuples, become dependencies, resolved inside the cluster.  With
        ``pure=True`` (default) equal calls share one key and run once.

        Raises:
            TypeError: if ``func`` is not callable.

        Differences from dask.distributed:
            ``workers=`` naming no known worker, or (on a ``LocalCluster``)
            ``resources=`` that no worker has, raise ``ValueError`` at once; Dask
            leaves such a task pending.  ``actor=True`` makes a Ray actor (:mod:`raydask.actor`).
            ``priority=`` defaults to None (which means 0): from the first call that
            passes any priority, this client holds its tasks and hands them to Ray by
            priority as CPU slots free (:mod:`raydask.priority`); before that nothing
            extra runs.
        """
        if not callable(func):
            raise TypeError(f"First input to submit must be a callable function, got {func!r}")
        self._check_running(graph=True)
        if not (workers is None and resources is None and retries is None
                and (priority is None or type(priority) is int)
                and fifo_timeout == "100 ms" and allow_other_workers is False and actor is False
                and actors is False and (pure is True or pure is False)):  # the defaults need no checking
            checked = arguments.check_submit_options(
                key=key, workers=workers, resources=resources, retries=retries, priority=priority,
                fifo_timeout=fifo_timeout, allow_other_workers=allow_other_workers, actor=actor,
                actors=actors, pure=pure)
            fifo_timeout = checked.fifo_timeout
        if actor or actors:  # raydask.actor
            return self._submit_actor(func, args, kwargs, key, workers, resources, allow_other_workers)
        limit = limits.current_time_limit()
        named = key is not None
        if key is None:
            if pure:
                key = f"{funcname(func)}-{tokenize(func, kwargs, *args)}"
            else:
                key = f"{funcname(func)}-{uuid.uuid4()}"
        else:
            validate_key(key)
        state = self._keys.get(key)
        if state is not None:
            return Future(state, self)
        options = self._options(workers, resources, retries, allow_other_workers)
        warn_if_large(arguments_nbytes(args, kwargs, Future), stacklevel=2)
        if limit is not None:  # raydask.annotate(time_limit=...): the key stays the function's
            func = limits.Limited(func, limit)
        return Future(self._submit(func, key, args, kwargs, options, priority, fifo_timeout, named), self)

    def _submit(self, func, key, args, kwargs, options, priority, fifo_timeout="100 ms", named=False,
                name=None):
        """Submit one task under ``key``; ``named``: the user chose the key, so Ray's task gets it as
        name; else ``name`` (None: the function's name)."""
        if self._listener is None:
            self._listen()
        packed, refs, deps = pack(args, kwargs, Future)
        # the user's own key names the Ray task (get_worker().get_current_task() reads it)
        if named:
            name = key if type(key) is str else str(key)
        if deps and any(d.status is Status.CANCELLED for d in deps):
            return self._lost_dependencies(key, tuple(d.key for d in deps), priority)
        gate = self._gate
        if gate is None and priority is not None:
            gate = self._start_gate()
        deps = tuple(deps)
        if gate is None:  # the default path (no priority= seen yet) is just this
            ref = self._dispatcher.submit(func, packed, refs, options, name)
            state = FutureState(key, ref, True, None, deps, priority)  # keys read off ``deps``
        else:
            state = FutureState(key, None, True, None, deps, priority, held=True)
        state.spec = TaskSpec(func, packed, args, deps, options, name)  # for retry and recreate_*_locally
        self._keys.put(state)
        events = self._events
        if events is not None:
            # the log listens to the state; the dashboard settles ended tasks
            # in batches (raydask.dashboard.collect): no per-task completion callback
            events.add(state)
            if events.crowded:  # full of tasks dropped before anyone saw them end: look now
                events.crowded = False
                harvest({st.ref: st for st in events.dropped_pending()}, timeout=0)
        if gate is not None:
            dispatcher = self._dispatcher

            def dispatch():  # on release: pack the refs as they are then, submit to Ray
                for dep in deps:
                    if dep.ref is None:  # cancelled while held: it never became a Ray task
                        raise FutureCancelledError(key, "an input was cancelled")
                return dispatcher.submit(func, packed, call_args(packed, args, deps), options, name)

            fifo = FIFO_TIMEOUT if fifo_timeout == "100 ms" else parse_timedelta(fifo_timeout)
            gate.hold(state, dispatch, priority, deps, _demand(options), fifo)
            if state.ref is None and state.status is Status.ERROR:
                # released at once and Ray refused it (an argument it cannot serialize):
                # raise here, as the default path does, and forget the key
                self._keys.forget(state)
                raise state.exception
        return state

    def _listen(self) -> None:
        """Show what tasks ``raydask.print`` and ``raydask.warn`` from now on (raydask.messages).

        Not inside a task: there the text goes to the worker's log already.
        """
        with self._lock:
            if self._listener is None:
                self._listener = False if _context.in_task() else Listener(on_secede=_on_secede(self))

    def _lost_dependencies(self, key, dep_keys, priority):
        """A task with a cancelled input: cancelled at once, never a Ray task (as in Dask).

        Ray would run it on the cancelled input's value if that task could not be
        stopped (RAY-NOTES), or fail it with ``TaskCancelledError`` later.  The
        key is not kept, so a later submit of the same call, with fresh inputs, runs.
        """
        state = FutureState(key, None, True, dep_keys, (), priority, held=True)
        state.cancel("lost dependencies")
        return state

    def _start_gate(self):
        """Hold tasks client-side from now on, to start them by priority (raydask.priority)."""
        from .priority import Gate

        self._listen()
        with self._lock:
            if self._gate is None:
                self._gate = Gate(self._settler)
                if self._listener:  # tasks that wait on their children report through the actor
                    self._listener.make_actor()
            return self._gate

    def _seceded(self, task_id) -> None:
        """A task reported it waits on its children (raydask.messages): free its slot if it is ours."""
        gate = self._gate
        if gate is not None:
            gate.seceded(task_id)

    def _stop_gate(self) -> None:
        """Go back to the default path (nothing held any more; for tests that share a client)."""
        with self._lock:
            gate, self._gate = self._gate, None
        if gate is not None:
            if self._listener:
                self._listener.make_actor(False)
            for st in gate.close():
                notify(st.cancel("priority gate stopped"), st)

    def _options(self, workers, resources, retries, allow_other_workers):
        placement = None
        if workers is not None:
            placement = self._placement(workers, allow_other_workers)
        if resources is None and retries is None and placement is None:
            return None
        options = task_options(resources, retries, placement)
        if resources:
            self._check_resources(resources)
        return options

    def _placement(self, workers, allow_other_workers):
        """Ray options that keep a task on ``workers`` (addresses, names or node ids)."""
        return placement_options(workers, allow_other_workers, worker_table())

    def _check_resources(self, resources):
        """Refuse (LocalCluster) or warn about (joined cluster) resources no node has.

        Ray would leave such a task pending forever without a word (RAY-NOTES).
        """
        wanted = frozenset(resources.items())
        if wanted in self._resources_ok:
            return
        table = worker_table()
        if any(node_has(w, resources) for w in table):
            self._resources_ok.add(wanted)
            return
        have = sorted({f"{w['name']}: {node_resources(w)!r}" for w in table})
        message = f"no worker has the resources {resources!r}; workers have {have!r}"
        if isinstance(self.cluster, LocalCluster):
            raise ValueError(message)
        warnings.warn(message + "; the task waits until such a node joins", UserWarning, stacklevel=4)

    def map(self, func, *iterables, key=None, workers=None, retries=None, resources=None, priority=None,
            allow_other_workers=False, fifo_timeout="100 ms", actor=False, actors=False, pure=True,
            batch_size=None, **kwargs):
        """Apply ``func`` over the zipped ``iterables``; return a list of futures.

        Args:
            key: a key prefix (``"inc"``) or a list of full keys, one per call.
            batch_size: accepted for compatibility; each call is its own Ray task.
        Raises:
            TypeError: if ``func`` is not callable, or the iterables are iterators
                or queues (as in Dask: use a loop of ``submit`` there).
        """
        if not callable(func):
            raise TypeError(f"First input to map must be a callable function, got {func!r}")
        if iterables and (all(isinstance(it, pyqueue.Queue) for it in iterables)
                          or all(isinstance(it, Iterator) for it in iterables)):
            raise TypeError(
                "Dask no longer supports mapping over Iterators or Queues. "
                "Consider using a normal for loop and Client.submit"
            )
        self._check_running(graph=True)
        for it in iterables:
            if not hasattr(it, "__iter__"):
                raise TypeError(f"map expects iterables after the function, got {it!r}")
        calls = list(zip(*[list(it) for it in iterables]))
        checked = arguments.check_map_options(
            n_calls=len(calls), key=key, batch_size=batch_size, workers=workers, resources=resources,
            retries=retries, priority=priority, fifo_timeout=fifo_timeout,
            allow_other_workers=allow_other_workers, actor=actor, actors=actors, pure=pure)
        fifo_timeout = checked.fifo_timeout
        if actor or actors:  # raydask.actor: one actor per call
            return self._map_actors(func, calls, kwargs, key, workers, resources, allow_other_workers)
        named = isinstance(key, list)
        if named:
            keys = key
        else:
            prefix = key or funcname(func)
            if pure:
                keys = [f"{prefix}-{tokenize(func, kwargs, *args)}" for args in calls]
            else:
                keys = [f"{prefix}-{uuid.uuid4()}" for _ in calls]
        options = self._options(workers, resources, retries, allow_other_workers)
        limit = limits.current_time_limit()
        task = func if limit is None else limits.Limited(func, limit)  # keys stay the function's
        size = 0
        for args in calls:  # one warning for the whole map, as Dask's one graph
            size += arguments_nbytes(args, kwargs, Future, LARGE_GRAPH_BYTES - size)
            if size > LARGE_GRAPH_BYTES:
                break
        warn_if_large(size, stacklevel=2)
        futures = []
        for k, args in zip(keys, calls):
            state = self._keys.get(k)
            if state is None:
                state = self._submit(task, k, args, kwargs, options, priority, fifo_timeout, named)
            futures.append(Future(state, self))
        return futures

    # -- Dask collections (raydask.graphs; dask installed) ----------------------------
    def compute(self, collections, sync=False, optimize_graph=True, workers=None, allow_other_workers=False,
                resources=None, retries=None, priority=None, fifo_timeout="100 ms", actors=None,
                traverse=True, **kwargs):
        """Run Dask collections on the cluster: a Future of each one's value (a list for a list).

        With ``sync=True``, the values instead.  Items that are not collections
        come back unchanged, as in Dask.
        """
        from . import graphs

        self._check_running(graph=True)
        options = self._options(workers, resources, retries, allow_other_workers)
        single = not isinstance(collections, (list, tuple, set, frozenset))
        items = [collections] if single else list(collections)
        out = [graphs.compute(self, c, optimize_graph, options, priority, fifo_timeout)
               if graphs.is_collection(c) else c for c in items]
        result = out[0] if single else out
        return self.gather(result) if sync else result

    def persist(self, collections, optimize_graph=True, workers=None, allow_other_workers=False,
                resources=None, retries=None, priority=None, fifo_timeout="100 ms", actors=None, **kwargs):
        """Start computing Dask collections; return the same collections, their keys now Futures."""
        from . import graphs

        self._check_running(graph=True)
        options = self._options(workers, resources, retries, allow_other_workers)
        single = not isinstance(collections, (list, tuple, set, frozenset))
        items = [collections] if single else list(collections)
        out = graphs.persist(self, items, optimize_graph, options, priority, fifo_timeout)
        return out[0] if single else out

    def get(self, dsk, keys, workers=None, allow_other_workers=False, resources=None, sync=True,
            asynchronous=None, direct=None, retries=None, priority=None, fifo_timeout="100 ms",
            actors=None, **kwargs):
        """Run a Dask graph (a dict, a HighLevelGraph or an expression) for ``keys``.

        ``keys`` is one key or nested lists of keys; the results (or, with
        ``sync=False``, Futures) come back in the same shape.  This is the function
        ``dask.compute`` calls while this client is Dask's default scheduler.
        """
        from . import graphs

        self._check_running(graph=True)
        options = self._options(workers, resources, retries, allow_other_workers)
        futures = graphs.get(self, dsk, keys, options, priority, fifo_timeout)
        return self.gather(futures, asynchronous=asynchronous) if sync else futures

    # -- moving data ----------------------------------------------------------------
    def gather(self, futures, errors="raise", direct=None, asynchronous=None):
        """Results of futures, in the same nested structure (lists, tuples, sets, dicts).

        Args:
            errors: ``"raise"`` the first failure, or ``"skip"`` failed futures.
        Returns:
            The results; with an asynchronous client, a coroutine returning them.
        Raises:
            ValueError: for futures of another client (Dask's message).

        Differences from dask.distributed:
            A single Future of another client raises the same ``ValueError``;
            Dask's message fails on it with ``TypeError: object of type 'Future' has no len()``.
        """
        arguments.check_gather_options(errors=errors, direct=direct)
        if isinstance(futures, pyqueue.Queue):
            raise TypeError("gather does not take a queue; gather its items in a loop instead")
        if isinstance(futures, Iterator):
            return (self.gather(f, errors=errors) for f in futures)
        found = [futures] if isinstance(futures, Future) else futures_of(futures)
        self._check_own(futures, found)
        if isinstance(futures, Future):
            steps = _result_steps(futures._state, None)
        else:
            steps = gathering.gather_steps(futures, found, errors)
        try:
            return run(steps, self._use_async(asynchronous))
        except Exception as exc:
            if task_traceback(exc) is None:
                raise
            raise fresh(exc)  # as Dask shows it: the caller, this frame, the task's frames

    def _check_own(self, futures, found) -> None:
        """Refuse futures of another client, as Dask's ``gather`` does (its message)."""
        mismatched = [f for f in found if f._client is not None and f._client is not self]
        if mismatched:
            total = len(futures) if hasattr(futures, "__len__") else 1
            raise ValueError(
                "Cannot gather Futures created by another client. "
                f"These are the {len(mismatched)} (out of {total}) "
                f"mismatched Futures and their client IDs (this client is {self.id}): "
                f"{ {f: f.client.id for f in mismatched} }"
            )

    def scatter(self, data, workers=None, broadcast=False, direct=None, hash=True, timeout=None,
                asynchronous=None):
        """Put local data into the cluster; return futures shaped like ``data``.

        A dict gives a dict of futures keyed by its keys (which become the futures'
        keys); a list, tuple or set gives the same container of futures; anything
        else one future.  Keys are ``f"{type}-{token}"``.

        Differences from dask.distributed:
            ``workers=`` and ``broadcast=`` are accepted and ignored: the data goes
            to the object store of this client's node and Ray copies it to the nodes
            that use it.  So it never waits for workers: ``timeout=`` is checked and
            unused (Dask raises ``TimeoutError`` when no worker comes in time).
        """
        self._check_running()
        arguments.check_scatter_options(workers=workers, broadcast=broadcast, hash=hash, timeout=timeout,
                                        direct=direct)
        if isinstance(data, pyqueue.Queue) or isinstance(data, Iterator):
            if isinstance(data, pyqueue.Queue):
                raise TypeError("scatter does not take a queue; scatter its items in a loop instead")
            return (self.scatter(x, hash=hash, asynchronous=asynchronous) for x in data)
        return run_call(lambda: self._scatter(data, hash), self._use_async(asynchronous))

    def _scatter(self, data, hash):
        if isinstance(data, dict):
            return {k: self._scatter_one(v, k) for k, v in data.items()}
        if isinstance(data, (list, tuple, set, frozenset)):
            futures = [self._scatter_one(v, self._scatter_key(v, hash)) for v in data]
            return type(data)(futures) if not hasattr(data, "_fields") else type(data)(*futures)
        return self._scatter_one(data, self._scatter_key(data, hash))

    @staticmethod
    def _scatter_key(value, hash):
        token = tokenize(value) if hash else uuid.uuid4().hex
        return f"{type(value).__name__}-{token}"

    def _scatter_one(self, value, key):
        state = self._keys.get(key)
        if state is None:
            now = time.time()
            ref = ray.put(value)
            state = FutureState(key, ref, False)
            state.record = TaskRecord(typename(type(value)), sizeof(value), now, now,
                                      ray.get_runtime_context().get_node_id(), os.getpid())
            self._keys.put(state)
            if self._events is not None:
                self._events.add(state)
        return Future(state, self)

    # -- control ----------------------------------------------------------------------
    def cancel(self, futures, asynchronous=None, force=False, reason=None, msg=None):
        """Cancel futures: they become ``cancelled`` and ``result()`` raises ``CancelledError``.

        A task the priority gate still holds is simply forgotten (it never was a
        Ray task); one that has not started is skipped by Ray when that is safe.

        Args:
            force: also end the worker process of a running task that ignores the
                interrupt for :data:`raydask.cancelling.FORCE_GRACE` seconds.

        Differences from dask.distributed:
            A task already running when cancelled is interrupted by Ray
            (``KeyboardInterrupt`` inside it); Dask lets it run and drops the result
            (dask/distributed#4694).  ``force=True`` kills the worker process of a
            task that ignores the interrupt; in Dask it means "even if other clients
            want it".  A task whose inputs are still being computed is not cancelled
            inside Ray, because that can crash the driver (RAY-NOTES;
            ray-project/ray#18908): it still runs, and its result is dropped.
        """
        if isinstance(futures, Future):
            futures = [futures]
        states = {}
        for f in futures_of(futures):
            states.setdefault(f.key, f._state)
        return run_call(lambda: self._cancel(states, force, reason, msg), self._use_async(asynchronous))

    def _cancel(self, states, force, reason, msg=None):
        interrupted = cancelling.cancel(self._keys, self._gate, states, reason, msg)
        if force and interrupted:
            thread = cancelling.force_later(interrupted)
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def retry(self, futures, asynchronous=None):
        """Run failed futures' tasks again, under the same keys (Dask's ``Client.retry``).

        As Dask's scheduler does, a future that failed because an input failed
        retries that input (and so on up the chain), and the failed futures of
        this client that depend on a retried one run again too.  Futures that
        have not failed are left as they are.

        Differences from dask.distributed:
            A retried task goes to Ray at once, past a priority gate
            (:mod:`raydask.priority`); retrying a finished future does nothing
            (Dask's status reads ``lost`` and then recomputes it).
        """
        states = {}
        for f in futures_of(futures):
            states.setdefault(f.key, f._state)
        return run_call(lambda: cancelling.retry(self._keys, self._dispatcher, list(states.values())),
                        self._use_async(asynchronous))

    # -- metadata shared by the cluster (raydask.metadata) -----------------------------
    def set_metadata(self, key, value):
        """Store a small ``value`` for every client and task of the cluster to read.

        ``key`` is a key, or a list of keys: a path into nested dicts, made on
        demand (``set_metadata(["a", "b"], 1)`` then ``get_metadata("a") == {"b": 1}``).

        Differences from dask.distributed:
            Kept in raydask's coordination actor, not on a scheduler; any picklable
            value is accepted (Dask: msgpack-encodable ones), but a path reaches
            only into dicts and lists of plain values.
        """
        return run_call(lambda: metadata.set_metadata(self, key, value), self.asynchronous, blocking=True)

    def get_metadata(self, keys, default=metadata.no_default):
        """The value stored under ``keys`` (a key, or a list or tuple: a path).

        Raises:
            KeyError: if nothing is stored there and no ``default`` is given.
        """
        return run_call(lambda: metadata.get_metadata(self, keys, default), self.asynchronous, blocking=True)

    # -- structured events shared by the cluster (raydask.topics) -------------------------
    def log_event(self, topic, msg):
        """Log ``msg`` under ``topic`` (a string, or a list of them) for every client and task to read.

        Raises:
            TypeError: if ``msg`` is not msgpack-encodable, as in Dask.

        Differences from dask.distributed:
            Kept in raydask's coordination actor, not on a scheduler; the time
            stamped on the event is the actor's clock.
        """
        return run_call(lambda: topics.log_event(self, topic, msg), self.asynchronous, blocking=True)

    def get_events(self, topic=None):
        """``((time, msg), ...)`` logged under ``topic``, oldest first, at most the last 1,000;
        without a topic, ``{topic: events}`` for every topic that has any.

        Differences from dask.distributed:
            Only what clients and tasks logged: raydask has no scheduler or
            workers logging their own events (Dask's ``"all"``, ``"scheduler"``,
            per-worker topics).
        """
        return run_call(lambda: topics.get_events(self, topic), self.asynchronous, blocking=True)

    def subscribe_topic(self, topic, handler):
        """Call ``handler((time, msg))`` for every event logged under ``topic`` from now on.

        Events logged anywhere count (``log_event`` of any client, a task's
        ``get_worker().log_event``).  A second subscription to a topic replaces its handler.

        Raises:
            TypeError: if ``topic`` is not a string or ``handler`` is not callable.

        Differences from dask.distributed:
            A named thread of the client (``raydask-topics``) waits for the events in
            a long poll on raydask's coordination actor and calls the handlers; an
            asynchronous client's handlers run on its event loop (the loop this was
            called in), a coroutine function's awaited there, as in Dask.
        """
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a string, got {topic!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        self._check_running()
        with self._lock:
            if self._subscriber is None:
                self._subscriber = topics.Subscriber()
        loop = asyncio.get_running_loop() if self._asynchronous and in_loop() else None
        self._subscriber.subscribe(topic, handler, loop)

    def unsubscribe_topic(self, topic):
        """Stop calling the handler of ``topic``.

        Raises:
            ValueError: if no handler is subscribed to ``topic``, as Dask.
        """
        subscriber = self._subscriber
        if subscriber is None:
            raise ValueError(f"No event handler known for topic {topic}.")
        subscriber.unsubscribe(topic)

    # -- worker plugins and forwarded logging (raydask.plugins) ---------------------------
    def register_plugin(self, plugin, name=None):
        """Register a worker plugin: its ``setup`` runs in every worker process before its tasks.

        ``name`` defaults to ``plugin.name``, else ``"<class>-<uuid>"``.  A plugin
        under a name already registered replaces it (the old one's ``teardown``
        runs), unless ``plugin.idempotent`` is true: then nothing happens and the
        answer is ``{}``.  Blocks until ``setup`` ran in a worker process of every
        node.

        Returns:
            ``{worker address: {"status": "OK"}}`` (Dask's response).
        Raises:
            TypeError: if ``plugin`` is a class, a scheduler or nanny plugin, or not a plugin.
            Exception: what ``setup`` raised on a node (the plugin stays registered, as in Dask).

        Differences from dask.distributed:
            Set up once per Ray worker process (see :class:`raydask.WorkerPlugin`):
            on nodes that join later and in processes Ray starts later, before
            their first task of this client (or of a client made in such a task).
            Dask's ``Environ`` is a nanny plugin that restarts workers; raydask's
            sets the variables in each process.  Scheduler and nanny plugins are
            not supported.
        """
        plugin = plugins.check_plugin(plugin)
        name = plugins.plugin_name(plugin, name)
        idempotent = getattr(plugin, "idempotent", False)
        if not isinstance(idempotent, bool):
            raise TypeError(f"plugin.idempotent must be True or False, got {idempotent!r}")
        self._check_running()
        if isinstance(plugin, plugins.UploadFile) and plugin.directory is None:
            plugin = copy.copy(plugin)
            plugin.directory = self._upload_target()

        def register():
            handle = plugins.add(plugin, name, idempotent)
            if handle is None:
                return {}
            self._dispatcher.set_plugins(handle)
            return self._install_everywhere(handle, name)

        return run_call(register, self.asynchronous, blocking=True)

    def register_worker_callbacks(self, setup=None):
        """Run ``setup`` in every worker process before its tasks, as a worker plugin.

        ``setup`` is called with ``dask_worker=get_worker()`` if it takes that
        argument.  Each call registers one more plugin (``"SetupCallback-<uuid>"``).

        Returns:
            what :meth:`register_plugin` returns.
        Raises:
            TypeError: if ``setup`` is not callable.
        """
        return self.register_plugin(plugins.SetupCallback(setup))

    def unregister_worker_plugin(self, name, nanny=None):
        """Unregister the worker plugin ``name``; its ``teardown`` runs.

        Returns:
            ``{worker address: {"status": "OK"}}``.
        Raises:
            ValueError: if no plugin has that name (Dask's message).

        Differences from dask.distributed:
            ``teardown`` runs at once in one worker process per node, and in each
            other process that set the plugin up when it next runs a task of this
            client.  ``nanny=True`` raises ``ValueError``: raydask has no nannies.
        """
        if not isinstance(name, str):
            raise TypeError(f"plugin name must be a string, got {name!r}")
        if nanny:
            raise ValueError(f"raydask has no nanny plugins to unregister, got nanny={nanny!r}")
        self._check_running()

        def unregister():
            handle = plugins.remove(name)
            self._dispatcher.set_plugins(handle)
            return self._install_everywhere(handle, name)

        return run_call(unregister, self.asynchronous, blocking=True)

    def _install_everywhere(self, handle, name) -> dict:
        """Bring one worker process of every node to plugin ``handle`` now; Dask's response."""
        refs = run_on_nodes(plugins.install_now, (handle, name), {}, None, worker_table())
        responses = {}
        for address, ref in refs.items():
            try:
                responses[address] = ray.get(ref)
            except ray.exceptions.RayError as err:
                raise unwrap(err) from None
        return responses

    def forward_logging(self, logger_name=None, level=logging.NOTSET):
        """Re-emit here what tasks log through ``logger_name`` (default: the root logger).

        A record a task's logger handles (at ``level`` or above) is handled by the
        logger of the same name in this process, with a ``worker`` attribute
        naming the worker, as in Dask: a worker plugin adds the handler in each
        worker process and the records travel as events of topic
        ``"forwarded-log-record-forward-logging-<name>"``.

        Returns:
            ``{worker address: {"status": "OK"}}``, as :meth:`register_plugin`.
        """
        plugin_name, topic = plugins.forwarding_names(logger_name)
        self.subscribe_topic(topic, plugins.forwarded_record)
        return self.register_plugin(plugins.ForwardLoggingPlugin(logger_name, level, topic), plugin_name)

    def unforward_logging(self, logger_name=None):
        """Stop forwarding ``logger_name`` (default: the root logger).

        Raises:
            ValueError: if it was not forwarded.
        """
        plugin_name, topic = plugins.forwarding_names(logger_name)
        self.unsubscribe_topic(topic)
        return self.unregister_worker_plugin(plugin_name)

    # -- debugging failed tasks here (Dask's recreate_tasks) ---------------------------
    def recreate_error_locally(self, future):
        """Run the task to blame for ``future``'s failure here, in this process, so it raises here.

        The task to blame is the one that raised: ``future``'s own, or, if it failed
        because an input failed, that input's (up the chain).  Its inputs' results
        are fetched from the cluster, and its function is called with them, so a
        debugger (``%pdb``, ``pdb.runcall``) stops in the user's code.

        Args:
            future: a Future, or a collection (or persisted Dask collection) holding some.
        Raises:
            ValueError: if none of the futures failed ("No errored futures passed", as Dask).
        """
        st = recreate.blame(recreate.settled(self._states_for(future)))
        if st is None:
            raise ValueError("No errored futures passed")
        return recreate.run_here(st)

    def recreate_task_locally(self, future):
        """Run ``future``'s task here, with its inputs' results from the cluster; return its result.

        Differences from dask.distributed:
            raydask keeps a task's function and arguments only until it finishes
            (so the data of its inputs is not held longer than Ray holds it): for
            a task that finished this raises ``ValueError``; use it on pending or
            failed tasks.
        """
        if not isinstance(future, Future):
            raise TypeError(f"recreate_task_locally expects a Future, got {future!r}")
        (st,) = recreate.settled(self._states_for(future))
        return recreate.run_here(st)

    # -- diagnostics ------------------------------------------------------------------
    def _recording(self) -> EventLog:
        """The client's event log, started now if the client had none (no dashboard).

        It follows the keys the client holds from this moment on, as the
        dashboard's log would have: the task stream's record of what ran.
        """
        with self._lock:
            if self._events is None:
                events = EventLog(max_tasks=self._max_tasks)
                for state in self._states.values():
                    events.add(state)
                self._events = events
            return self._events

    def get_task_stream(self, start=None, stop=None, count=None, plot=False, filename="task-stream.html",
                        bokeh_resources=None):
        """Dask's task stream: one record per task that ran (``key``, ``worker``, ``startstops``...).

        Args:
            start, stop: a window by when tasks stopped: ``time.time()`` values or
                strings like ``"60s"`` (that long ago).
            count: at most this many records (the last ones, or the first after ``start``).
            plot: True to return ``(records, figure)``; ``"save"`` also writes the
                figure to ``filename`` as standalone HTML.
            bokeh_resources: accepted for compatibility, ignored (no Bokeh).

        Differences from dask.distributed:
            The figure is a Plotly figure.  Records come from the client's event
            log, which keeps ``dashboard_max_tasks`` tasks (Dask keeps 100,000).
            A client made with ``dashboard_address=None`` starts recording at the
            first call, as Dask's plugin does ("call this once before you start work").
        """
        from .task_stream import task_stream

        return run_call(lambda: task_stream(self, start, stop, count, plot, filename), self.asynchronous,
                        blocking=True)

    def story(self, *keys_or_stimuli, on_error="raise"):
        """The recorded transitions of these keys (or stimulus ids), in Dask's tuple shape, oldest first.

        ``("scheduler", key, start, finish, recommendations, stimulus_id, time)``
        and, from the task's receipt, ``(worker, key, start, finish, finish,
        recommendations, stimulus_id, time)``: submitted (released to waiting),
        started on its worker (waiting to processing, ready to executing),
        stopped (to memory or erred).  Scattered data is one released-to-memory
        record.

        Args:
            on_error: ``"raise"`` or ``"ignore"`` (accepted as in Dask; nothing here
                asks a worker, so there is nothing to ignore).

        Differences from dask.distributed:
            Only the keys this client holds, and the released ones its event log
            still remembers (a client with the dashboard, or after the first
            ``get_task_stream``).  Cancellation, release, retries and the moment
            Ray hands a task to a worker are not time-stamped in raydask's log and
            are missing; "processing" is stamped when the task started.
        """
        if on_error not in ("raise", "ignore"):
            raise ValueError(f"on_error must be 'raise' or 'ignore', got {on_error!r}")
        for k in keys_or_stimuli:
            if not isinstance(k, (str, bytes, int, float, tuple)) or isinstance(k, bool):
                raise TypeError(f"story takes keys or stimulus ids, got {k!r}")
        return run_call(lambda: self._story(keys_or_stimuli), self.asynchronous, blocking=True)

    def _story(self, keys_or_stimuli) -> list:
        states = self._keys.snapshot()
        wanted = set(keys_or_stimuli)
        refresh([st for st in states if st.key in wanted])
        addresses = {w["node_id"]: w["address"] for w in worker_table()}
        return story.collect(self._events, states, keys_or_stimuli, addresses)

    # -- cluster information ----------------------------------------------------------
    def get_scheduler_logs(self, n=None):
        """The scheduler's last ``n`` log lines (default 10,000), newest first, as ``[(level, line)]``.

        Differences from dask.distributed:
            The scheduler's log is the GCS's log file (on this machine); each
            line's level is read off the line.
        """
        self._check_running()
        return run_call(lambda: admin.scheduler_logs(n), self.asynchronous, blocking=True)

    def get_worker_logs(self, n=None, workers=None, nanny=False):
        """``{worker address: [(level, line), ...]}``, each newest first, at most ``n`` lines.

        ``workers``: addresses (default: every worker).  ``nanny=True`` gives
        the raylet's log, the process that starts and restarts the worker's
        processes, as Dask's nanny does for its worker.

        Differences from dask.distributed:
            A worker's log is its raylet's log followed by what its worker
            processes wrote, so a task's prints are in it too; a node on
            another machine has an empty log.
        """
        self._check_running()
        return run_call(lambda: admin.worker_logs(n, workers, nanny), self.asynchronous, blocking=True)

    def scheduler_info(self, **kwargs) -> dict:
        """Dask's ``scheduler_info()`` shape: the cluster and its workers by address.

        Every key Dask's has, top-level and per worker, filled from Ray where Ray
        knows it: ``started`` is when the Ray session began, a worker's
        ``local_directory`` its node's Ray session directory, ``last_seen`` the
        time Ray reported it alive (now), ``status`` ``"running"`` (Ray lists
        live nodes), ``nanny`` None and ``services`` empty (a Ray node has
        neither).  Ray adds ``node_id``, ``object_store_memory`` and ``is_head``.

        Differences from dask.distributed:
            A worker's ``metrics`` holds only ``time``: Ray keeps no per-node task
            counts, memory or transfer figures without its dashboard process.
        """
        return admin.scheduler_info(self.cluster, self._dashboard.port if self._dashboard else None,
                                    self._events.started if self._events else None)

    def get_versions(self, check=False, packages=None):
        """``{"scheduler": {...}, "workers": {address: {...}}, "client": {...}}``: what runs where.

        Each entry is ``{"host": {python, OS, machine...}, "packages": {name: version}}``
        with Dask's packages plus ``ray`` and ``raydask`` (None: not installed there).

        Args:
            check: warn (``UserWarning``, Dask's "Mismatched versions found" table)
                when the client, scheduler and workers differ.
            packages: more package names to report.

        Differences from dask.distributed:
            The "scheduler" entry is a zero-CPU task on Ray's head node (the GCS
            runs there) and each worker's a task on its node, so they describe
            the Ray worker processes' environment.
        """
        extra = versions.check_packages(packages)
        if not isinstance(check, bool):
            raise TypeError(f"check must be True or False, got {check!r}")
        self._check_running()
        return run_call(lambda: admin.versions_everywhere(check, extra), self.asynchronous, blocking=True)

    def nthreads(self, workers=None, **kwargs) -> dict:
        """``{worker address: threads}`` (Ray CPUs per node).

        Args:
            workers: an address or name, or a list of them (exact matches, as Dask's
                scheduler); default: every worker.
        """
        return run_call(lambda: admin.nthreads(workers), self.asynchronous)

    ncores = nthreads

    def wait_for_workers(self, n_workers, timeout=None):
        """Block until ``n_workers`` workers (Ray nodes) are up; raises on timeout."""
        if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
            raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
        return run_call(lambda: self.cluster.wait_for_workers(n_workers, timeout), self.asynchronous,
                        blocking=True)

    def who_has(self, futures=None, **kwargs) -> dict:
        """``{key: [worker address]}``: the worker that computed each finished result.

        Args:
            futures: futures to ask about (default: every key this client holds).

        Differences from dask.distributed:
            Lists the node that produced (or, for scattered data, put) the value,
            as reported by the task itself; Ray's copies on other nodes and
            recomputations after a node left are not tracked.
        """
        return run_call(lambda: admin.who_has(self._states_for(futures)), self.asynchronous)

    def has_what(self, workers=None, **kwargs) -> dict:
        """``{worker address: [keys]}``: the inverse of :meth:`who_has`, every worker listed."""
        table = select_workers(worker_table(), workers)
        return run_call(lambda: admin.has_what(self._keys.snapshot(), table), self.asynchronous)

    def processing(self, workers=None) -> dict:
        """``{worker address: [keys]}``: this client's tasks that Ray has handed to each worker
        and that have not ended, every worker listed.

        Args:
            workers: an address or name, or a list of them (default: every worker).

        Differences from dask.distributed:
            Read from the GCS's task events, which workers report about once a
            second: a task shows up there up to a second or two after it started,
            and leaves when it ends.  Only this client's tasks are known.  One
            GCS call per running task (1-2 ms each).
        """
        table = select_workers(worker_table(), workers)
        return run_call(lambda: admin.processing(self._keys.snapshot(), table), self.asynchronous, blocking=True)

    def retire_workers(self, workers=None, close_workers=True, **kwargs):
        """Remove workers; ``{address: worker info}`` of those retired.

        On a ``LocalCluster`` the scaler stops their nodes; on a cluster this
        client joined (``RayCluster``) Ray drains them (no new tasks, running ones
        finish, then the node's raylet exits).  Returns once Ray lists them dead.

        Args:
            workers: addresses or names (default, on a ``LocalCluster`` only: every
                idle worker but the first, as Dask retires the workers it can spare).
            close_workers: accepted for compatibility: a retired Ray node is always stopped.

        Raises:
            ValueError: if ``workers`` names the first worker (Ray's head node, which
                holds the cluster's state), or is missing on a joined cluster (raydask
                does not pick another owner's nodes to stop).

        Differences from dask.distributed:
            Dask first copies results held only by the leaving workers elsewhere;
            Ray recomputes such a result from its lineage when it is next needed.
            Workers are matched by exact address or name; Dask's ``names=``,
            ``n=``, ``minimum=`` and ``target=`` are not supported.
        """
        if not isinstance(self.cluster, (LocalCluster, RayCluster)):
            raise ValueError(f"retire_workers needs a LocalCluster or a joined Ray cluster, not {self.cluster!r}")
        if workers is None and not isinstance(self.cluster, LocalCluster):
            raise ValueError(f"retire_workers on a cluster raydask did not start ({self.cluster!r}) needs workers=: "
                             "it does not choose which of another owner's nodes to stop")
        unknown = set(kwargs) - {"remove", "stimulus_id"}
        if unknown:
            raise TypeError(f"retire_workers got unsupported arguments {sorted(unknown)!r}")
        self._check_running()
        return run_call(lambda: admin.retire_workers(self.cluster, workers, self.scheduler_info()["workers"]),
                        self.asynchronous, blocking=True)

    def nbytes(self, keys=None, summary=True, **kwargs) -> dict:
        """``{key: bytes}`` of each finished result, or, ``summary=True``, summed by key prefix.

        Args:
            keys: keys to report (default: every finished key this client holds).

        Differences from dask.distributed:
            The sizes are the tasks' own measure of their results (Dask's
            ``sizeof`` rules, :mod:`raydask.sizeof`), sent home in each task's
            receipt; only this client's keys are known.
        """
        if keys is not None:
            keys = [keys] if isinstance(keys, (str, tuple)) else list(keys)
        return run_call(lambda: admin.nbytes(self._states_of_keys(keys), summary), self.asynchronous)

    def _states_of_keys(self, keys) -> list:
        """The states of ``keys`` (None: every key held).

        Raises:
            KeyError: for the first key this client does not hold.
        """
        if keys is None:
            return self._keys.snapshot()
        with self._lock:
            missing = [k for k in keys if k not in self._states]
            if missing:
                raise KeyError(missing[0])
            return [self._states[k] for k in keys]

    def futures_of(self, futures):
        """The Futures inside ``futures`` (Dask's wrapper of :func:`futures_of` with ``client=self``).

        Raises:
            FuturesCancelledError: if some of them were cancelled, grouped by reason, as Dask.
        """
        return futures_of(futures, client=self)

    def _states_for(self, futures) -> list:
        """The states of the futures in ``futures``, one per key (None: every key held)."""
        if futures is None:
            return self._keys.snapshot()
        if isinstance(futures, Future):
            futures = [futures]
        states = {}
        for f in futures_of(futures):
            states.setdefault(f.key, f._state)
        return list(states.values())

    def run(self, function, *args, workers=None, wait=True, nanny=False, on_error="raise", **kwargs):
        """Run ``function(*args, **kwargs)`` once on every worker (Ray node).

        A function with a ``dask_worker`` parameter receives ``get_worker()``.
        Each call is a Ray task pinned to its node that asks for no CPU, so it runs
        even while the node's slots are busy.

        Args:
            workers: addresses or names to run on (default: all).
            on_error: ``"raise"`` the first error, ``"return"`` it in the dict, or ``"ignore"`` it.
        Returns:
            ``{worker address: result}`` (None with ``wait=False``).

        Differences from dask.distributed:
            Runs in one of Ray's worker processes on the node, not in a long-lived
            worker process: state it leaves behind is seen only by later tasks that
            happen to run in the same process.
        """
        if on_error not in ("raise", "return", "ignore"):
            raise ValueError(f"on_error must be 'raise', 'return' or 'ignore', got {on_error!r}")
        if not callable(function):
            raise TypeError(f"run expects a callable, got {function!r}")
        self._check_running()
        refs = run_on_nodes(function, args, kwargs, workers, worker_table())
        if not wait:
            return run_call(lambda: None, self.asynchronous)
        return run(admin.run(refs, on_error), self.asynchronous)

    def run_on_scheduler(self, function, *args, **kwargs):
        """Run ``function(*args, **kwargs)`` where raydask's scheduler lives: this client's process.

        A function with a ``dask_scheduler`` parameter receives ``cluster.scheduler``
        (the read-only view of Ray's nodes that ``client.cluster.scheduler`` is).
        An ``async def`` function is awaited on the client's event loop;
        ``wait=False`` (async functions only, as in Dask) starts it there in the
        background and returns None.  The function's exception is raised as is.

        Raises:
            TypeError: if ``function`` is not callable.
            ValueError: for ``wait=False`` with a plain function (Dask: "Combination not supported").

        Differences from dask.distributed:
            Ray's GCS and raylets schedule; there is no scheduler process to
            run in.  The function runs in the calling thread (an async one on the
            client's loop), and ``dask_scheduler`` is not Dask's ``Scheduler``:
            it has ``address``, ``workers`` and ``total_nthreads`` (docs/migrating.md).
        """
        if not callable(function):
            raise TypeError(f"run_on_scheduler expects a callable, got {function!r}")
        wait = kwargs.pop("wait", True)
        is_coro = inspect.iscoroutinefunction(function)
        if not wait and not is_coro:
            raise ValueError(f"run_on_scheduler(wait=False) needs an async function, got {function!r} "
                             "(Dask: 'Combination not supported')")
        self._check_running()
        if _takes(function, "dask_scheduler"):
            kwargs["dask_scheduler"] = self.cluster.scheduler
        if not is_coro:
            return run_call(lambda: function(*args, **kwargs), self.asynchronous)
        if wait:
            return self.sync(function, *args, **kwargs)
        if self.asynchronous:  # inside the client's loop: it runs there, beside the caller
            task = asyncio.ensure_future(function(*args, **kwargs))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            asyncio.run_coroutine_threadsafe(function(*args, **kwargs), self._ensure_loop_thread().loop)
        return run_call(lambda: None, self.asynchronous)

    def upload_file(self, filename, load=True):
        """Ship a ``.py``, ``.zip``, ``.egg`` or ``.whl`` file to every worker; later tasks import it.

        The file lands in a directory that every Ray worker process of this client
        has on ``sys.path`` (archives are unpacked there).  With ``load``, each node
        imports (or reloads) the module once, so an error in it shows here.

        Raises:
            FileNotFoundError: if ``filename`` does not exist.

        Differences from dask.distributed:
            Ray keeps a pool of worker processes per node; one that imported an
            older version of the module before the upload keeps it.  On a cluster
            joined through ``ray://`` or after ``ray.init`` by the user, only the
            process that unpacked the file gets the directory on ``sys.path``.
        """
        self._check_running()
        with open(filename, "rb") as fh:
            data = fh.read()
        return self.run(install_upload, os.path.basename(filename), data, self._upload_target(), load)

    def _upload_target(self) -> str:
        """Where uploaded files go: a directory every Ray worker process of this client imports from."""
        return self.cluster.upload_dir or os.path.join(tempfile.gettempdir(), f"raydask-upload-{os.getpid()}")

    def restart(self, timeout=None, wait_for_workers=True):
        """Cancel every future of this client (Dask's ``restart``); the cluster keeps working.

        Every future becomes ``cancelled`` (reason ``"scheduler-restart"``); tasks
        not yet done are cancelled in Ray where that is safe.

        Differences from dask.distributed:
            Ray's nodes and their worker processes are not restarted, and other
            clients' futures are untouched (each client keeps its own keys).
        """
        self._check_running()
        return run_call(lambda: self._restart(timeout, wait_for_workers), self.asynchronous, blocking=True)

    def _restart(self, timeout, wait_for_workers):
        cancelling.cancel_all(self._keys, self._gate, self._dispatcher)
        if wait_for_workers and isinstance(self.cluster, LocalCluster):
            self.cluster.wait_for_workers(self.cluster.target, timeout)

    def restart_workers(self, workers, timeout=None, raise_for_error=True):
        """Restart these workers as Dask's nanny does: ``{worker: "OK" | "timed out"}``.

        A worker is a Ray node of this client's ``LocalCluster``: its processes
        (raylet, object store, worker processes) are stopped and a new node starts
        under the same name, with a new address.  Tasks running there are retried
        by Ray elsewhere; results stored only there are gone, and Ray recomputes
        them from their lineage when they are next needed.

        Args:
            workers: worker addresses or names (the keys of the result are these, as given).
            timeout: seconds to wait for the new nodes (default 120, Dask's: 4 x its 30 s connect timeout).
            raise_for_error: raise ``TimeoutError`` if a worker is not back in time;
                else report it as ``"timed out"``.
        Raises:
            ValueError: for an unknown worker, the first worker (Ray's head node,
                which holds the cluster's state), or a cluster raydask did not start
                (``RayCluster``): it cannot start another machine's Ray processes again.
            TimeoutError: see ``raise_for_error``.
        """
        if isinstance(workers, (str, int)):  # one worker, as Dask's client accepts
            workers = [workers]
        if not isinstance(workers, (list, tuple, set)):
            raise TypeError(f"workers must be a list of worker addresses or names, got {workers!r}")
        limit = 120.0 if timeout is None else parse_timedelta(timeout, "timeout")
        if limit is None or limit <= 0:
            raise ValueError(f"timeout must be a positive duration, got {timeout!r}")
        self._check_running()
        cluster = self.cluster
        if not isinstance(cluster, LocalCluster):
            raise ValueError(
                f"restart_workers needs a LocalCluster this process started, not {cluster!r}: raydask restarts a "
                "worker by stopping its Ray node and starting a new one, and the nodes of a cluster it joined "
                "were started by someone else (use Ray's own tools, e.g. `ray stop` on that machine)")

        return run_call(lambda: admin.restart_workers(cluster, workers, limit, raise_for_error), self.asynchronous,
                        blocking=True)

    # -- actors, published datasets, executor (raydask.actor, raydask.datasets, raydask.executor)
    def _submit_actor(self, cls, args, kwargs, key, workers, resources, allow_other_workers):
        """``submit(cls, actor=True)``: a Ray actor, and a Future whose value is its proxy."""
        key = f"{funcname(cls)}-{uuid.uuid4()}" if key is None else key  # actors are never pure
        validate_key(key)
        state = self._keys.get(key)
        if state is not None:
            return Future(state, self)
        placement = self._placement(workers, allow_other_workers) if workers is not None else None
        if resources:
            self._check_resources(resources)
        bind, bind_args = actor.start(cls, args, kwargs, key, actor.actor_options(resources, placement), Future)
        return Future(self._submit(bind, key, bind_args, {}, {"num_cpus": 0}, None), self)

    def _map_actors(self, cls, calls, kwargs, key, workers, resources, allow_other_workers):
        prefix = key or funcname(cls)
        keys = key if isinstance(key, list) else [f"{prefix}-{uuid.uuid4()}" for _ in calls]
        return [self._submit_actor(cls, args, kwargs, k, workers, resources, allow_other_workers)
                for k, args in zip(keys, calls)]

    def publish_dataset(self, *args, name=None, override=False, **kwargs):
        """Publish named data (futures, and values holding them) for every client of the cluster.

        ``publish_dataset(x, name="n")``, ``publish_dataset({"n": x})`` or
        ``publish_dataset(n=x)``.

        Raises:
            KeyError: if a name is taken and ``override`` is False.
            ValueError: for a call in none of those forms (Dask's messages).

        Differences from dask.distributed:
            Returns once the futures have finished: their data is copied, on the
            cluster, into objects owned by a detached Ray actor, so it outlives
            this client (Ray objects die with the process that made them).
        """
        self._check_running()
        return run_call(lambda: datasets.publish(self, args, name=name, override=override, **kwargs),
                        self.asynchronous, blocking=True)

    def unpublish_dataset(self, name, **kwargs):
        """Remove the named dataset(s) (a name or a list); unknown names are ignored."""
        return run_call(lambda: datasets.unpublish(self, name), self.asynchronous, blocking=True)

    def list_datasets(self, **kwargs):
        """The names of the published datasets, sorted."""
        return run_call(lambda: datasets.list_names(self), self.asynchronous, blocking=True)

    def get_dataset(self, name, default=datasets.no_default, **kwargs):
        """The dataset published as ``name`` (a list of names gives a list), with futures of this client.

        Raises:
            KeyError: for an unknown name when no ``default`` is given.
        """
        return run_call(lambda: datasets.get(self, name, default), self.asynchronous, blocking=True)

    @property
    def datasets(self):
        """The published datasets as a mutable mapping (``client.datasets["x"] = future``)."""
        return datasets.Datasets(self)

    def get_executor(self, **kwargs):
        """A ``concurrent.futures.Executor`` running its calls with ``submit(..., **kwargs)``."""
        return ClientExecutor(self, **kwargs)

    # -- lifecycle --------------------------------------------------------------------
    def close(self, timeout=None):
        """Close the client; stop the cluster only if this client started it.

        A coroutine with an asynchronous client (``await client.close()``).
        """
        return run_call(self._close, self.asynchronous, blocking=True)

    def _close(self):
        if self.status_enum is ClientStatus.NEWLY_CREATED and self._startup is not None:
            self._startup = None  # never started (an asynchronous client nobody awaited)
            self.status_enum = ClientStatus.CLOSED
            return
        if self.status_enum in (ClientStatus.CLOSING, ClientStatus.CLOSED):
            return
        self.status_enum = ClientStatus.CLOSING
        _context.unregister(self)
        if self._dask_config is not None:  # Dask's previous scheduler again
            self._dask_config.__exit__(None, None, None)
            self._dask_config = None
        if self._dashboard is not None:
            self._dashboard.stop()
        states = self._keys.clear()
        if self._gate is not None:
            self._gate.close()  # before the states: nothing more is released to Ray
        for st in states:
            notify(st.cancel("client closed"), st)
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=cancelling.FORCE_GRACE + 5)
        self._settler.close()
        if self._sink is not None:
            receipts.leave(self._sink)
        if self._listener:
            self._listener.close()
        if self._subscriber is not None:
            self._subscriber.close()
        if self._loop_thread is not None:
            self._loop_thread.close()
        self._dispatcher.clear()
        if self._owns_cluster:
            self.cluster.close()
        elif isinstance(self.cluster, RayCluster):
            self.cluster.close()
        self.status_enum = ClientStatus.CLOSED

    def shutdown(self):
        """Close the client and the cluster it started (never a cluster it joined)."""
        return self.close()


def _takes(function, name) -> bool:
    """Whether ``function`` has a parameter called ``name`` (Dask's ``has_arg``)."""
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _demand(options) -> dict:
    """What a task holds while it runs, in Ray's resource names (for the priority gate's window)."""
    if not options:
        return {"CPU": 1.0}
    demand = {"CPU": float(options.get("num_cpus", 1))}
    if options.get("num_gpus"):
        demand["GPU"] = float(options["num_gpus"])
    for name, amount in (options.get("resources") or {}).items():
        demand[name] = float(amount)
    return demand


def _on_secede(client):
    """The listener's callback for a task that waits on its children; it holds the client
    weakly, so the listener's thread keeps no client alive."""
    ref = weakref.ref(client)

    def on_secede(task_id):
        c = ref()
        if c is not None:
            c._seceded(task_id)

    return on_secede


def futures_of(obj, client=None) -> list:
    """Every Future inside ``obj`` (nested lists, tuples, sets, dicts, Dask collections), unique, in order.

    Args:
        client: as Dask's: when given, cancelled futures among them raise.
    Raises:
        FuturesCancelledError: with ``client``, if some of the futures were
            cancelled (one group per reason, largest first), as Dask.
    """
    futures = structure.futures_of(obj, Future)
    if client is not None:
        by_reason: dict = {}
        for f in futures:
            exc = f._state.exception
            if f.cancelled() and isinstance(exc, FutureCancelledError):
                by_reason.setdefault(exc.reason, []).append(exc)
        if by_reason:
            raise FuturesCancelledError([CancelledFuturesGroup(errors=errors, reason=reason)
                                         for reason, errors in by_reason.items()])
    return futures


def ensure_default_client(client):
    """Make ``client`` the default client (``distributed.client.ensure_default_client``)."""
    _context.set_default(client)


@contextlib.contextmanager
def temp_default_client(c):
    """The default client is ``c`` inside the ``with`` block, the previous one again after it.

    As Dask's (meant for tests; not thread- or task-local).

    Raises:
        ValueError: if there is no default client to go back to, as Dask.
    """
    old = _context.default_client()
    _context.set_default(c)
    try:
        yield
    finally:
        _context.set_default(old)


def fire_and_forget(obj):
    """Run the futures in ``obj`` to completion even if every handle is dropped."""
    for f in futures_of(obj):
        client = f.client
        st = f._state
        client._keys.keep(st)
        if st.add_waiter(quick(lambda s, keys=client._keys: keys.unkeep(s))):
            st.watch(client._settler)
        else:
            client._keys.unkeep(st)


_cluster.client_class = Client  # Cluster.get_client builds this (the cluster cannot import its client)
