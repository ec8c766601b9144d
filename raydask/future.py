"""Future: a handle on one task's result, shared by key.

Data flow for one key::

    submit ──> FutureState(ref) ──> Ray runs the task, stores its value (or its error)
                    │                                          │
                    │   raycompat.on_ready (Ray's thread)      │
                    └───── state.settle(): status <────────────┘
                                  │
                                  ├─ quick waiters, right there (as_completed, wait,
                                  │  progress, events): a short lock and a notify
                                  ├─ other waiters: raydask-settler thread
                                  ▼
                    raydask-callbacks thread: user add_done_callback functions

A task returns one object, its value.  Status questions are answered from the
value's ref without fetching it (:func:`raycompat.outcomes`: Ray stores a task's
error inline, marked in the object's metadata), so the value never travels to
the client unless the user asks for it.  Where and when the task ran, and what
it returned, arrive separately as its record (:mod:`raydask.receipts`).
Completion callbacks are registered only for futures somebody waits on, so
plain ``submit`` + ``gather`` pays nothing for them.
"""

from __future__ import annotations

import builtins
import enum
import threading
import time

import ray
import ray.exceptions

from .context import current_client
from .errors import FutureCancelledError, fresh, task_traceback, unwrap
from .raycompat import on_ready, outcomes, failed
from .receipts import STORE, WAIT, task_id_of
from .records import TaskRecord
from .awaiting import dispatched, get_one, in_loop, ready, run
from .keys import parse_timedelta, tokenizing, typename  # at module level: result() is on the hot path

__all__ = ["Future", "FutureState", "Status", "quick", "resolve_type"]


def quick(fn):
    """Mark a waiter as safe to run on Ray's callback thread.

    A quick waiter only takes short locks, appends, notifies or queues: it never
    blocks, calls Ray or runs user code (RAY-NOTES).  Running it where Ray's
    ready callback lands saves a hop through the settler thread for every watched future
    (measured: about a tenth of ``as_completed``'s client CPU).  Unmarked waiters
    run on the settler thread.
    """
    fn._raydask_quick = True
    return fn


def _is_quick(fn) -> bool:
    return getattr(getattr(fn, "__func__", fn), "_raydask_quick", False)


class Status(enum.Enum):
    """Lifecycle of a key; ``.value`` is the string Dask shows as ``future.status``."""

    PENDING = "pending"
    FINISHED = "finished"
    ERROR = "error"
    CANCELLED = "cancelled"
    LOST = "lost"


_last_stamp = [0.0]


def _stamp() -> float:
    """``time.time()``, the same float object for a millisecond: a pending task's submit
    time then costs it nothing (24 bytes each otherwise)."""
    now = time.time()
    last = _last_stamp[0]
    if now - last < 0.001:
        return last
    _last_stamp[0] = now
    return now


#: Locks the states share, picked by identity: a lock of its own cost each pending task
#: 88 bytes, and a state holds its lock only for a few assignments, never calling out.
_LOCKS = tuple(threading.Lock() for _ in range(64))
_NLOCKS = len(_LOCKS)

#: Bits of ``FutureState._flags``.
_SCATTERED, _DROPPED, _WATCHED = 1, 2, 4


class _OnDispatch:
    """A waiter for a held task's dispatch, kept among the state's outcome waiters."""

    __slots__ = ("event",)

    def __init__(self, event):
        self.event = event


def _take_dispatch_waiters(state) -> list:
    """Remove and return the events waiting for ``state``'s dispatch (hold its lock)."""
    waiters = state._waiters
    if not waiters:
        return []
    dispatch = [w.event for w in waiters if type(w) is _OnDispatch]
    if dispatch:
        state._waiters = [w for w in waiters if type(w) is not _OnDispatch]
    return dispatch


