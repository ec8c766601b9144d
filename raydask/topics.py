"""Structured events by topic: ``Client.log_event`` / ``get_events`` (and a task's
``get_worker().log_event``), and ``Client.subscribe_topic``.

Dask's scheduler keeps a bounded log per topic (its ``Broker``), shared by
every client and task; raydask keeps it in the coordination actor
(:mod:`raydask.coordinator`), one ``deque`` per topic holding the last
:data:`MAXLEN` events as ``(time, msg)``.  A message must be what Dask accepts,
a msgpack-encodable value (None, str, bool, bytes, int, float, lists and tuples
of those, dicts with string keys), so the actor stores it as it is.

Subscriptions are a long poll, not a loop of sleeps::

    client.subscribe_topic("t", handler) ──> call(TopicStore, "position")    events after now
    raydask-topics thread ──> wait_once(TopicStore, "since", id, {"t": 41}, 30 s)
        the actor answers as soon as topic "t" has an event past 41 (or a wake-up);
        each new (time, msg) goes to handler: in the thread, or on the loop of an
        asynchronous client (awaited there if it is a coroutine function)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
from collections import defaultdict, deque
from functools import partial

from .calling import run_coroutine
from .coordinator import call, call_async, ensure_connected, wait_once

__all__ = ["MAXLEN", "Subscriber", "TopicStore", "get_events", "log_event"]

logger = logging.getLogger("raydask")
POLL = 30.0  # seconds one long poll lasts at most
RETRY = 1.0  # seconds before polling again after the actor did not answer

#: Events kept per topic: Dask's ``distributed.admin.low-level-log-length`` default.
MAXLEN = 1000

_PLAIN = (str, bool, bytes, int, float, type(None))


def _dumpable(msg, depth=0) -> bool:
    """Dask's test for a loggable message (``distributed.client._is_dumpable``)."""
    t = type(msg)
    if t in _PLAIN:
        return True
    if depth > 100:
        return False
    if isinstance(msg, dict):
        return all(type(k) is str for k in msg) and all(_dumpable(v, depth + 1) for v in msg.values())
    if isinstance(msg, (list, tuple)):
        return all(_dumpable(v, depth + 1) for v in msg)
    return False


class TopicStore:
    """The actor-side log: ``{topic: deque of (number, (time, msg))}``, each bounded by :data:`MAXLEN`.

    Events are numbered across topics, so a subscriber asks for "what came
    after number n" and misses nothing between two polls.
    """

    def __init__(self):
        self.topics: defaultdict = defaultdict(partial(deque, maxlen=MAXLEN))
        self.epoch = uuid.uuid4().hex  # a new actor (its node died) numbers from 1 again
        self.seq = 0
        self.woken: set = set()  # subscribers asked to return from their poll at once
        self.changed = threading.Condition()

    def publish(self, topics, msg):
        with self.changed:
            self.seq += 1
            event = (time.time(), msg)  # the store's clock, as Dask's events carry the scheduler's
            for topic in topics:
                self.topics[topic].append((self.seq, event))
            self.changed.notify_all()

    def events(self, topic):
        with self.changed:
            if topic is not None:
                return tuple(e for _, e in self.topics.get(topic, ()))
            return {name: tuple(e for _, e in events) for name, events in self.topics.items() if events}

    def position(self):
        """``(epoch, number of the last event)``: where a new subscription starts."""
        with self.changed:
            return self.epoch, self.seq

    def since(self, subscriber, after, timeout):
        """``(epoch, [(number, topic, event)])`` of the topics in ``after`` ({topic: number}),
        once one has an event past its number (or a wake-up, or ``timeout`` seconds)."""

        def news():
            return any(self.topics[t][-1][0] > n for t, n in after.items() if self.topics.get(t))

        with self.changed:
            self.changed.wait_for(lambda: subscriber in self.woken or news(), timeout)
            self.woken.discard(subscriber)
            out = [(seq, t, e) for t, n in after.items() for seq, e in self.topics.get(t, ()) if seq > n]
            out.sort(key=lambda x: x[0])
            return self.epoch, out

    def wake(self, subscriber):
        """Answer ``subscriber``'s waiting poll now (it changed its topics, or it closes)."""
        with self.changed:
            self.woken.add(subscriber)
            self.changed.notify_all()


def _check_topics(topic) -> tuple:
    if isinstance(topic, str):
        return (topic,)
    if isinstance(topic, (list, tuple, set, frozenset)) and all(isinstance(t, str) for t in topic):
        return tuple(topic)
    raise TypeError(f"topic must be a string or a list of strings, got {topic!r}")


