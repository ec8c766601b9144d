"""The parts of Ray that are not public API: each behind one function, with a fallback.

raydask reaches past Ray's public API where the public way is slower (task
submission, completion callbacks) or missing (per-node usage, a small
cluster-wide key-value store, the settings of nodes started by
``ray.cluster_utils.Cluster``).  Every such use is here, so that a Ray upgrade
that moves one of them breaks one function, ``tests/test_raycompat.py`` names
what changed, and raydask keeps working through the fallback::

    wrapper                 private Ray API                             fallback (public)
    submit_remote           RemoteFunction._remote                      rf.options(...).remote(*args)
    on_completed            ObjectRef._on_completed                     ref.future().add_done_callback
    on_ready                CoreWorker.set_wait_async_callback          on_completed (fetches the value)
    failed, outcomes        CoreWorker.get_local_object_locations,      ray.get of each ref
                            CoreWorker.get_objects (metadata only)
    direct_internals        CoreWorker.submit_task and the helpers      None: raydask.direct steps aside
                            RemoteFunction._remote calls
    sys_path_job_config     JobConfig(_py_driver_sys_path=)             runtime_env PYTHONPATH
    skip_exit_hooks         Cluster._shutdown_at_exit                   none: nodes added from a thread fail
    start_worker_node       ray._private.node.Node, RayParams           none: RuntimeError naming `ray start --address`
    stop_node               Node.kill_all_processes                     none (the node came from start_worker_node)
    raylet_process          Node.all_processes["raylet"]                None: a killed raylet stays a zombie
    use_local_auth_token    ray._private.authentication...              RAY_AUTH_MODE=token if a token exists
    cluster_usage           ray.autoscaler.v2.sdk.get_cluster_status    no usage known (adapt() holds still)
    resources_per_node      ray._private.state                          cluster_usage's per-node totals
    kv_put / kv_get         ray.experimental.internal_kv                a named actor holding the values
    in_worker_process       RuntimeContext.worker.mode                  ray._private.worker.global_worker
    task_attempt_nodes,     the GCS' GetTaskEvents (gRPC stubs)         None: nodes / timings unknown
      task_timings

Each check runs once per process and costs microseconds (no task is
submitted); a wrapper that falls back logs one WARNING on logger ``raydask``.
Only a *missing or reshaped* API falls back: errors of a working call (a GCS
that does not answer, an argument Ray cannot serialize) reach the caller.
"""

from __future__ import annotations

import ast
import functools
import inspect
import logging
import os
import textwrap
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import ray

__all__ = [
    "ClusterUsage",
    "TaskTiming",
    "cluster_usage",
    "drain_node",
    "direct_internals",
    "direct_submission_problem",
    "in_worker_process",
    "kv_get",
    "kv_put",
    "on_completed",
    "on_ready",
    "failed",
    "outcomes",
    "raylet_process",
    "resources_per_node",
    "skip_exit_hooks",
    "start_worker_node",
    "stop_node",
    "submit_remote",
    "sys_path_job_config",
    "task_timings",
    "use_local_auth_token",
]

logger = logging.getLogger("raydask")

_warned: set = set()
_warned_lock = threading.Lock()


def _fall_back(what: str, why: object) -> None:
    """Log once per process that ``what`` uses its public fallback, and why."""
    with _warned_lock:
        if what in _warned:
            return
        _warned.add(what)
    logger.warning("raydask: %s is not available in Ray %s (%s); using the public fallback",
                   what, ray.__version__, why)


