"""Variable: one named value that clients and tasks share (``distributed.Variable``).

The value lives in the coordination actor (:mod:`raydask.coordinator`),
pickled.  A raydask Future stored there travels as its Ray refs
(``Future.__reduce__``), so the actor *borrows* the task's result: Ray keeps the data alive while the
Variable holds it, and ``get`` anywhere on the cluster gives a Future whose
``result()`` fetches it.  Other values travel by value.
"""

from __future__ import annotations

import threading

from .coordinator import WaitTimeout, call, check_name, ensure_connected, pack, unpack, wait
from .keys import parse_timedelta

__all__ = ["Variable", "VariableStore"]


class VariableStore:
    """The actor-side state of every Variable: name -> the packed value (``coordinator.pack``)."""

    def __init__(self):
        self.values: dict = {}
        self.changed = threading.Condition()

    def set(self, name, blob):
        with self.changed:
            self.values[name] = blob
            self.changed.notify_all()

    def get(self, name):
        """The packed value, or None if there is none (never waits)."""
        return self.values.get(name)

    def wait_get(self, name, timeout):
        """The packed value once there is one; None if ``timeout`` seconds pass first."""
        with self.changed:
            if self.changed.wait_for(lambda: name in self.values, timeout):
                return self.values[name]
        return None

    def delete(self, name):
        with self.changed:
            self.values.pop(name, None)


class Variable:
    """A named value shared by every client and task of the cluster.

    Args:
        name: the name other processes use to find it; a fresh one if None.
        client: the client to use; by default the default client (in a task, Ray
            is already connected).

    Differences from dask.distributed:
        Any picklable value may be stored, not only msgpack-encodable ones; it is
        kept in the coordination actor's memory, so keep it small (store a
        Future of large data instead).  ``name`` must be a string.  The data of a
        stored Future lives in Ray's object store, owned by the process that
        submitted its task: it stays alive while stored as long as that process
        runs (see docs/migrating.md).
    """

    def __init__(self, name=None, client=None):
        self.name = check_name(name, "variable")
        self._client = client

    def set(self, value, timeout="30 s"):
        """Store ``value`` (a Future or any picklable object), replacing the old one.

        ``timeout`` is accepted as Dask's is (how long to wait for a Future's key
        to be known); a raydask Future is always known, so nothing waits.
        """
        parse_timedelta(timeout)
        ensure_connected(self._client, "Variable")
        blob = pack(value)
        call(VariableStore, "set", self.name, blob)

    def get(self, timeout=None):
        """Return the value, waiting up to ``timeout`` seconds (None: forever) until one is set.

        Raises:
            TimeoutError: if no value is set within ``timeout``.
        """
        seconds = parse_timedelta(timeout)
        ensure_connected(self._client, "Variable")
        blob = call(VariableStore, "get", self.name)
        if blob is None and seconds != 0:
            blob = wait(VariableStore, "wait_get", self.name, timeout=seconds)
        if blob is None:
            raise WaitTimeout(f"Variable {self.name!r} was not set within {timeout!r}")
        return unpack(blob)

    def delete(self):
        """Forget the value (for every process using this name)."""
        ensure_connected(self._client, "Variable")
        call(VariableStore, "delete", self.name)

    def __reduce__(self):
        return Variable, (self.name,)

    def __repr__(self):
        return f"<Variable: {self.name!r}>"