def log_event(client, topic, msg) -> None:
    """Append ``(now, msg)`` to each topic's log (``client``: None inside a task).

    Raises:
        TypeError: if ``msg`` is not msgpack-encodable (Dask's message) or ``topic``
            is not a string or a list of strings.
    """
    if not _dumpable(msg):
        raise TypeError(f"Message must be msgpack serializable. Got {type(msg)=} instead.")
    topics = _check_topics(topic)
    ensure_connected(client, "log_event")
    call(TopicStore, "publish", topics, msg)


def get_events(client, topic=None):
    """``((time, msg), ...)`` of ``topic``, oldest first; without a topic ``{topic: events}``
    for every topic that has any."""
    if topic is not None and not isinstance(topic, str):
        raise TypeError(f"topic must be a string or None, got {topic!r}")
    ensure_connected(client, "get_events")
    return call(TopicStore, "events", topic)


class Subscriber:
    """A client's ``raydask-topics`` thread: hands each new event of its topics to their handlers.

    Holds the handlers, never the client.  One long poll at a time on the
    coordination actor; subscribing to a new topic wakes it so the next poll
    includes that topic; :meth:`close` wakes it and joins the thread.
    """

    def __init__(self, name="raydask-topics"):
        self.id = uuid.uuid4().hex
        self._handlers: dict = {}  # topic -> (handler, event loop of an asynchronous client or None)
        self._after: dict = {}  # topic -> number of the last event seen
        self._epoch = None
        self._closed = False
        self._polling = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def subscribe(self, topic, handler, loop=None) -> None:
        """Send ``topic``'s events from now on to ``handler`` (replacing its handler, as Dask)."""
        epoch, position = call(TopicStore, "position")
        with self._changed:
            if topic in self._handlers:
                logger.info("Handler for %s already set. Overwriting.", topic)
            else:
                if self._epoch is None:
                    self._epoch = epoch
                self._after[topic] = position if epoch == self._epoch else 0
            self._handlers[topic] = (handler, loop)
            polling = self._polling
            self._changed.notify_all()
        if polling:
            call_async(TopicStore, "wake", self.id)

    def unsubscribe(self, topic) -> None:
        """Stop sending ``topic``'s events.

        Raises:
            ValueError: if nothing is subscribed to ``topic`` (Dask's message).
        """
        with self._changed:
            if topic not in self._handlers:
                raise ValueError(f"No event handler known for topic {topic}.")
            del self._handlers[topic]
            del self._after[topic]

    def _run(self):
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._closed or self._handlers)
                if self._closed:
                    return
                after = dict(self._after)
                self._polling = True
            try:
                epoch, events = wait_once(TopicStore, "since", self.id, after, POLL)
            except Exception:  # noqa: BLE001 - the actor died, or Ray is going away: try again
                logger.debug("topic subscriber: the coordination actor did not answer", exc_info=True)
                with self._changed:
                    self._polling = False
                    if self._changed.wait_for(lambda: self._closed, RETRY):
                        return
                continue
            with self._changed:
                self._polling = False
                if epoch != self._epoch:  # a new actor: its numbers start again, all it has is new
                    self._epoch = epoch
                    self._after = {t: 0 for t in self._after}
                    continue
                todo = []
                for seq, topic, event in events:
                    if topic in self._after and seq > self._after[topic]:
                        self._after[topic] = seq
                        todo.append((self._handlers[topic], event))
            for (handler, loop), event in todo:
                if self._closed:
                    return
                _deliver(handler, loop, event)

    def close(self, timeout=5.0) -> None:
        """Stop and join the thread (a waiting poll is answered at once)."""
        with self._changed:
            self._closed = True
            polling = self._polling
            self._changed.notify_all()
        if polling:
            try:
                call_async(TopicStore, "wake", self.id)
            except Exception:  # noqa: BLE001 - Ray or the actor is gone already: the poll ends with it
                pass
        self._thread.join(timeout)


def _deliver(handler, loop, event) -> None:
    """Call ``handler(event)``: here, or on an asynchronous client's ``loop`` (awaited if a coroutine)."""
    if loop is None:
        try:
            result = handler(event)
            if inspect.isawaitable(result):
                run_coroutine(result)
        except Exception:  # noqa: BLE001 - a handler's bug must not end the subscription
            logger.exception("topic handler %r failed", handler)
        return

    async def call_there():
        try:
            result = handler(event)
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001
            logger.exception("topic handler %r failed", handler)

    try:
        asyncio.run_coroutine_threadsafe(call_there(), loop)
    except RuntimeError:  # the loop was closed
        logger.debug("topic event dropped: the client's event loop is closed")
