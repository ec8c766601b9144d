"""Debugging a task here, in the client's process (Dask's ``recreate_error_locally``/``recreate_task_locally``).

A task's :class:`~raydask.scheduling.TaskSpec` (function, packed arguments,
input states) stays on its state while it is pending or failed.  To run it
here, its inputs' values are fetched from the cluster and put where the
futures were, and the function is called in this thread, so a debugger stops
in the user's code.
"""

from __future__ import annotations

import ray
import ray.exceptions

from . import limits
from .calling import call
from .errors import unwrap
from .future import Status, has_failed
from .scheduling import refresh

__all__ = ["blame", "run_here", "settled"]


def settled(states) -> list:
    """``states``, each waited for until its task ended (held ones until the gate releases them)."""
    for st in states:
        if st.ref is None and st.status is Status.PENDING:
            st.wait_dispatched()
    refresh(states, timeout=None)
    return states


def blame(states):
    """The state whose task raised, for the first failed of ``states`` (None if none failed).

    Dask's ``exception_blame``: a task that failed because an input failed
    points at that input, and so on up the chain.
    """
    failed = [st for st in states if st.status in (Status.ERROR, Status.LOST)]
    if not failed:
        return None
    st = failed[0]
    while st.spec is not None:
        dep = next((d for d in st.spec.deps if has_failed(d)), None)
        if dep is None:
            break
        st = dep
    return st


def run_here(st):
    """Call ``st``'s task in this thread with its inputs' values from the cluster; its result.

    Raises:
        ValueError: if the task's function and arguments are gone (it finished).
    """
    spec = st.spec
    if spec is None:
        raise ValueError(
            f"cannot recreate {st.key!r} locally: its task {st.status.value}, and raydask keeps a "
            "task's function and arguments only while it is pending or failed")
    try:
        values = ray.get([d.ref for d in spec.deps])
    except ray.exceptions.RayError as err:
        raise unwrap(err) from None
    args, kwargs = spec.local_call(values)
    func = spec.func.func if isinstance(spec.func, limits.Limited) else spec.func  # no time limit here
    return call(func, args, kwargs)
