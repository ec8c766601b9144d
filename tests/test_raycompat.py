"""raydask.raycompat: the private Ray APIs raydask uses still have the shape it expects.

The first half needs no running Ray and fails with the exact change when a Ray
upgrade moves one of them (run it first after an upgrade:
``pytest tests/test_raycompat.py``).  The second half runs each wrapper on a
live cluster, through the private API and through its public fallback, and
checks that both give the same answer.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import sys
import time

import pytest
import ray

from raydask import raycompat


def params(func):
    return tuple(inspect.signature(func).parameters)


# -- shapes (no Ray started) -------------------------------------------------------------
def test_remote_function_remote_takes_args_kwargs_and_options():
    from ray.remote_function import RemoteFunction

    sig = inspect.signature(RemoteFunction._remote)
    assert params(RemoteFunction._remote)[:4] == ("self", "args", "kwargs", "serialized_runtime_env_info")
    assert any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    assert raycompat._remote_problem() is None


def test_object_ref_on_completed_takes_one_callback():
    assert params(ray.ObjectRef._on_completed) == ("self", "py_callback")
    assert "exception" in ray.ObjectRef._on_completed.__doc__  # "the result can be an exception object"
    assert raycompat._on_completed_problem() is None
    assert params(ray.ObjectRef.future) == ("self",)


def test_core_worker_submit_task_parameters():
    from ray._raylet import CoreWorker

    assert params(CoreWorker.submit_task) == raycompat.SUBMIT_TASK_PARAMETERS


def test_remote_passes_submit_task_what_direct_passes():
    # raydask.direct builds these same arguments once; a change here means
    # direct.py's ``rest`` tuple must be re-read against remote_function.py
    assert raycompat.remote_submit_arguments() == raycompat.REMOTE_SUBMIT_ARGUMENTS


def test_direct_submission_helpers_have_their_shape():
    from ray._common import ray_option_utils
    from ray._common.signature import DUMMY_TYPE, extract_signature, flatten_args
    from ray._common.utils import resources_from_ray_options
    from ray.util.placement_group import _configure_placement_group_based_on_context

    for name in raycompat.DIRECT_TASK_OPTIONS:
        assert hasattr(ray_option_utils.task_options[name], "default_value"), name
    assert flatten_args(extract_signature(lambda *a: None), ("x",), {}) == [DUMMY_TYPE, "x"]
    assert resources_from_ray_options({"num_cpus": 1, "num_gpus": 0})["CPU"] == 1
    assert params(_configure_placement_group_based_on_context) == (
        "placement_group_capture_child_tasks", "bundle_index", "resources", "placement_resources",
        "task_or_actor_repr", "placement_group")
    assert raycompat.direct_submission_problem() is None
    assert raycompat.direct_internals() is not None


def test_job_config_takes_py_driver_sys_path():
    from ray.job_config import JobConfig

    assert "_py_driver_sys_path" in params(JobConfig.__init__)
    config = raycompat.sys_path_job_config("/tmp/x")
    assert config._py_driver_sys_path == ["/tmp/x"]
    assert list(config._get_proto_job_config().py_driver_sys_path) == ["/tmp/x"]


def test_cluster_utils_cluster_shape():
    from ray.cluster_utils import Cluster

    assert {"initialize_head", "connect", "head_node_args", "shutdown_at_exit"} <= set(params(Cluster.__init__))
    cluster = Cluster(initialize_head=False)  # starts nothing
    assert cluster._shutdown_at_exit is True
    raycompat.skip_exit_hooks(cluster)
    assert cluster._shutdown_at_exit is False
    assert callable(cluster.add_node) and callable(cluster.remove_node)


def test_auth_token_helper_shape():
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    assert params(maybe_enable_token_auth_if_token_available) == ("warn_if_disabled",)


def test_cluster_status_shape():
    from ray.autoscaler.v2 import schema
    from ray.autoscaler.v2.sdk import get_cluster_status

    assert params(get_cluster_status)[0] == "gcs_address"

    def fields(cls):
        return {f.name for f in dataclasses.fields(cls)}

    assert {"active_nodes", "idle_nodes", "resource_demands", "stats"} <= fields(schema.ClusterStatus)
    assert {"node_id", "resource_usage"} <= fields(schema.NodeInfo)
    assert {"usage", "idle_time_ms"} <= fields(schema.NodeUsage)
    assert {"resource_name", "total", "used"} <= fields(schema.ResourceUsage)
    assert "ray_task_actor_demand" in fields(schema.ResourceDemandSummary)
    assert {"bundle", "count"} <= fields(schema.ResourceRequestByCount)
    assert "autoscaler_version" in fields(schema.Stats)


def test_state_and_internal_kv_shape():
    from ray._private import state
    from ray.experimental import internal_kv

    assert callable(state.total_resources_per_node) and callable(state.available_resources_per_node)
    assert "namespace" in params(internal_kv._internal_kv_get)
    assert "namespace" in params(internal_kv._internal_kv_put)
    assert raycompat._internal_kv() is internal_kv


def test_fall_back_logs_once(caplog):
    caplog.set_level(logging.WARNING, logger="raydask")
    raycompat._warned.discard("test-thing")
    raycompat._fall_back("test-thing", "gone")
    raycompat._fall_back("test-thing", "gone")
    assert [r.getMessage() for r in caplog.records].count(
        f"raydask: test-thing is not available in Ray {ray.__version__} (gone); using the public fallback") == 1


def test_skip_exit_hooks_without_the_attribute_only_logs(caplog):
    caplog.set_level(logging.WARNING, logger="raydask")
    raycompat._warned.discard("Cluster._shutdown_at_exit")
    raycompat.skip_exit_hooks(object())
    assert "Cluster._shutdown_at_exit is not available" in caplog.text


def test_job_config_fallback_sets_pythonpath(monkeypatch):
    monkeypatch.setattr(raycompat, "_parameters", lambda func: ())
    config = raycompat.sys_path_job_config("/tmp/up")
    assert config.runtime_env["env_vars"]["PYTHONPATH"].startswith("/tmp/up")


def test_auth_fallback_enables_token_mode_when_a_token_exists(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray._private.authentication.authentication_token_setup", None)
    monkeypatch.setenv("RAY_AUTH_MODE", "unset-below")  # so that teardown restores the original
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t" * 32)
    raycompat.use_local_auth_token()
    assert raycompat.os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the user's choice wins
    raycompat.use_local_auth_token()
    assert raycompat.os.environ["RAY_AUTH_MODE"] == "disabled"


def test_direct_off_logs_once_and_creates_nothing(monkeypatch, caplog):
    from raydask.direct import DirectSubmitter

    caplog.set_level(logging.INFO, logger="raydask")
    monkeypatch.setattr(raycompat, "direct_submission_problem", lambda: "CoreWorker.submit_task takes ()")
    monkeypatch.setattr(raycompat, "_warned", set())
    assert raycompat.direct_internals() is None
    assert raycompat.direct_internals() is None
    assert DirectSubmitter.create(object(), 2) is None
    assert caplog.text.count("direct task submission is off") == 1


# -- behaviour on a live cluster: private path and fallback agree ------------------------------
def _inc(x):
    return x + 1


def _fail(x):
    raise ValueError(f"bad {x}")


@pytest.fixture
def fallback(monkeypatch):
    """Make every wrapper take its public fallback."""
    monkeypatch.setattr(raycompat, "_remote_problem", lambda: "test")
    monkeypatch.setattr(raycompat, "_on_completed_problem", lambda: "test")
    monkeypatch.setattr(raycompat, "_internal_kv", lambda: None)


def _pair(x):
    return x, x + 1


def _submit():
    one = raycompat.submit_remote(ray.remote(_inc), (1,), 1, name="inc")
    two = raycompat.submit_remote(ray.remote(_pair), (1,), 2, max_retries=0)
    return ray.get(one), ray.get(two)


def _completions():
    import threading

    out, done = [], threading.Event()

    def callback(value):
        out.append(value)
        if len(out) == 2:
            done.set()

    raycompat.on_completed(ray.remote(_inc).remote(1), callback)
    raycompat.on_completed(ray.remote(_fail).remote(1), callback)
    assert done.wait(60)
    return sorted(out, key=lambda v: isinstance(v, Exception))


def test_submit_remote(client):
    assert _submit() == (2, [1, 2])


def test_submit_remote_matches_fallback(client, fallback):
    assert _submit() == (2, [1, 2])


def test_on_completed_gives_value_or_exception(client):
    value, error = _completions()
    assert value == 2
    assert isinstance(error, ray.exceptions.RayTaskError) and isinstance(error.cause, ValueError)


def test_on_completed_fallback_same_contract(client, fallback):
    value, error = _completions()
    assert value == 2
    assert isinstance(error, ray.exceptions.RayTaskError) and isinstance(error.cause, ValueError)


def test_direct_submitter_submits(client):
    from raydask.direct import DirectSubmitter

    rf = ray.remote(_inc)
    ray.get(rf._remote(args=(0,), num_returns=1))  # exports the function
    direct = DirectSubmitter.create(rf, 1)
    assert direct is not None
    assert ray.get(direct.submit((41,), "inc")) == [42]


def test_kv_roundtrip(client):
    raycompat.kv_put(b"raycompat-test", b"1", namespace="raydask-test")
    assert raycompat.kv_get(b"raycompat-test", namespace="raydask-test") == b"1"
    assert raycompat.kv_get(b"raycompat-absent", namespace="raydask-test") is None


def test_kv_fallback_actor(client, fallback):
    try:
        raycompat.kv_put(b"k", b"2", namespace="raydask-test")
        assert raycompat.kv_get(b"k", namespace="raydask-test") == b"2"
        assert raycompat.kv_get(b"absent", namespace="raydask-test") is None
    finally:
        ray.kill(ray.get_actor("raydask-kv", namespace="raydask-test"))


def test_cluster_usage_and_resources_per_node(client):
    gcs = ray.get_runtime_context().gcs_address
    usage = raycompat.cluster_usage(gcs)
    node = ray.get_runtime_context().get_node_id()
    assert usage.known and isinstance(usage.autoscaler, bool)  # a cluster_utils head runs Ray's monitor
    assert 0 <= usage.used_cpus[node] <= 2 and usage.totals[node]["CPU"] == 2
    assert usage.demand_cpus >= 0 and all(ms >= 0 for ms in usage.idle_ms.values())
    total, avail = raycompat.resources_per_node()
    assert total[node]["CPU"] == 2 and 0 <= avail[node]["CPU"] <= 2


def test_resources_per_node_fallback(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray._private.state", None)
    node = ray.get_runtime_context().get_node_id()
    total, avail = raycompat.resources_per_node()
    assert total[node]["CPU"] == 2 and 0 <= avail[node]["CPU"] <= 2


def test_cluster_usage_without_the_sdk(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.autoscaler.v2.sdk", None)
    assert raycompat.cluster_usage("unused") == raycompat.ClusterUsage(known=False)


def _where():
    return raycompat.in_worker_process()


def test_in_worker_process(client):
    assert raycompat.in_worker_process() is False
    assert ray.get(ray.remote(_where).remote()) is True


def test_task_events_shape():
    """``KilledWorker`` reads each attempt's node from the GCS' task events (errors.killed_worker)."""
    from ray._private.grpc_utils import init_grpc_channel
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    assert "asynchronous" in inspect.signature(init_grpc_channel).parameters
    assert hasattr(gcs_service_pb2_grpc, "TaskInfoGcsServiceStub")
    filters = gcs_service_pb2.GetTaskEventsRequest.Filters()
    filters.task_filters.append(gcs_service_pb2.GetTaskEventsRequest.Filters.TaskIdFilter(task_id=b"x"))
    gcs_service_pb2.GetTaskEventsRequest(limit=1, filters=filters)
    # what task_timings reads of each reply (the dashboard's transfer bars)
    from ray.core.generated import common_pb2, gcs_pb2

    assert {"attempt_number", "state_updates", "profile_events"} <= set(gcs_pb2.TaskEvents.DESCRIPTOR.fields_by_name)
    assert {"node_id", "state_ts_ns"} <= set(gcs_pb2.TaskStateUpdate.DESCRIPTOR.fields_by_name)
    entry = gcs_pb2.TaskEvents.DESCRIPTOR.fields_by_name["profile_events"].message_type.fields_by_name["events"]
    assert {"event_name", "start_time", "end_time"} <= set(entry.message_type.fields_by_name)
    assert {"SUBMITTED_TO_WORKER", "RUNNING", "PENDING_ARGS_FETCH", "FINISHED"} <= set(common_pb2.TaskStatus.keys())


def test_task_attempt_nodes_of_a_finished_task(client):
    ref = ray.remote(lambda: 1).remote()
    assert ray.get(ref) == 1
    deadline = time.monotonic() + 10
    while True:  # task events reach the GCS in batches, within about a second
        nodes = raycompat.task_attempt_nodes(ref)
        if nodes and nodes.get(0):
            break
        assert time.monotonic() < deadline, nodes
        time.sleep(0.2)
    assert nodes[0] == ray.get_runtime_context().get_node_id()


def test_task_timings_of_a_finished_task(client):
    before = time.time()
    ref = ray.remote(lambda x: x).remote(1)
    assert ray.get(ref) == 1
    task_id = ref.task_id().binary()
    deadline = time.monotonic() + 10
    while True:  # task events reach the GCS in batches, within about a second
        timings = raycompat.task_timings([task_id, b"\0" * len(task_id)])
        timing = timings.get(task_id)
        if timing is not None and "FINISHED" in timing.states and "task:deserialize_arguments" in timing.spans:
            break
        assert time.monotonic() < deadline, timings
        time.sleep(0.2)
    assert list(timings) == [task_id]  # a task the GCS does not know is left out
    assert timing.attempt == 0 and timing.node_id == ray.get_runtime_context().get_node_id()
    s = timing.states
    assert before - 1 < s["SUBMITTED_TO_WORKER"] <= s["RUNNING"] <= s["FINISHED"] < time.time() + 1
    start, end = timing.spans["task:deserialize_arguments"]
    assert s["SUBMITTED_TO_WORKER"] <= start <= end <= s["FINISHED"]
    assert raycompat.task_timings([]) == {}
