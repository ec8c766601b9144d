"""The keys a client holds: one shared :class:`~raydask.future.FutureState` per key.

Dask's scheduler keeps a key while some client *wants* it; here each client
keeps its own keys.  Every :class:`~raydask.future.Future` of a key in one
client shares the key's state, and the state counts those Futures: when the
last one goes, the key is forgotten (a later ``submit`` of the same call runs
again) and the state drops its Ray reference, so Ray frees the value.
``fire_and_forget`` keeps a state alive without any Future until its task ends.
"""

from __future__ import annotations

import threading

__all__ = ["Registry"]


class Registry:
    """``{key: state}`` of one client, with the Futures' reference counts.

    ``lock`` guards the mapping and the counts; the client shares it for its
    own bookkeeping.  ``states`` is the mapping itself, for readers that hold
    the lock or accept a moment's staleness (a ``dict`` read is atomic).
    """

    def __init__(self):
        self.lock = threading.RLock()
        self.states: dict = {}
        self.keep_alive: set = set()  # states of fire_and_forget futures, until their tasks end

    def get(self, key):
        """The state of ``key``, or None."""
        return self.states.get(key)

    def put(self, state) -> None:
        """Hold ``state`` under its key (replacing a state the key had)."""
        with self.lock:
            self.states[state.key] = state

    def adopt(self, state):
        """The state this client holds for ``state.key``, and whether that is ``state`` itself, now held.

        For a Future made without this client (unpickled, handed over) that is
        bound to it: every Future of a key in one client shares one state.
        """
        with self.lock:
            own = self.states.get(state.key)
            if own is not None:
                return own, False
            self.states[state.key] = state
            return state, True

    def retain(self, state) -> None:
        """One more Future of ``state``."""
        with self.lock:
            state.refcount += 1

    def release(self, state) -> bool:
        """One Future of ``state`` fewer; True if it was the last (the key is forgotten)."""
        with self.lock:
            state.refcount -= 1
            if state.refcount > 0:
                return False
            if self.states.get(state.key) is state:
                del self.states[state.key]
        return True

    def forget(self, state) -> None:
        """Forget ``state``'s key if ``state`` is what it holds (a cancelled or refused task)."""
        with self.lock:
            if self.states.get(state.key) is state:
                del self.states[state.key]

    def snapshot(self) -> list:
        """The states held now."""
        with self.lock:
            return list(self.states.values())

    def clear(self) -> list:
        """Forget every key (and every fire-and-forget hold); the states that were held."""
        with self.lock:
            states = list(self.states.values())
            self.states.clear()
            self.keep_alive.clear()
        return states

    def keep(self, state) -> None:
        """Hold ``state`` without a Future until :meth:`unkeep` (``fire_and_forget``)."""
        with self.lock:
            self.keep_alive.add(state)

    def unkeep(self, state) -> None:
        self.keep_alive.discard(state)