def _parameters(func) -> tuple[str, ...] | None:
    """Parameter names of ``func`` (Cython methods too, from their embedded signature)."""
    try:
        return tuple(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return None


# -- submitting a task -------------------------------------------------------------
@functools.cache
def _remote_problem() -> str | None:
    from ray.remote_function import RemoteFunction

    params = _parameters(getattr(RemoteFunction, "_remote", None))
    if params is None:
        return "RemoteFunction._remote is missing"
    sig = inspect.signature(RemoteFunction._remote)
    if params[:3] != ("self", "args", "kwargs") or not any(
            p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return f"RemoteFunction._remote takes {params!r}"
    return None


def submit_remote(rf, args, num_returns, name=None, **options):
    """``rf.options(num_returns=..., name=..., **options).remote(*args)``, without the wrapper.

    ``RemoteFunction._remote`` is what ``.remote()`` and ``.options().remote()``
    call; skipping ``options()``'s per-call wrapper class is 15-30 % of a submit
    (measured in benchmarks/).  Unlike ``options()`` it does not validate option
    names: pass only options Ray knows.
    """
    if _remote_problem() is None:
        return rf._remote(args=args, num_returns=num_returns, name=name, **options)
    _fall_back("RemoteFunction._remote", _remote_problem())
    return rf.options(num_returns=num_returns, name=name, **options).remote(*args)


# -- completion callbacks ------------------------------------------------------------
@functools.cache
def _on_completed_problem() -> str | None:
    params = _parameters(getattr(ray.ObjectRef, "_on_completed", None))
    if params is None:
        return "ObjectRef._on_completed is missing"
    if len(params) != 2:
        return f"ObjectRef._on_completed takes {params!r}"
    return None


def on_completed(ref, callback) -> None:
    """Call ``callback(value)`` once ``ref`` is ready; ``value`` is the exception if it failed.

    A task's own exception arrives as a ``RayTaskError`` whose ``.cause`` is the
    user's exception (through the fallback, the instance ``ray.get`` raises,
    which is also an instance of the cause's class).
    The callback runs on a Ray thread (never block there).  Ray's private
    ``_on_completed`` skips the ``concurrent.futures.Future`` that the public
    ``ref.future()`` builds around the same notification (5-10 % of a task's
    cost in the client, measured).
    """
    if _on_completed_problem() is None:
        ref._on_completed(callback)
        return
    _fall_back("ObjectRef._on_completed", _on_completed_problem())

    def done(fut):
        try:
            value = fut.result()
        except BaseException as exc:  # noqa: BLE001 - the contract: the exception is the value
            value = exc
        callback(value)

    ref.future().add_done_callback(done)


@functools.cache
def _core_worker_problem(*names) -> str | None:
    core = getattr(ray._raylet, "CoreWorker", None)
    for name in names:
        if _parameters(getattr(core, name, None)) is None:
            return f"CoreWorker.{name} is missing"
    return None


def on_ready(ref, callback) -> None:
    """Call ``callback()`` once ``ref``'s object exists, wherever it is; the value is not fetched.

    Ray's ``ray.wait(fetch_local=False)`` as a callback: the core worker tells
    the owner when the task's return is stored (in its memory store, or in the
    object store of any node).  The callback runs on a Ray thread (never block
    there); it costs what ``_on_completed`` costs (measured: 486-523 µs of
    client CPU per no-op task against 527-574), without deserialising the value.
    When Ray shuts down, it calls back the waits still open with an error
    (``RaySystemError: Core worker is shutting down``): those are dropped, since
    calling into Ray then starts it anew in this process and aborts it.
    The fallback, :func:`on_completed`, fetches the value to this node.
    """
    problem = _core_worker_problem("set_wait_async_callback")
    if problem is None and not _remote_driver(ref):
        ray._private.worker.global_worker.core_worker.set_wait_async_callback(
            ref, lambda failure: callback() if failure is None else None)
        return
    if problem is not None:
        _fall_back("CoreWorker.set_wait_async_callback", problem)
    on_completed(ref, lambda _value: callback())


#: Ray's ``ErrorType.OBJECT_IN_PLASMA``: the memory store's marker for a value in the object store.
_IN_PLASMA = b"4"


def failed(refs) -> list:
    """For ready ``refs``: whether each holds an error (True) rather than a value; nothing fetched.

    Ray stores a task's error inline, in its owner's memory store, with the
    error type's number as the object's metadata (``b"3"``: the task raised);
    a value in the object store is never an error.  Local calls only (about
    1 µs per ref, measured), none of which reaches the object store: safe on
    Ray's callback thread.
    Under Ray Client (``ray://``) there is no local core worker to ask: each
    ref's value is fetched instead.
    """
    if not refs:
        return []
    problem = _core_worker_problem("object_exists", "get_local_object_locations", "get_objects")
    if problem is not None or _remote_driver(refs[0]):
        if problem is not None:
            _fall_back("CoreWorker.get_objects", problem)
        return [_error_of(ref) is not None for ref in refs]
    core = ray._private.worker.global_worker.core_worker
    here = [ref for ref in refs if core.object_exists(ref, memory_store_only=True)]  # 0.2 µs each
    bad = set()
    if here:  # inline in this process's memory store: the metadata is right there
        for ref, obj in zip(here, core.get_objects(here, 0)):
            meta = obj.metadata
            if meta and meta.isdigit() and meta != _IN_PLASMA:
                bad.add(ref)
    if len(here) < len(refs):
        inline = set(here)
        elsewhere = [ref for ref in refs if ref not in inline]
        places = core.get_local_object_locations(elsewhere)
        for ref in elsewhere:
            if not _stored(places.get(ref)) and _error_of(ref) is not None:
                bad.add(ref)  # a small object this process borrows: only its value tells
    return [ref in bad for ref in refs]


def _stored(place) -> bool:
    """Whether the object is in some node's object store (then it is a value, never an error).

    The size tells when the owner's list of nodes does not: it was empty for a
    4 MB value on another node after Ray was restarted in the same process.
    """
    return bool(place and (place.get("node_ids") or place.get("did_spill")
                           or (place.get("object_size") or 0) > INLINE_LIMIT))


#: The size up to which Ray returns a task's value inline, to its owner's memory store.
INLINE_LIMIT = int(os.environ.get("RAY_max_direct_call_object_size", 100 * 1024))


def _remote_driver(ref) -> bool:
    """A Ray Client (``ray://``) ref: this process is no Ray worker, there is no core worker to ask."""
    return type(ref) is not ray.ObjectRef and _client_ref_type() is not None and isinstance(ref, _client_ref_type())


@functools.cache
def _client_ref_type():
    try:
        from ray.util.client.common import ClientObjectRef
    except Exception:  # noqa: BLE001 - no Ray Client in this Ray
        return None
    return ClientObjectRef


def outcomes(refs) -> list:
    """For ready ``refs``: None for each that holds a value, the exception ``ray.get`` raises for
    each that holds an error (:func:`failed`, then a ``ray.get`` of the errors only)."""
    return [_error_of(ref) if bad else None for ref, bad in zip(refs, failed(refs))]


def _error_of(ref):
    try:
        ray.get(ref, timeout=10)
    except Exception as exc:  # noqa: BLE001 - the task's failure is the answer
        return exc
    return None


# -- direct submission (raydask.direct) -------------------------------------------------
#: ``CoreWorker.submit_task``'s parameters, in order (read from Ray 2.60's _raylet).
SUBMIT_TASK_PARAMETERS = (
    "self", "language", "function_descriptor", "args", "name", "num_returns", "resources",
    "max_retries", "retry_exceptions", "retry_exception_allowlist", "scheduling_strategy",
    "debugger_breakpoint", "serialized_runtime_env_info", "generator_backpressure_num_objects",
    "num_objects_per_yield", "enable_task_events", "labels", "label_selector", "fallback_strategy",
)
#: What ``RemoteFunction._remote`` passes to ``submit_task``, argument by argument
#: (its source in Ray 2.60); :class:`raydask.direct.DirectSubmitter` passes the same.
REMOTE_SUBMIT_ARGUMENTS = (
    "self._language", "self._function_descriptor", "list_args", "name if name is not None else ''",
    "num_returns", "resources", "max_retries", "retry_exceptions", "retry_exception_allowlist",
    "scheduling_strategy", "worker.debugger_breakpoint", "serialized_runtime_env_info or '{}'",
    "generator_backpressure_num_objects", "num_objects_per_yield", "enable_task_events", "labels",
    "label_selector", "fallback_strategy",
)
#: Task options whose defaults :class:`raydask.direct.DirectSubmitter` reads.
DIRECT_TASK_OPTIONS = (
    "max_retries", "retry_exceptions", "scheduling_strategy", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks",
    "_generator_backpressure_num_objects", "_num_objects_per_yield", "num_cpus",
)


def remote_submit_arguments() -> tuple[str, ...] | None:
    """The argument expressions of the ``submit_task`` call in ``RemoteFunction._remote``."""
    from ray.remote_function import RemoteFunction

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(RemoteFunction._remote)))
    except (OSError, TypeError, SyntaxError):  # no source shipped
        return None
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and n.func.attr == "submit_task"]
    if len(calls) != 1 or calls[0].keywords:
        return None
    return tuple(ast.unparse(a) for a in calls[0].args)


