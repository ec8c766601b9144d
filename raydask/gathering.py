"""``gather``: many futures' values in one Ray call, put back where the futures were.

The values come from Ray's object store (``ray.get`` of the refs); fetching a
value also settles its state, so ``status`` and the dashboard know that a
gathered task ended without a completion callback.  The work is written as
steps (:mod:`raydask.awaiting`), so the same code serves the blocking client
and the asynchronous one.
"""

from __future__ import annotations

import ray
import ray.exceptions

from . import structure
from .awaiting import dispatched, get, get_one
from .errors import fresh, unwrap
from .future import Future, Status, has_failed, notify

__all__ = ["gather_steps", "fetch", "settle_fetched"]


def gather_steps(futures, found, errors):
    """Steps to ``futures`` (any nesting) with the values of ``found`` (the Futures in it) in place."""
    states = {}
    for f in found:
        states.setdefault(f.key, f._state)
    values, bad = yield from fetch(list(states.values()), errors)
    return _substitute(futures, values, bad)


def fetch(states, errors):
    """Steps to ``({key: value}, {bad keys})`` for ``states``, in one Ray call where possible.

    Args:
        errors: ``"raise"`` the first failure (as Dask, with the task's
            traceback), or ``"skip"``: failed keys go to the bad set.
    """
    held = [st for st in states if st.ref is None]
    if held:  # held by the priority gate: wait until they are Ray tasks
        yield dispatched(held)
    bad = set()
    for st in states:
        if st.status is Status.CANCELLED:
            if errors == "raise":
                raise fresh(st.exception)
            bad.add(st.key)
    live = [st for st in states if st.key not in bad]
    if errors == "raise":
        try:
            values = yield get([st.ref for st in live])
        except ray.exceptions.RayError as err:
            failed = next((st for st in live if has_failed(st)), None)
            if failed is not None and failed.exception is not None:
                raise fresh(failed.exception) from None
            raise unwrap(err, failed.key if failed else None, ref=failed.ref if failed else None) from None
        settle_fetched(live)
        return dict(zip((st.key for st in live), values)), bad
    values = {}
    for st in live:
        try:
            values[st.key] = yield get_one(st.ref)
        except ray.exceptions.RayError as err:
            bad.add(st.key)
            notify(st.settle_from_outcome(err), st)
    settle_fetched([st for st in live if st.key not in bad])
    return values, bad


def settle_fetched(states) -> None:
    """Settle pending ``states`` whose values were fetched: their tasks finished.

    Their records (where and when they ran) arrive with their receipts
    (:mod:`raydask.receipts`), read if asked for (``FutureState.load_record``).
    """
    for st in states:
        if st.status is Status.PENDING and st.ref is not None:
            notify(st.settle(Status.FINISHED), st)


def _substitute(obj, values, bad):
    """Put values where the futures were.  With ``errors="skip"``, as Dask: a failed
    future is dropped from a top-level list and becomes None anywhere else."""
    if isinstance(obj, list) and bad:
        obj = [v for v in obj if not (isinstance(v, Future) and v.key in bad)]
    return structure.walk(obj, lambda x: values.get(x.key) if isinstance(x, Future) else structure.KEEP)
