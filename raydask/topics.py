"""Structured events by topic: ``Client.log_event`` / ``get_events`` (and a task's
``get_worker().log_event``).

Dask's scheduler keeps a bounded log per topic (its ``Broker``), shared by
every client and task; raydask keeps it in the coordination actor
(:mod:`raydask.coordinator`), one ``deque`` per topic holding the last
:data:`MAXLEN` events as ``(time, msg)``.  A message must be what Dask accepts,
a msgpack-encodable value (None, str, bool, bytes, int, float, lists and tuples
of those, dicts with string keys), so the actor stores it as it is.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from functools import partial

from .coordinator import call, ensure_connected

__all__ = ["MAXLEN", "TopicStore", "get_events", "log_event"]

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
    """The actor-side log: ``{topic: deque of (time, msg)}``, each bounded by :data:`MAXLEN`."""

    def __init__(self):
        self.topics: defaultdict = defaultdict(partial(deque, maxlen=MAXLEN))
        self.lock = threading.Lock()

    def publish(self, topics, msg):
        event = (time.time(), msg)  # the store's clock, as Dask's events carry the scheduler's
        with self.lock:
            for topic in topics:
                self.topics[topic].append(event)

    def events(self, topic):
        with self.lock:
            if topic is not None:
                return tuple(self.topics.get(topic, ()))
            return {name: tuple(events) for name, events in self.topics.items() if events}


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