@functools.cache
def direct_submission_problem() -> str | None:
    """Why :mod:`raydask.direct` cannot be used with this Ray, or None if it can.

    A feature check, not a version check: ``submit_task`` has the parameters
    raydask passes, ``_remote`` passes them the same way, and the helpers that
    compute them exist and behave as raydask expects.
    """
    try:
        from ray._raylet import CoreWorker

        params = _parameters(CoreWorker.submit_task)
        if params != SUBMIT_TASK_PARAMETERS:
            return f"CoreWorker.submit_task takes {params!r}"
        args = remote_submit_arguments()
        if args != REMOTE_SUBMIT_ARGUMENTS:
            return f"RemoteFunction._remote calls submit_task with {args!r}"
        ns = _import_direct_internals()
        missing = [k for k in DIRECT_TASK_OPTIONS if k not in ns.task_options
                   or not hasattr(ns.task_options[k], "default_value")]
        if missing:
            return f"ray_option_utils.task_options lacks {missing!r}"
        sig = ns.extract_signature(lambda *a: None)
        if ns.flatten_args(sig, (1, 2), {}) != [ns.DUMMY_TYPE, 1, ns.DUMMY_TYPE, 2]:
            return "flatten_args no longer pairs each positional argument with DUMMY_TYPE"
        pg_params = _parameters(ns.configure_placement_group)
        if pg_params is None or pg_params[:5] != (
                "placement_group_capture_child_tasks", "bundle_index", "resources",
                "placement_resources", "task_or_actor_repr") or "placement_group" not in pg_params:
            return f"_configure_placement_group_based_on_context takes {pg_params!r}"
        if not isinstance(ns.resources_from_ray_options({"num_cpus": 1}), dict):
            return "resources_from_ray_options no longer returns a dict"
        for name in ("mode", "current_cluster_and_job", "should_capture_child_tasks_in_placement_group",
                     "debugger_breakpoint", "_is_connected"):  # core_worker: set on connect
            if not hasattr(type(ns.worker_module.global_worker), name) and not hasattr(
                    ns.worker_module.global_worker, name):
                return f"Worker has no {name!r}"
        if not hasattr(ns.remote_function_module, "_task_launch_hook"):
            return "ray.remote_function has no _task_launch_hook"
    except Exception as exc:  # noqa: BLE001 - any other surprise: not this Ray's shape
        return f"{type(exc).__name__}: {exc}"
    return None