class FutureState:
    """The one state of one task: what every Future of its key, the priority gate,
    ``wait``/``as_completed``/``progress`` and the dashboard's log read.

    Stored facts, each written in one method:

    - ``ref``: the Ray ref of the value, None while the priority gate holds the
      task (it is not a Ray task yet); set once by :meth:`dispatched` (anew by
      :meth:`retried`, when a failed task runs again).
    - ``scattered``: data the client put into the object store (no task; finished from birth).
    - ``status``: the outcome, PENDING until :meth:`settle` records it once
      (:meth:`retried` makes a failed task PENDING again).
    - ``dropped``: the client let go of its last Future (:meth:`drop`).

    Everything else is derived: :meth:`phase` gives Dask's scheduler state
    (queued, waiting, processing, memory, erred, cancelled, lost, released) from
    those facts and the dependencies' states, so no second copy can disagree.
    A ``listener`` (the dashboard's event log) is told of every change.
    """

    # Every slot is 8 bytes for each pending task (10,000 pending futures are a
    # benchmark row): three flags share ``_flags``, the lock is picked by identity,
    # and the waiters for the dispatch share the list of the waiters for the outcome.
    __slots__ = (
        "key", "ref", "_flags", "_dep_keys", "dep_states", "status", "record", "exception",
        "priority", "submitted", "listener", "_waiters", "refcount", "spec", "__weakref__",
    )

    def __init__(self, key, ref, task=True, deps=(), dep_states=(), priority=0, listener=None, held=False):
        self.key = key
        self.ref = ref
        scattered = not (task or held)  # ``task``: a Ray task makes the value
        self._flags = _SCATTERED if scattered else 0
        self._dep_keys = deps  # None: the keys of ``dep_states`` (read from them while pending)
        self.dep_states = dep_states  # the dependencies' states while this one is pending (for phase())
        self.status = Status.FINISHED if scattered else Status.PENDING
        self.record: TaskRecord | None = None
        self.exception: BaseException | None = None
        self.priority = priority
        self.submitted = _stamp()
        self.listener = listener
        # () none yet, None once settled; an _OnDispatch among them waits for the dispatch only
        self._waiters: tuple | list | None = ()
        self.refcount = 0
        self.spec = None  # raydask.scheduling.TaskSpec while pending or failed: for retry, recreate

    @property
    def deps(self) -> tuple:
        """The dependencies' keys, for the graph and for safe cancelling."""
        keys = self._dep_keys
        return keys if keys is not None else tuple(d.key for d in self.dep_states)

    @property
    def scattered(self) -> bool:
        """Data the client put into the object store: no task made it, finished from birth."""
        return bool(self._flags & _SCATTERED)

    @property
    def dropped(self) -> bool:
        """The client let go of its last Future of this key (:meth:`drop`)."""
        return bool(self._flags & _DROPPED)

    @property
    def _lock(self):
        return _LOCKS[(id(self) >> 4) % _NLOCKS]

    @property
    def held(self) -> bool:
        """Pending and not yet handed to Ray (the priority gate holds it)."""
        return self.ref is None and self.status is Status.PENDING

    # -- the places state changes -------------------------------------------------------
    def dispatched(self, ref, settler=None) -> None:
        """The gate handed the task to Ray: record its ref, wake whoever waits for it."""
        with self._lock:
            if self.ref is not None:
                return
            self.ref = ref
            events = _take_dispatch_waiters(self)
            watch = self._flags & _WATCHED
        for event in events:
            event.set()
        if watch and settler is not None and self.status is Status.PENDING:
            on_ready(ref, lambda state=self: settler.arrived(state))
        listener = self.listener
        if listener is not None:
            listener(self)

    def settle(self, status, record=None, exception=None, force=False) -> list:
        """Record the outcome once; return the waiters to notify (outside the lock).

        ``force`` overrides an earlier outcome (``Client.restart`` cancels finished keys too).
        """
        with self._lock:
            if self.status is not Status.PENDING and not force:
                return []
            self.status, self.record, self.exception = status, record, exception
            events = _take_dispatch_waiters(self)
            waiters, self._waiters = self._waiters or [], None
            self._let_inputs_go()  # the graph keeps the keys; the states may go
        if status is Status.FINISHED or status is Status.CANCELLED:
            self.spec = None  # nothing to retry: its inputs (and their data) may go
        if record is None and status is Status.FINISHED and not self.scattered:
            task_id = task_id_of(self.ref)
            if task_id is not None:  # where and when it ran follows (raydask.receipts)
                STORE.claim(task_id, self)
        for event in events:  # settled while held (cancelled): nobody waits for refs any more
            event.set()
        listener = self.listener
        if listener is not None:
            listener(self)
        return waiters

    def _let_inputs_go(self) -> None:
        """Keep the inputs' keys, not their states (hold the lock).

        A pending state's ``dep_states`` hold its inputs' states, and so their refs:
        kept on a dropped task they pinned a whole chain's or tree's intermediate
        values in Ray's object store until the last task was seen to finish (raw
        Ray frees each as soon as its consumer ran).
        """
        if self._dep_keys is None:
            self._dep_keys = tuple(d.key for d in self.dep_states)
        self.dep_states = ()

    def retried(self, ref) -> bool:
        """The failed task runs again (``Future.retry``) under a new ref: pending once more.

        False (and no change) unless it had failed.
        """
        with self._lock:
            if self.status is not Status.ERROR and self.status is not Status.LOST:
                return False
            self.ref = ref
            self.status, self.record, self.exception = Status.PENDING, None, None
            self._waiters = ()
            self._flags &= ~_WATCHED
        listener = self.listener
        if listener is not None:
            listener(self)
        return True

    def drop(self) -> None:
        """The client released its last Future of this key (the task may still run)."""
        with self._lock:  # ``_flags`` is shared with watch(): a lost bit would keep the log's row live
            self._flags |= _DROPPED
            if self.listener is None:  # nobody shows its phase any more: its inputs' states may go
                self._let_inputs_go()
        self.spec = None
        listener = self.listener
        if listener is not None:
            listener(self)

    def settle_from_outcome(self, error=None) -> list:
        """Settle from how the task ended: ``error`` is what getting its value raised, None if it
        holds a value (:func:`raycompat.outcomes`)."""
        if error is None:
            return self.settle(Status.FINISHED)
        if isinstance(error, ray.exceptions.TaskCancelledError):
            # cancelled in Ray by somebody else: raydask's own cancels settled it already
            return self.settle(Status.CANCELLED, exception=FutureCancelledError(self.key))
        if isinstance(error, (ray.exceptions.ObjectLostError, ray.exceptions.OwnerDiedError)):
            return self.settle(Status.LOST, exception=unwrap(error, self.key, ref=self.ref))
        exc = unwrap(error, self.key, ref=self.ref)
        # the task wrapper attaches where and when it failed (the dashboard's task stream)
        where = getattr(exc, "_raydask_receipt", None)
        record = TaskRecord(*where) if isinstance(where, tuple) and len(where) == 6 else None
        return self.settle(Status.ERROR, record, exception=exc)

    def cancel(self, reason=None, msg=None) -> list:
        return self.settle(Status.CANCELLED, exception=FutureCancelledError(self.key, reason, msg))

    # -- derived views ------------------------------------------------------------------
    def phase(self) -> str:
        """Dask's scheduler state of the task, derived from the stored facts."""
        status = self.status
        if status is Status.PENDING:
            if self.ref is None:
                return "queued"
            if any(d.status is Status.PENDING for d in self.dep_states):
                return "waiting"
            return "processing"
        if status is Status.FINISHED:
            return "released" if self.dropped else "memory"
        if status is Status.CANCELLED:
            return "cancelled"
        return "erred"

    # -- observation --------------------------------------------------------------------
    def wait_dispatched(self, timeout=None) -> bool:
        """Block until the task has its Ray refs (or settled while held); False on timeout."""
        event = threading.Event()
        return event.wait(timeout) if self.on_dispatched(event) else True

    def on_dispatched(self, event) -> bool:
        """Call ``event.set()`` once the task has its Ray refs (or settled while held).

        False (and no call) if that already happened.  ``event`` is a
        ``threading.Event`` or an awaiting coroutine's :class:`~raydask.awaiting.LoopSignal`.
        """
        if self.ref is not None or self.status is not Status.PENDING:
            return False
        with self._lock:
            if self.ref is not None or self.status is not Status.PENDING:
                return False
            if self._waiters:
                self._waiters.append(_OnDispatch(event))
            else:
                self._waiters = [_OnDispatch(event)]
        return True

    def add_waiter(self, fn) -> bool:
        """Call ``fn(state)`` when settled; False (and no call) if already settled."""
        with self._lock:
            if self._waiters is None:
                return False
            if self._waiters:
                self._waiters.append(fn)
            else:
                self._waiters = [fn]
            return True

    def waited(self) -> bool:
        """Pending, and somebody waits for it to settle (:meth:`add_waiter`)."""
        waiters = self._waiters
        return bool(waiters) and any(type(w) is not _OnDispatch for w in waiters)

    def remove_waiter(self, fn) -> None:
        with self._lock:
            if self._waiters and fn in self._waiters:
                self._waiters.remove(fn)

    def watch(self, settler) -> None:
        """Ask Ray to tell ``settler`` when the value (or error) exists (once per state).

        A held task is watched from the moment it is dispatched.
        """
        with self._lock:
            if self._flags & _WATCHED or self.status is not Status.PENDING:
                return
            self._flags |= _WATCHED
            ref = self.ref
        if ref is not None:
            on_ready(ref, lambda state=self: settler.arrived(state))

    def poll(self) -> list:
        """Settle now if the task has ended (local, non-blocking Ray calls)."""
        if self.status is not Status.PENDING or self.ref is None:
            return []
        ready, _ = ray.wait([self.ref], timeout=0, fetch_local=False)
        if not ready:
            return []
        return self.settle_from_outcome(outcomes(ready)[0])

    def finish_from_value(self) -> None:
        """The value's ref resolved (``result``/``gather`` fetched it): the task finished.

        ``status``, ``done()`` and the dashboard stop asking Ray about it; the
        record comes with the receipt (:meth:`load_record`).
        """
        if self.status is Status.PENDING and self.ref is not None:
            notify(self.settle(Status.FINISHED), self)

    def load_record(self, wait=WAIT):
        """The record of a task that ran (where, when, what it returned), None if unknown.

        A finished task's record arrives with its receipt, a tenth of a
        second or so after the task ended (:mod:`raydask.receipts`), and is set
        here then (the state claimed it when it settled); this waits up to
        ``wait`` seconds for it.
        """
        if self.record is None and self.status is Status.FINISHED and not self.scattered:
            task_id = task_id_of(self.ref)
            if task_id is not None:
                STORE.wait(task_id, self, wait)
        return self.record


