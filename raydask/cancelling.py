"""Cancelling, restarting and retrying a client's tasks, with their dependents, as Dask's scheduler does.

Dask cancels the dependents of a cancelled future and retries the failed
inputs of a retried one; Ray knows neither (it would run a cancelled task's
dependents, or fail them with a cancellation error nobody reads).  So the
walk over dependencies happens here, over the keys of one client's
:class:`~raydask.registry.Registry`, and only the Ray calls that are safe are
made (RAY-NOTES: cancelling a task whose small input is still pending can
crash the driver).
"""

from __future__ import annotations

import threading

import ray

from .errors import FutureCancelledError
from .future import Status, has_failed, notify

__all__ = ["FORCE_GRACE", "cancel", "cancel_all", "force_later", "retry", "safe_to_cancel", "with_dependents"]

#: Seconds a cancelled running task may ignore Ray's interrupt before ``cancel(force=True)``
#: ends its worker process.
FORCE_GRACE = 2.0


def with_dependents(registry, states: dict) -> dict:
    """``states`` (``{key: state}``) plus every pending key of ``registry`` that depends on one of them."""
    pending = [st for st in registry.snapshot() if st.deps and st.status is Status.PENDING]
    wanted = dict(states)
    grew = True
    while grew:
        grew = False
        for st in pending:
            if st.key not in wanted and any(d in wanted for d in st.deps):
                wanted[st.key] = st
                grew = True
    return wanted


def safe_to_cancel(state) -> bool:
    """Whether ``ray.cancel`` may be used on ``state``'s task: every input is ready.

    RAY-NOTES: a pending small input can crash the driver when its consumer is cancelled.
    """
    deps = state.dep_states
    if len(deps) < len(state.deps):
        return False  # inputs we cannot see (a recorded or rebuilt state)
    if any(d.ref is None for d in deps):
        return False
    refs = [d.ref for d in deps]
    if not refs:
        return True
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
    return len(ready) == len(refs)


def _interrupt(ref) -> bool:
    try:
        ray.cancel(ref, force=False, recursive=False)
        return True
    except Exception:  # noqa: BLE001 - already finished or gone
        return False


def cancel(registry, gate, states: dict, reason, msg=None) -> list:
    """Cancel ``states`` and their pending dependents; the states whose running tasks Ray interrupted.

    A task the priority gate still holds (``gate``) is forgotten: it never was a Ray task.
    """
    interrupted = []
    for st in with_dependents(registry, states).values():
        if st.status is not Status.PENDING:
            continue
        held = gate is not None and gate.discard(st)
        waiters = st.cancel(reason, msg)
        registry.forget(st)
        notify(waiters, st)
        if not held and st.ref is not None and safe_to_cancel(st) and _interrupt(st.ref):
            interrupted.append(st)
    return interrupted


def force_later(states) -> threading.Thread:
    """A started thread that kills the worker processes of ``states``' tasks still running after
    :data:`FORCE_GRACE` seconds (``cancel(force=True)``); the caller joins it on close."""
    refs = [st.ref for st in states]

    def run():
        _, running = ray.wait(refs, num_returns=len(refs), timeout=FORCE_GRACE, fetch_local=False)
        for ref in running:
            try:
                ray.cancel(ref, force=True, recursive=False)
            except Exception:  # noqa: BLE001 - ended meanwhile
                pass

    thread = threading.Thread(target=run, name="raydask-force-cancel", daemon=True)
    thread.start()
    return thread


def cancel_all(registry, gate, dispatcher) -> None:
    """Dask's ``restart`` for one client: every key forgotten, every future ``cancelled``.

    Tasks not yet done are cancelled in Ray where that is safe; held ones never reach Ray.
    """
    states = registry.snapshot()
    held = {st.key for st in states if gate is not None and gate.discard(st)}  # never Ray tasks
    stoppable = {st.key for st in states if st.key not in held and st.ref is not None
                 and st.status is Status.PENDING and safe_to_cancel(st)}
    registry.clear()
    for st in states:
        waiters = st.settle(Status.CANCELLED, exception=FutureCancelledError(
            st.key, "scheduler-restart", "Scheduler has restarted. Please re-run your work."), force=True)
        notify(waiters, st)
        if st.key in stoppable:
            _interrupt(st.ref)
    dispatcher.clear()


def retry(registry, dispatcher, states) -> None:
    """Run the failed ``states`` again under their keys, failed inputs first, then their failed dependents.

    As Dask's scheduler walks them: a future that failed because an input
    failed retries that input (and so on up the chain), and the failed futures
    of this client that depend on a retried one run again too.
    """
    order, seen = [], set()

    def roots_first(st):
        if id(st) in seen or st.spec is None or not has_failed(st):
            return
        seen.add(id(st))
        for dep in st.spec.deps:
            roots_first(dep)
        order.append(st)

    for st in states:
        roots_first(st)
    failed = [st for st in registry.snapshot() if st.spec is not None and st.deps
              and st.status in (Status.ERROR, Status.LOST) and id(st) not in seen]
    keys = {st.key for st in order}
    grew = True
    while grew:  # failed dependents of what runs again, in submission order
        grew = False
        for st in failed:
            if id(st) not in seen and any(k in keys for k in st.deps):
                seen.add(id(st))
                keys.add(st.key)
                order.append(st)
                grew = True
    for st in order:
        spec = st.spec
        st.retried(dispatcher.submit(spec.func, spec.packed, spec.top_level(), spec.options, spec.name))