def _import_direct_internals() -> SimpleNamespace:
    from ray import remote_function
    from ray._common import ray_option_utils
    from ray._common.signature import DUMMY_TYPE, extract_signature, flatten_args
    from ray._common.utils import resources_from_ray_options
    from ray._private import worker
    from ray._private.client_mode_hook import client_mode_should_convert
    from ray.util.placement_group import _configure_placement_group_based_on_context
    from ray.util.tracing.tracing_helper import _is_tracing_enabled

    return SimpleNamespace(
        task_options=ray_option_utils.task_options,
        DUMMY_TYPE=DUMMY_TYPE,
        extract_signature=extract_signature,
        flatten_args=flatten_args,
        resources_from_ray_options=resources_from_ray_options,
        worker_module=worker,
        SCRIPT_MODE=worker.SCRIPT_MODE,
        client_mode_should_convert=client_mode_should_convert,
        configure_placement_group=_configure_placement_group_based_on_context,
        is_tracing_enabled=_is_tracing_enabled,
        remote_function_module=remote_function,
    )


def direct_internals() -> SimpleNamespace | None:
    """Ray's helpers that :mod:`raydask.direct` needs, or None (logged once) if they changed."""
    problem = direct_submission_problem()
    if problem is not None:
        with _warned_lock:
            first = "direct" not in _warned
            _warned.add("direct")
        if first:
            logger.info("raydask: direct task submission is off for Ray %s (%s); tasks go through "
                        "RemoteFunction._remote (correct, about 25 %% slower per submit)",
                        ray.__version__, problem)
        return None
    return _import_direct_internals()


