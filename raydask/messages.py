"""``print`` and ``warn`` inside tasks, shown by the clients: Dask's "print"/"warn" topics.

Dask's ``distributed.print`` in a task prints on the worker and sends an event
through the scheduler to every client, which prints the same text to its own
stdout (or stderr) -- plain, no prefix -- so a notebook shows what its tasks
print.  ``distributed.warn`` does the same with a warning.  raydask carries the
events through a store in the coordination actor (:mod:`raydask.coordinator`)::

    task: print("hi") ──> builtins.print (the worker's log)
              └────────> call(MessageStore, "publish", "print", {...})    numbered, last 1,000 kept
    client: raydask-messages thread ──> wait_once(MessageStore, "since", listener, n, t, 30 s)
              └─ each new event: builtins.print(...) / warnings.warn(...) in the client

A client listens from its first task on and sees every event published since
then, by tasks of any client of the cluster, as every Dask client sees the
topic.  It never makes the actor itself (see :class:`Listener`); once the actor
exists, it is a long poll, not a loop of sleeps: the actor answers as soon as
an event arrives, and closing the client wakes it.  Outside a task both are the
builtins.

The same log carries one event of raydask's own, "secede": a task that waits on
tasks it submitted (:func:`seceded`) tells the clients, so one that holds tasks
by priority frees its slot (:mod:`raydask.priority`).
"""

from __future__ import annotations

import builtins
import collections
import logging
import pickle
import sys
import threading
import time
import uuid
import warnings

import cloudpickle
import ray

from .context import in_task
from .coordinator import call, call_on, connect, existing, send_on

__all__ = ["Listener", "MessageStore", "print", "seceded", "warn"]

logger = logging.getLogger("raydask")

KEEP = 1000  # events the actor keeps for clients that fall behind
POLL = 30.0  # seconds one long poll lasts at most
LOOKUP = 1.0  # seconds between looking for the coordination actor while there is none


class MessageStore:
    """The actor-side log of print and warn events: ``(number, time, topic, payload)``."""

    def __init__(self):
        self.epoch = uuid.uuid4().hex  # a new actor (after its node died) starts numbering again
        self.events = collections.deque(maxlen=KEEP)
        self.seq = 0
        self.woken: set = set()  # listeners asked to return from their poll at once
        self.changed = threading.Condition()

    def publish(self, topic, payload):
        with self.changed:
            self.seq += 1
            self.events.append((self.seq, time.time(), topic, payload))
            self.changed.notify_all()

    def since(self, listener, after, not_before, timeout):
        """``(epoch, last number, events)``: those numbered past ``after`` and published at or
        after ``not_before``, once there is one (or ``listener`` was woken, or ``timeout`` seconds)."""
        with self.changed:
            self.changed.wait_for(lambda: self.seq > after or listener in self.woken, timeout)
            self.woken.discard(listener)
            news = [e for e in self.events if e[0] > after and e[1] >= not_before]
            return self.epoch, self.seq, news

    def wake(self, listener):
        """Answer ``listener``'s poll now, or its next one if it is not waiting yet (it closes)."""
        with self.changed:
            self.woken.add(listener)
            self.changed.notify_all()


# -- in a task ------------------------------------------------------------------------
def print(*args, sep=" ", end="\n", file=None, flush=False):  # noqa: A001 - Dask's name
    """``builtins.print``; inside a task, also printed by every client of the cluster.

    As Dask's ``distributed.print``: the arguments become text (``str``) in the
    task, and ``file`` may only be None, ``sys.stdout`` or ``sys.stderr`` there.

    Raises:
        TypeError: for another ``file`` inside a task.
    """
    if in_task():
        msg = {"args": tuple(map(str, args)), "sep": sep, "end": end, "flush": flush}
        if file is sys.stdout:
            msg["file"] = 1
        elif file is sys.stderr:
            msg["file"] = 2
        elif file is not None:
            raise TypeError(
                "Remote printing to arbitrary file objects is not supported. file kwarg must be "
                f"one of None, sys.stdout, or sys.stderr; got: {file!r}")
        call(MessageStore, "publish", "print", msg)
    builtins.print(*args, sep=sep, end=end, file=file, flush=flush)


def warn(message, category=UserWarning, stacklevel=1, source=None):
    """``warnings.warn``; inside a task, also issued in every client of the cluster.

    As Dask's ``distributed.warn``: the client issues the same message and
    category (its own filters apply); ``stacklevel`` and ``source`` act only here.
    """
    if in_task():
        call(MessageStore, "publish", "warn",
             {"message": cloudpickle.dumps(message), "category": cloudpickle.dumps(category)})
    warnings.warn(message, category, stacklevel + 1, source)


class _Reports:
    """What :func:`seceded` remembers in a worker process."""

    task_id = None  # the Ray task last reported
    looked = float("-inf")  # when the actor was last looked up (time.monotonic())
    conn = None  # the connection that lookup found; None: there was no actor then


