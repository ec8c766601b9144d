"""Shared Ray clusters for the tests.

Ray allows one cluster per process, so the fixtures share one at a time: the
single-node ``client`` for most tests, a three-node ``multinode_client`` for
placement, transfers and scaling.  Switching closes the previous one; pytest
runs test files in order, so each switch happens about once per file.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
# Functions defined in test modules are pickled by reference, as in any Ray program:
# the workers (started from this process, inheriting its environment) must be able
# to import the test modules.
_tests = os.path.dirname(os.path.abspath(__file__))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_tests, os.environ.get("PYTHONPATH")) if p)


class _Pool:
    def __init__(self):
        self.kind = None
        self.client = None

    def get(self, kind, factory):
        if self.kind != kind or self.client is None or self.client.status != "running":
            self.close()
            self.client = factory()
            self.kind = kind
        return self.client

    def close(self):
        if self.client is not None:
            self.client.close()
        self.client, self.kind = None, None


_pool = _Pool()

#: Under CI every component the README promises must be there: a missing one fails.
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def missing(what: str):
    """Skip for a missing optional component; fail under ``CI=true`` (``./dev test`` installs it)."""
    message = f"{what} is not installed; ./dev test installs it"
    if IN_CI:
        pytest.fail(message + " (CI=true: a test that needs a promised component fails, not skips)")
    pytest.skip(message)


def need(module: str):
    """``pytest.importorskip`` that fails under ``CI=true``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        missing(f"the Python package {module!r}")


def coordination_actor_exists() -> bool:
    import ray

    from raydask.coordinator import ACTOR_NAME, NAMESPACE

    try:
        ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return False
    return True


def stop_coordination_actor() -> None:
    """Kill the coordination actor if there is one; the next use makes a new one.

    It is detached, so it would otherwise live on in the shared cluster: a worker
    process that later tests do not expect.
    """
    import ray

    from raydask.coordinator import ACTOR_NAME, NAMESPACE

    if ray.is_initialized():
        try:
            ray.kill(ray.get_actor(ACTOR_NAME, namespace=NAMESPACE))
        except ValueError:  # never made in this cluster
            pass


@pytest.fixture(scope="module")
def no_coordination_actor_afterwards():
    """Stop the coordination actor after this module (``pytestmark = usefixtures(...)``)."""
    yield
    stop_coordination_actor()


def _shared(kind, factory):
    """The shared client of ``kind``, as a test found it and leaves it."""
    c = _pool.get(kind, factory)
    had_actor = coordination_actor_exists()
    yield c
    if c._gate is not None:  # a test's priority= must not gate the tests after it,
        c._stop_gate()
        if not had_actor:  # nor leave them the actor its gate made (raydask.priority)
            stop_coordination_actor()


@pytest.fixture
def client():
    """A running single-node client (2 threads), shared by the tests that use it."""
    from raydask import Client

    yield from _shared("local", lambda: Client(n_workers=1, threads_per_worker=2, dashboard_address=None))


@pytest.fixture
def multinode_client():
    """A client on three Ray nodes of one thread each (separate raylets)."""
    from raydask import Client

    yield from _shared("multi", lambda: Client(n_workers=3, threads_per_worker=1, dashboard_address=None))


@pytest.fixture
def no_client():
    """Close any shared client, for tests that start their own."""
    _pool.close()
    yield
    import ray

    if ray.is_initialized():  # a test that failed half-way must not leak its Ray
        ray.shutdown()


def pytest_sessionfinish(session, exitstatus):
    _pool.close()