# -- starting and joining clusters ---------------------------------------------------------
def sys_path_job_config(path: str):
    """A ``JobConfig`` that puts ``path`` on ``sys.path`` of every worker of the job.

    Ray spells this ``JobConfig(_py_driver_sys_path=...)`` (how it ships the
    driver's script directory); the public fallback sets ``PYTHONPATH`` in the
    job's runtime_env, which changes the job's runtime env (workers start in it).
    """
    from ray.job_config import JobConfig

    if "_py_driver_sys_path" in (_parameters(JobConfig.__init__) or ()):
        return JobConfig(_py_driver_sys_path=[path])
    _fall_back("JobConfig(_py_driver_sys_path=)", "no such parameter")
    return JobConfig(runtime_env={"env_vars": {"PYTHONPATH": f"{path}{os.pathsep}${{PYTHONPATH}}"}})


def skip_exit_hooks(cluster) -> None:
    """Make nodes that ``cluster`` (a ``ray.cluster_utils.Cluster``) adds next register no exit hooks.

    A node's hooks include signal handlers, which Python allows only on the main
    thread; raydask adds nodes from a thread of its own and stops them itself.
    Without the private attribute there is no public switch: adding a node from a
    thread then fails (and is logged by the caller).
    """
    if hasattr(cluster, "_shutdown_at_exit"):
        cluster._shutdown_at_exit = False
    else:
        _fall_back("Cluster._shutdown_at_exit", "no such attribute")


def start_worker_node(gcs_address: str, *, fate_share: bool, **node_args):
    """Start a Ray worker node joined to ``gcs_address``, as child processes of this one.

    The same code as ``ray.cluster_utils.Cluster.add_node`` for a non-head node
    (which needs the ``Cluster`` object that started the head) and ``ray start
    --address`` (which runs it in a process of its own).  ``node_args`` are
    Ray's node parameters (``num_cpus``, ``resources``, ``labels``, ...).
    ``fate_share`` makes the kernel stop the node when the thread that starts it
    exits (``PR_SET_PDEATHSIG``): only safe from a thread that lives as long as
    the node, such as a command's main thread.

    Returns:
        Ray's node object: pass it to :func:`stop_node`.
    Raises:
        RuntimeError: this Ray has no such node API (start the node with ``ray start``).
    """
    try:
        from ray._private.node import Node
        from ray._private.parameter import RayParams
    except ImportError as exc:
        raise RuntimeError(f"this Ray ({ray.__version__}) cannot start a node in-process ({exc}); "
                           f"start one with `ray start --address={gcs_address}`") from None
    params = RayParams(gcs_address=gcs_address, **node_args)
    params.update_if_absent(num_cpus=1, num_gpus=0, min_worker_port=0, max_worker_port=0,
                            include_log_monitor=False, node_manager_port=0)
    params.dashboard_agent_listen_port = None  # any free port: several nodes share this machine
    return Node(params, head=False, shutdown_at_exit=False, spawn_reaper=fate_share)


def stop_node(node) -> None:
    """Stop every process of a node from :func:`start_worker_node` (gracefully first), and wait."""
    node.kill_all_processes(check_alive=False, allow_graceful=True, wait=True)


def raylet_process(node):
    """The ``subprocess.Popen`` of a node's raylet, for a node this process started; else None."""
    try:
        from ray._private import ray_constants

        return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process
    except (ImportError, AttributeError, KeyError, IndexError, TypeError) as exc:
        _fall_back("Node.all_processes", exc)
        return None