class Settler:
    """Runs settlements and user callbacks on raydask's own threads, never Ray's.

    Ray calls completion callbacks on an internal C++ thread where blocking is
    unsafe (RAY-NOTES); this hands each result to a named thread instead.
    """

    def __init__(self, name="raydask"):
        import queue

        self._queue = queue.SimpleQueue()
        self._user_queue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, args=(self._queue, _call),
                             name=f"{name}-settler", daemon=True),
            threading.Thread(target=self._run, args=(self._user_queue, _call),
                             name=f"{name}-callbacks", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def arrived(self, state) -> None:
        """A task's value or error exists (called on Ray's callback thread): settle, notify
        quick waiters.

        Failures are settled on the settler thread: getting the error and
        unpacking its remote traceback is slower, and the common case should not
        wait behind it.
        """
        if failed([state.ref])[0]:
            self._queue.put((self._settle, (state,)))
            return
        waiters = state.settle(Status.FINISHED)
        slow = [w for w in waiters if not _is_quick(w)]
        for waiter in waiters:
            if not slow or _is_quick(waiter):
                waiter(state)
        if slow:
            self._queue.put((notify, (slow, state)))

    def call_soon(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the user-callback thread."""
        self._user_queue.put((fn, args))

    @staticmethod
    def _settle(state):
        for waiter in state.settle_from_outcome(outcomes([state.ref])[0]):
            waiter(state)

    @staticmethod
    def _run(q, handler):
        while True:
            item = q.get()
            if item is None:
                return
            try:
                handler(*item)
            except Exception:  # a broken callback must not stop the thread
                import logging

                logging.getLogger("raydask").exception("error in callback")

    def close(self, timeout=5) -> None:
        self._queue.put(None)
        self._user_queue.put(None)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)


def _call(fn, args):
    fn(*args)


def notify(waiters, state) -> None:
    for waiter in waiters:
        waiter(state)


def has_failed(state) -> bool:
    """Whether ``state``'s task is known to have failed (settling it if it ended)."""
    if state.status is Status.PENDING:
        notify(state.poll(), state)
    return state.status in (Status.ERROR, Status.LOST)


class Future:
    """A remotely running computation (``distributed.Future``'s API).

    Every Future of a key shares one :class:`FutureState`; the task is released
    when the last of them is garbage-collected (or :meth:`release` is called).

    Differences from dask.distributed:
        ``Future.type`` is a string, the class's qualified name, where the
        class cannot be imported in the client (Dask gives None there).  A Future inside an object Dask does not look into (not a list, tuple,
        set or dict) still works in the task that receives it; Dask's raises
        ``RuntimeError`` there.
    """

    __slots__ = ("_state", "_client", "_released", "__weakref__")

    #: Dask's duck-typed protocol for futures of other schedulers: inside a Dask graph
    #: (``delayed(f)(future)``, ``dd.from_delayed(futures)``) a Future is a dependency on its key.
    __dask_future__ = True

    def __init__(self, state: FutureState, client=None):
        self._state = state
        self._client = client
        self._released = False
        if client is not None:
            client._retain(state)

    # -- identity ---------------------------------------------------------------------
    @property
    def key(self):
        return self._state.key

    @property
    def _raydask_token(self):  # how keys.tokenize sees a future: by key
        return self._state.key

    @property
    def client(self):
        if self._client is None:
            self._client = current_client()
        return self._client

    def bind_client(self, client):
        """Make ``client`` this Future's client, as Dask's ``bind_client``.

        For a Future that arrived without one (unpickled, taken out of a structure
        built elsewhere): it joins the keys ``client`` holds, sharing the state of
        the key if the client has it, and keeps the key alive there while it lives.

        Raises:
            TypeError: if ``client`` is not a raydask Client.
        """
        if not hasattr(client, "_adopt"):
            raise TypeError(f"bind_client expects a raydask Client, got {client!r}")
        if client is self._client and not self._released:
            return
        if self._client is not None and not self._released:
            self._client._release(self._state)
        self._state = client._adopt(self._state)
        self._client = client
        self._released = False
        client._retain(self._state)

    @property
    def executor(self):
        """The client that runs this Future's task (Dask's ``Future.executor``: the client)."""
        return self.client

    # -- status -----------------------------------------------------------------------
    @property
    def status(self) -> str:
        st = self._state
        if st.status is Status.PENDING:
            notify(st.poll(), st)
        return st.status.value

    def done(self) -> bool:
        """True once the task finished, failed or was cancelled."""
        return self.status != "pending"

    def cancelled(self) -> bool:
        return self._state.status is Status.CANCELLED

    @property
    def type(self):
        """The result's class (None until finished), as in Dask.

        The task reports the class by name; the client looks it up, importing
        its module as unpickling would.  A class it cannot find (its module is
        not importable here, or it was defined inside a function) stays a
        string, its qualified name.
        """
        if self.status != "finished" or self._state.load_record() is None:
            return None
        return resolve_type(self._state.record.type)

    # -- results ----------------------------------------------------------------------
    def result(self, timeout=None):
        """Wait for and return the result; raise the task's exception if it failed.

        With an asynchronous client (inside its event loop) this returns a
        coroutine, as in Dask; ``await future`` works with any client.

        Raises:
            FutureCancelledError: if the future was cancelled.
            TimeoutError: if ``timeout`` seconds pass first.
        """
        try:
            return run(_result_steps(self._state, timeout), self._asynchronous())
        except Exception as exc:
            if task_traceback(exc) is None:
                raise
            # the task's own exception: shown as Dask shows it, the caller, this frame
            # and the task's frames (not raydask's waiting machinery in between)
            raise fresh(exc)

    def exception(self, timeout=None):
        """Return the task's exception, or None if it succeeded or was cancelled.

        Waits for the task to end, as Dask does (a coroutine with an asynchronous client).
        """
        return run(_exception_steps(self._state, timeout), self._asynchronous())

    def traceback(self, timeout=None):
        """Return the traceback object of the task's exception (the task's frames), or None."""
        return run(_traceback_steps(self._state, timeout), self._asynchronous())

    def __await__(self):
        return run(_result_steps(self._state, None), True).__await__()

    def _asynchronous(self) -> bool:
        client = self._client
        return client is not None and client._asynchronous and in_loop()

    # -- control ----------------------------------------------------------------------
    def cancel(self, reason=None, msg=None, **kwargs):
        """Cancel the task; see ``Client.cancel``."""
        self.client.cancel([self], reason=reason, msg=msg, **kwargs)

    def retry(self, **kwargs):
        """Run the task again if it failed (``Client.retry``); same key, same Future."""
        return self.client.retry([self], **kwargs)

    def add_done_callback(self, fn):
        """Call ``fn(future)`` once the future is done, on a raydask thread."""
        if not callable(fn):
            raise TypeError(f"add_done_callback expects a callable, got {fn!r}")
        client = self.client
        settler = client._settler
        st = self._state
        if st.add_waiter(quick(lambda _st, fut=self: settler.call_soon(fn, fut))):
            st.watch(settler)  # a held task is watched once it is dispatched
        else:
            settler.call_soon(fn, self)

    def release(self):
        """Drop this handle's claim on the key (as when it is garbage-collected)."""
        if not self._released:
            self._released = True
            if self._client is not None:
                self._client._release(self._state)

    def __del__(self):
        try:
            self.release()
        except Exception:  # interpreter shutdown
            pass

    # -- pickling: a Future inside a task argument works in the task ----------------
    def __reduce__(self):
        st = self._state
        if tokenizing():  # hashing a structure that holds a future: the key says it all
            return str, (f"<Future {st.key!r}>",)
        if st.ref is None:  # held: a task can only receive it once it is a Ray task
            st.wait_dispatched()
        return _rebuild_future, (st.key, st.ref, not st.scattered)

    # -- reprs ------------------------------------------------------------------------
    def __repr__(self):
        status = self.status
        typ = self.type
        if typ is not None:
            return f"<Future: {status}, type: {typename(typ) if isinstance(typ, type) else typ}, key: {self.key}>"
        return f"<Future: {status}, key: {self.key}>"

    def _repr_html_(self):
        import html

        status = self.status
        colour = {"finished": "green", "error": "red", "cancelled": "gray", "lost": "gray"}.get(status, "black")
        typ = self.type
        type_part = ""
        if typ is not None:
            type_part = f", <strong>type</strong>: {html.escape(typename(typ) if isinstance(typ, type) else typ)}"
        return (
            f"<strong>Future: {html.escape(str(self.key))}</strong> "
            f'<span style="color: var(--jp-ui-font-color2, gray)"> status: </span>'
            f'<span style="color: {colour}">{status}</span>{type_part},'
            f' <span style="color: var(--jp-ui-font-color2, gray)"> key: </span>{html.escape(str(self.key))}'
        )

def _result_steps(st, timeout):
    """``Future.result`` written once (see :mod:`raydask.awaiting`)."""
    limit = parse_timedelta(timeout)
    if st.ref is None:  # held by the priority gate: wait for it to become a Ray task
        limit = yield from _dispatched_within(st, limit, timeout)
    if st.status in (Status.CANCELLED, Status.ERROR, Status.LOST) and st.exception is not None:
        raise fresh(st.exception) from None
    try:
        value = yield get_one(st.ref, limit)
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError(f"Future {st.key!r} did not finish within {timeout!r}") from None
    except ray.exceptions.RayError as err:
        # The value's failure is the task's.  Settle now: ``status`` must not
        # say "pending" after ``result()`` raised.
        notify(st.settle_from_outcome(err), st)
        if st.status is not Status.FINISHED and st.exception is not None:
            raise fresh(st.exception) from None
        raise unwrap(err, st.key, ref=st.ref) from None
    if st.status is Status.PENDING:
        st.finish_from_value()
    return value


def _exception_steps(st, timeout):
    if st.status is Status.PENDING:
        limit = parse_timedelta(timeout)
        if st.ref is None:
            limit = yield from _dispatched_within(st, limit, timeout)
        if st.status is Status.PENDING:
            if not (yield ready(st.ref, limit)):
                raise TimeoutError(f"Future {st.key!r} did not finish within {timeout!r}")
            notify(st.settle_from_outcome(outcomes([st.ref])[0]), st)
    return st.exception if st.status in (Status.ERROR, Status.LOST) else None


def _traceback_steps(st, timeout):
    exc = yield from _exception_steps(st, timeout)
    if exc is None:
        return None
    return task_traceback(exc) or exc.__traceback__


def _dispatched_within(st, limit, timeout):
    """Wait until a held task is a Ray task; return what is left of ``limit``.

    Raises:
        TimeoutError: if ``limit`` seconds pass first.
    """
    started = time.monotonic()
    if not (yield dispatched([st], limit)):
        raise TimeoutError(f"Future {st.key!r} did not finish within {timeout!r}")
    return None if limit is None else max(0.0, limit - (time.monotonic() - started))


_types: dict = {}  # type name -> the class (or the name where there is none), looked up once
_builtins_by_name: dict = {}


def resolve_type(name: str):
    """The class :func:`raydask.keys.typename` named ``name``; ``name`` itself if not found here.

    Builtins (``int``, ``NoneType``, ``function``) are found by name; others by
    importing the module and following the qualified name, trying the longest
    module prefix first (``a.b.C`` may be class ``C`` of ``a.b`` or ``b.C`` of ``a``).
    """
    try:
        return _types[name]
    except KeyError:
        pass
    found = _builtin_types().get(name) if "." not in name else _import_type(name)
    _types[name] = found if found is not None else name
    return _types[name]


def _builtin_types() -> dict:
    if not _builtins_by_name:
        import types

        _builtins_by_name.update({t.__qualname__: t for t in (*vars(builtins).values(), *vars(types).values())
                                  if isinstance(t, type) and t.__module__ == "builtins"})
    return _builtins_by_name


def _import_type(name: str):
    import importlib
    import sys

    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = sys.modules.get(module_name) or importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - not importable in this process
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        if isinstance(obj, type):
            return obj
    return None


def _rebuild_future(key, ref, task):
    return Future(FutureState(key, ref, task), client=None)
