"""Direct submission: the default task spec worked out once, handed to Ray's core worker.

``RemoteFunction._remote`` recomputes the same things on every call: it fills
every task option with its default, turns them into resources, looks for a
placement group to capture, checks the arguments against the function's
signature and wraps tracing around the call.  That was 13 µs of a 50 µs submit
on this machine (measured).  For the shape raydask sends almost always, a task
with default options submitted by the driver, all of it comes out the same for
every call.  :class:`DirectSubmitter` works it out once with Ray's own helpers
and then calls ``core_worker.submit_task`` with exactly what ``_remote`` would
pass.

It is used only where it is certain to be equivalent: a Ray whose
``submit_task`` and ``_remote`` have the shape this was written for (a feature
check in :func:`raydask.raycompat.direct_submission_problem`, logged once when
it fails), a driver (not a task, not Ray Client), no tracing, no
placement group to capture, no launch hook, no debugger breakpoint, and a
function that ``_remote`` has already exported to the current job.  Anywhere
else the caller uses ``_remote``; when the call raises ``TypeError``, it asks
``_remote`` too, which either raises the same error for the user (an argument
Ray cannot serialize) or succeeds (a changed ``submit_task``: then for good).
"""

from __future__ import annotations

import os

from . import raycompat

__all__ = ["DirectSubmitter"]


class DirectSubmitter:
    """Submit tasks of one exported remote function with default options."""

    __slots__ = ("_worker", "_core", "_language", "_descriptor", "_rest", "_dummy")

    def __init__(self, worker, language, descriptor, rest, dummy):
        self._worker = worker
        self._core = worker.core_worker
        self._language = language
        self._descriptor = descriptor
        self._rest = rest  # submit_task's parameters after the name, all constant
        self._dummy = dummy

    @classmethod
    def create(cls, rf, num_returns):
        """A submitter for ``rf``, or None where :mod:`raydask.direct` does not apply.

        Call it only after ``rf._remote`` ran once in this job (it exports the function).
        """
        try:
            return cls._create(rf, num_returns)
        except Exception:  # noqa: BLE001 - any surprise in Ray's internals: use _remote
            return None

    @classmethod
    def _create(cls, rf, num_returns):
        internal = raycompat.direct_internals()  # Ray's helpers; None if their shape changed
        if internal is None:
            return None
        worker = internal.worker_module.global_worker
        if (
            internal.client_mode_should_convert()
            or worker.mode != internal.SCRIPT_MODE
            or internal.is_tracing_enabled()
            or internal.remote_function_module._task_launch_hook is not None
            or rf._is_cross_language
            or rf._decorator is not None
            or rf._default_options
            or rf._last_export_cluster_and_job != worker.current_cluster_and_job
        ):
            return None
        # the defaults exactly as _remote fills them
        opts = {k: v.default_value for k, v in internal.task_options.items()}
        opts["max_retries"] = int(os.environ.get("RAY_TASK_MAX_RETRIES", opts["max_retries"]))
        opts.pop("max_calls", None)
        if (
            opts["scheduling_strategy"] is not None
            or opts["retry_exceptions"] not in (False, True)
            or opts["placement_group_capture_child_tasks"] is not None
        ):
            return None
        resources = internal.resources_from_ray_options(opts)
        placement_group = internal.configure_placement_group(
            worker.should_capture_child_tasks_in_placement_group,
            opts["placement_group_bundle_index"],
            resources,
            {},
            rf._function_descriptor.function_name,
            placement_group=opts["placement_group"],
        )
        if not placement_group.is_empty:
            return None
        backpressure = opts["_generator_backpressure_num_objects"]
        per_yield = opts["_num_objects_per_yield"]
        rest = (
            num_returns,
            resources,
            opts["max_retries"],
            opts["retry_exceptions"],
            None,  # retry_exception_allowlist
            "DEFAULT",  # scheduling_strategy
            b"",  # debugger_breakpoint (submit() steps aside when one is set)
            "{}",  # serialized_runtime_env_info: the job's
            -1 if backpressure is None else backpressure,
            1 if per_yield is None else per_yield,
            opts.get("enable_task_events"),
            opts.get("_labels"),
            opts.get("label_selector"),
            opts.get("fallback_strategy"),
        )
        return cls(worker, rf._language, rf._function_descriptor, rest, internal.DUMMY_TYPE)

    def submit(self, args, name: str):
        """Submit ``rf(*args)`` named ``name``; its refs, or None if this path no longer applies."""
        worker = self._worker
        if (
            not worker._is_connected
            or worker.debugger_breakpoint
            or getattr(worker, "core_worker", None) is not self._core
        ):
            return None  # Ray shut down or restarted under us, or a breakpoint to pass on
        flat = []
        dummy = self._dummy
        for a in args:
            flat += (dummy, a)
        return self._core.submit_task(self._language, self._descriptor, flat, name, *self._rest)