def _token_exists() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    return os.path.isfile(path)


def use_local_auth_token() -> None:
    """Send Ray's auth token to a cluster on this machine, as ``ray.init("auto")`` would.

    ``RAY_AUTH_MODE`` set by the user always wins.  The fallback sets
    ``RAY_AUTH_MODE=token`` for this process when a token exists.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError as exc:
        _fall_back("maybe_enable_token_auth_if_token_available", exc)
        if "RAY_AUTH_MODE" not in os.environ and _token_exists():
            os.environ["RAY_AUTH_MODE"] = "token"
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


# -- what the cluster is doing -----------------------------------------------------------------
@dataclass
class ClusterUsage:
    """What the GCS tells Ray's autoscaler, as plain data."""

    #: node id -> CPUs in use
    used_cpus: dict = field(default_factory=dict)
    #: CPUs wanted by tasks waiting for a slot
    demand_cpus: float = 0.0
    #: node id -> ms it has been idle (Ray's idle: nothing running, no object held)
    idle_ms: dict = field(default_factory=dict)
    #: node id -> {resource: total}, and {resource: used}
    totals: dict = field(default_factory=dict)
    used: dict = field(default_factory=dict)
    #: whether a Ray autoscaler reports to this GCS
    autoscaler: bool = False
    #: False when this Ray has no cluster status to read (the fallback: nothing known)
    known: bool = True


def cluster_usage(gcs_address: str) -> ClusterUsage:
    """The cluster's load from ``ray.autoscaler.v2.sdk.get_cluster_status``.

    Raises:
        Whatever the GCS call raises (unreachable, timeout); a Ray without this
        API gives ``ClusterUsage(known=False)``.
    """
    try:
        from ray.autoscaler.v2.sdk import get_cluster_status
    except ImportError as exc:
        _fall_back("ray.autoscaler.v2.sdk.get_cluster_status", exc)
        return ClusterUsage(known=False)
    status = get_cluster_status(gcs_address)
    try:
        out = ClusterUsage(autoscaler=bool(status.stats.autoscaler_version))
        idle = {n.node_id for n in status.idle_nodes}
        for node in list(status.active_nodes) + list(status.idle_nodes):
            usage = node.resource_usage.usage if node.resource_usage else []
            out.totals[node.node_id] = {u.resource_name: u.total for u in usage}
            out.used[node.node_id] = {u.resource_name: u.used for u in usage}
            out.used_cpus[node.node_id] = sum(u.used for u in usage if u.resource_name == "CPU")
            if node.node_id in idle and node.resource_usage:
                out.idle_ms[node.node_id] = node.resource_usage.idle_time_ms
        for demand in status.resource_demands.ray_task_actor_demand:
            for b in demand.bundles_by_count:
                out.demand_cpus += b.bundle.get("CPU", 0) * b.count
    except AttributeError as exc:  # the status reshaped
        _fall_back("get_cluster_status's ClusterStatus fields", exc)
        return ClusterUsage(known=False)
    return out


def drain_node(gcs_address: str, node_id: str, message: str) -> tuple[bool, str]:
    """Ask the GCS to drain node ``node_id`` (hex): ``(accepted, why not)``.

    Ray's own call for this (``ray drain-node``, and its autoscaler before it
    stops a node): the node takes no new tasks, lets its running ones finish,
    then its raylet exits and the GCS marks it dead.  Measured on Ray 2.60 with
    a node that ran a 3 s task: accepted at once, the raylet exited when the
    task ended.  The reason is Ray's "preemption" (a "idle termination" drain is
    refused while a task runs); no deadline.

    Raises:
        RuntimeError: this Ray has no such call.
    """
    try:
        from ray._raylet import GcsClient
        from ray.core.generated import autoscaler_pb2

        reason = autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION")
    except (ImportError, AttributeError, ValueError) as exc:
        raise RuntimeError(f"this Ray ({ray.__version__}) cannot drain a node: {exc}") from None
    accepted, why = GcsClient(address=gcs_address).drain_node(node_id, reason, message, 0)
    return bool(accepted), str(why)