def seceded() -> None:
    """Inside a task: tell the clients that it now waits on tasks it submitted.

    Ray gives a task's CPU back while it blocks on results, so the task should no
    longer count in the window of a client that holds tasks by priority
    (:meth:`raydask.priority.Gate.seceded`).  Published once per Ray task, and
    only if the coordination actor exists: a client makes it when it starts
    holding tasks, and no client that holds none needs to hear.  The actor is
    looked up at most once every ``LOOKUP`` seconds per process, which also
    finds a new actor after the old one went away.  Outside a task: nothing.
    """
    if not in_task():
        return
    task_id = ray.get_runtime_context().get_task_id()
    if task_id is None or task_id == _Reports.task_id:
        return
    now = time.monotonic()
    if now - _Reports.looked >= LOOKUP:
        _Reports.looked = now
        try:
            found = existing()
        except Exception:  # noqa: BLE001 - Ray going away; nothing to tell anyone
            found = None
        old = _Reports.conn
        if found is None or old is None or found.handle != old.handle:
            _Reports.conn = found  # (the same actor keeps its connection: its stores stay registered)
    conn = _Reports.conn
    if conn is None:
        return
    try:
        send_on(conn, "call", MessageStore, "publish", "secede", {"task": task_id})
        _Reports.task_id = task_id
    except Exception:  # noqa: BLE001 - the actor died: the next lookup finds its successor
        logger.debug("could not report a task that waits on its children", exc_info=True)
        _Reports.conn = None


# -- in the client ----------------------------------------------------------------------
class Listener:
    """The client's ``raydask-messages`` thread: shows the events tasks publish.

    It makes the coordination actor only after :meth:`make_actor`: until then, or
    until a task (or a primitive) has made it, the thread looks it up once a
    second (Ray tells nobody when a named actor appears), so a client whose tasks
    never print costs one name lookup a second and no actor.  Events are kept in
    the actor with their time, so those published before the thread found it are
    shown too.

    Args:
        on_secede: called in this thread with the Ray task id (hex) of each task
            that reported it waits on its children (:func:`seceded`).
    """

    def __init__(self, name="raydask-messages", on_secede=None):
        self._since = time.time()
        self._id = uuid.uuid4().hex  # names this listener's polls, so close() can answer them
        self._stop = threading.Event()
        self._poke = threading.Event()  # stop, or make_actor(): look again now
        self._make = False
        self._on_secede = on_secede
        self._conn = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def make_actor(self, make=True) -> None:
        """From now on make the coordination actor if there is none (in this thread, not the caller's).

        A client that holds tasks by priority needs it: its tasks report through it
        when they wait on their children, and only if it exists.  ``make=False``:
        only look for it again, as before.
        """
        self._make = make
        self._poke.set()

    def _run(self):
        epoch, after = None, 0
        while not self._stop.is_set():
            if self._conn is None:
                try:
                    self._conn = connect(MessageStore) if self._make else existing()
                except Exception:  # noqa: BLE001 - Ray going away under a closing client
                    self._conn = None
                    logger.debug("message listener: no coordination actor", exc_info=True)
                if self._conn is None:
                    self._poke.wait(LOOKUP)
                    self._poke.clear()
                    continue
                if self._stop.is_set():  # close() may have read no connection: it sent no wake-up
                    return
            try:
                new_epoch, last, events = call_on(self._conn, "wait", MessageStore, "since", self._id, after,
                                                  self._since, POLL)
            except Exception:  # noqa: BLE001 - the actor died, or Ray is going away: look it up again
                self._conn = None
                logger.debug("message listener: the coordination actor did not answer", exc_info=True)
                continue
            if new_epoch != epoch:  # another actor than before (or the first): its numbers start at 1
                if epoch is not None and after > 0:
                    epoch, after = new_epoch, 0
                    continue
                epoch = new_epoch
            after = last
            for _, _, topic, payload in events:
                if self._stop.is_set():
                    return
                try:
                    if topic == "secede":
                        if self._on_secede is not None:
                            self._on_secede(payload["task"])
                        continue
                    show(topic, payload)
                except Exception:  # noqa: BLE001 - a warning filter set to "error", a closed stdout
                    logger.exception("could not show a task's %s message", topic)

    def close(self, timeout=30.0):
        """Stop and join the thread (a waiting poll is answered at once, or the next one is).

        The timeout is long because a thread still inside a Ray call when Ray shuts
        down ends the process: the thread may be waiting for the actor it is making
        to start (:meth:`make_actor`), which took seconds on a loaded machine.
        """
        self._stop.set()
        self._poke.set()
        conn = self._conn
        if conn is not None:
            try:
                send_on(conn, "call", MessageStore, "wake", self._id)
            except Exception:  # noqa: BLE001 - Ray or the actor is gone already: the poll ends with it
                pass
        self._thread.join(timeout)


def show(topic, payload) -> None:
    """Print or warn in this process what a task printed or warned (Dask's client handlers)."""
    if topic == "print":
        file = {1: sys.stdout, 2: sys.stderr}.get(payload.get("file"))
        builtins.print(*payload["args"], sep=payload.get("sep"), end=payload.get("end"), file=file,
                       flush=bool(payload.get("flush")))
    elif topic == "warn":
        warnings.warn(pickle.loads(payload["message"]), category=pickle.loads(payload["category"]))
