"""Event: a named flag that clients and tasks wait on (``distributed.Event``).

(Not ``events.py``: that is the dashboard's log of what happened to tasks.)
The flag lives in the coordination actor (:mod:`raydask.coordinator`); a
``wait`` on a clear flag waits in a thread of the actor's "wait" group.
"""

from __future__ import annotations

import threading

from .coordinator import call, check_name, ensure_connected, wait
from .keys import parse_timedelta

__all__ = ["Event", "EventStore"]


class EventStore:
    """The actor-side state of every Event: the names whose flag is set."""

    def __init__(self):
        self.flags: set = set()
        self.sets: dict = {}  # name -> how many times set() was called
        self.changed = threading.Condition()

    def set(self, name):
        with self.changed:
            self.flags.add(name)
            self.sets[name] = self.sets.get(name, 0) + 1
            self.changed.notify_all()

    def clear(self, name):
        with self.changed:
            self.flags.discard(name)

    def is_set(self, name):
        return name in self.flags

    def wait(self, name, timeout):
        # a set() while we wait wakes us even if a clear() follows it at once (asyncio.Event's rule)
        with self.changed:
            seen = self.sets.get(name, 0)
            return self.changed.wait_for(lambda: name in self.flags or self.sets.get(name, 0) != seen, timeout)


class Event:
    """A named flag, False at first, shared by every client and task of the cluster.

    Args:
        name: the name other processes use to find it; a fresh one if None.
        client: the client to use; by default the default client (in a task, Ray
            is already connected).

    Differences from dask.distributed:
        ``name`` must be a string.
    """

    def __init__(self, name=None, client=None):
        self.name = check_name(name, "event")
        self._client = client

    def wait(self, timeout=None):
        """Wait until the flag is set; True if it is, False if ``timeout`` seconds passed first."""
        seconds = parse_timedelta(timeout)
        ensure_connected(self._client, "Event")
        if call(EventStore, "is_set", self.name):
            return True
        return seconds != 0 and wait(EventStore, "wait", self.name, timeout=seconds, miss=False)

    def set(self):
        """Set the flag: every waiter wakes."""
        ensure_connected(self._client, "Event")
        call(EventStore, "set", self.name)

    def clear(self):
        """Clear the flag: waiters block again."""
        ensure_connected(self._client, "Event")
        call(EventStore, "clear", self.name)

    def is_set(self):
        """Whether the flag is set."""
        ensure_connected(self._client, "Event")
        return call(EventStore, "is_set", self.name)

    def __reduce__(self):
        return Event, (self.name,)

    def __repr__(self):
        return f"<Event: {self.name!r}>"