def resources_per_node() -> tuple[dict, dict]:
    """``({node id: total resources}, {node id: available resources})`` of the connected cluster.

    Ray has no public per-node view without its dashboard process; this reads
    the GCS's resource tables (``ray._private.state``, a DeveloperAPI), else the
    autoscaler's cluster status, else returns two empty dicts.
    """
    try:
        from ray._private.state import available_resources_per_node, total_resources_per_node
    except ImportError as exc:
        _fall_back("ray._private.state.total_resources_per_node", exc)
    else:
        return total_resources_per_node(), available_resources_per_node()
    usage = cluster_usage(ray.get_runtime_context().gcs_address)
    avail = {n: {k: total - usage.used[n].get(k, 0) for k, total in res.items()}
             for n, res in usage.totals.items()}
    return usage.totals, avail


# -- a small cluster-wide key-value store ---------------------------------------------------------
@functools.cache
def _internal_kv():
    try:
        from ray.experimental import internal_kv
    except ImportError as exc:
        _fall_back("ray.experimental.internal_kv", exc)
        return None
    for name in ("_internal_kv_get", "_internal_kv_put"):
        if "namespace" not in (_parameters(getattr(internal_kv, name, None)) or ()):
            _fall_back("ray.experimental.internal_kv", f"{name} has no namespace=")
            return None
    return internal_kv


_kv_actor_class = None


def _kv_actor(namespace: str):
    """The named actor that holds the fallback's values in ``namespace``."""
    global _kv_actor_class
    if _kv_actor_class is None:
        class KeyValue:
            def __init__(self):
                self.values = {}

            def put(self, key, value):
                self.values[key] = value

            def get(self, key):
                return self.values.get(key)

        _kv_actor_class = ray.remote(num_cpus=0)(KeyValue)
    return _kv_actor_class.options(name="raydask-kv", namespace=namespace, get_if_exists=True,
                                   lifetime="detached").remote()


def kv_put(key: bytes, value: bytes, namespace: str) -> None:
    """Store ``value`` under ``key`` for every process of the cluster (Ray's internal KV)."""
    kv = _internal_kv()
    if kv is not None:
        kv._internal_kv_put(key, value, namespace=namespace)
    else:
        ray.get(_kv_actor(namespace).put.remote(key, value))


def kv_get(key: bytes, namespace: str) -> bytes | None:
    """The value stored under ``key`` by :func:`kv_put`, or None."""
    kv = _internal_kv()
    if kv is not None:
        return kv._internal_kv_get(key, namespace=namespace)
    return ray.get(_kv_actor(namespace).get.remote(key))


# -- where this code runs ----------------------------------------------------------------------
def in_worker_process() -> bool:
    """Whether this process is a Ray worker (running a task), not a driver."""
    if not ray.is_initialized():
        return False
    worker = getattr(ray.get_runtime_context(), "worker", None)
    if worker is None or not hasattr(worker, "mode"):
        _fall_back("RuntimeContext.worker", "no such attribute")
        from ray._private.worker import global_worker as worker
    return worker.mode == ray.WORKER_MODE


def _task_event_replies(task_ids, timeout: float, limit: int) -> dict | None:
    """``{task id: GetTaskEvents reply, or None if the GCS did not answer}``; None without the API.

    One filtered call per task (the GCS ANDs several task-id filters, so they
    cannot share a call), all sent at once over one channel.
    """
    try:
        from ray._private.grpc_utils import init_grpc_channel
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

        Filters = gcs_service_pb2.GetTaskEventsRequest.Filters
        channel = init_grpc_channel(ray.get_runtime_context().gcs_address, asynchronous=False)
    except Exception as exc:  # noqa: BLE001 - a Ray without these, or not connected
        _fall_back("GCS GetTaskEvents", exc)
        return None
    try:
        stub = gcs_service_pb2_grpc.TaskInfoGcsServiceStub(channel)
        calls = {}
        for task_id in task_ids:
            filters = Filters()
            filters.task_filters.append(Filters.TaskIdFilter(task_id=task_id))
            request = gcs_service_pb2.GetTaskEventsRequest(limit=limit, filters=filters)
            calls[task_id] = stub.GetTaskEvents.future(request, timeout=timeout)
        replies = {}
        for task_id, call in calls.items():
            try:
                replies[task_id] = call.result()
            except Exception:  # noqa: BLE001 - the GCS did not answer for this one: unknown
                replies[task_id] = None
        return replies
    finally:
        channel.close()


def task_attempt_nodes(ref) -> dict | None:
    """``{attempt number: node id hex or None}`` of ``ref``'s task, from the GCS' task events.

    The GCS keeps task events whether or not Ray's dashboard runs; one filtered
    ``GetTaskEvents`` call took ~20 ms here.  Private (``ray.core.generated``,
    ``ray._private.grpc_utils``; the public ``ray.util.state`` needs Ray's
    dashboard process): None when it fails, never another exception.
    """
    try:
        task_id = ref.task_id().binary()
    except Exception as exc:  # noqa: BLE001 - a ref without a task
        _fall_back("ObjectRef.task_id", exc)
        return None
    replies = _task_event_replies([task_id], timeout=2, limit=100)
    reply = None if replies is None else replies[task_id]
    if reply is None:  # the workers stay unknown
        return None
    try:
        nodes: dict = {}
        for event in reply.events_by_task:
            node = event.state_updates.node_id
            nodes[event.attempt_number] = node.hex() if node else nodes.get(event.attempt_number)
        return nodes
    except AttributeError as exc:  # the reply reshaped
        _fall_back("GCS GetTaskEvents' TaskEvents fields", exc)
        return None


@dataclass
class TaskTiming:
    """What Ray's task events say about one attempt of a task (seconds since the epoch).

    ``states`` maps Ray's task states (``"SUBMITTED_TO_WORKER"``, ``"RUNNING"``,
    ``"PENDING_ARGS_FETCH"``, ...) to when the task entered them; ``spans`` maps
    the worker's profile events (``"task:deserialize_arguments"``, the worker
    getting the task's arguments, from another node if need be;
    ``"task:execute"``, ...) to ``(start, end)``.
    """

    attempt: int
    node_id: str | None
    states: dict = field(default_factory=dict)
    spans: dict = field(default_factory=dict)


def task_timings(task_ids, timeout: float = 2.0) -> dict | None:
    """``{task id (bytes): TaskTiming of its latest attempt}`` from the GCS' task events.

    One filtered ``GetTaskEvents`` call per task, sent at once: about 1-2 ms
    each here, against 1-3 s for Ray's state API at a few thousand tasks (which
    also needs Ray's dashboard process).  Tasks the GCS has no events for yet
    (workers report them about once a second), or did not answer for, are left
    out.  Private (``ray.core.generated``, ``ray._private.grpc_utils``): None
    when the API is missing, never another exception.
    """
    replies = _task_event_replies(task_ids, timeout=timeout, limit=16)
    if replies is None:
        return None
    try:
        from ray.core.generated.common_pb2 import TaskStatus

        names = {number: value.name for number, value in TaskStatus.DESCRIPTOR.values_by_number.items()}
        out = {}
        for task_id, reply in replies.items():
            for event in () if reply is None else reply.events_by_task:
                known = out.get(task_id)
                if known is not None and known.attempt > event.attempt_number:
                    continue
                if known is None or known.attempt < event.attempt_number:
                    known = out[task_id] = TaskTiming(event.attempt_number, None)
                updates = event.state_updates
                if updates.node_id:
                    known.node_id = updates.node_id.hex()
                for state, ns in updates.state_ts_ns.items():
                    known.states[names.get(state, str(state))] = ns / 1e9
                for entry in event.profile_events.events:
                    known.spans[entry.event_name] = (entry.start_time / 1e9, entry.end_time / 1e9)
        return out
    except (AttributeError, ImportError) as exc:  # the reply or the states reshaped
        _fall_back("GCS GetTaskEvents' TaskEvents fields", exc)
        return None
