"""Client(address=...) joins a Ray cluster started by ``ray start``, and never stops it.

The module starts its own cluster in subprocesses (a head and a second node,
one CPU each, in their own temp dir and process group) and stops exactly
those processes at the end: ``ray stop`` would stop every Ray on the machine.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import psutil
import pytest
import ray

from raydask import Client
from raydask.cluster import RayCluster, local_ray_addresses, resolve_address

pytestmark = pytest.mark.multinode

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def where(x=None):
    return ray.get_runtime_context().get_node_id()


def _free_port():
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class RayStart:
    """``ray start ... --block`` processes in their own session; stopped by process group."""

    def __init__(self):
        self.temp_dir = f"/tmp/rdx-{uuid.uuid4().hex[:6]}"  # short: Ray's socket paths have a limit
        self.procs = []

    def start(self, *args, wait_for=None, auth="token"):
        cmd = [RAY, "start", "--block", "--num-cpus=1", "--object-store-memory=100000000",
               "--disable-usage-stats", *args]
        # Token auth as `ray start --head` turns it on by default; a joining node needs it said.
        env = dict(os.environ, RAY_AUTH_MODE=auth)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        self.procs.append(proc)
        return proc

    def head(self):
        port = _free_port()
        proc = self.start("--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={self.temp_dir}")
        address = f"{_host()}:{port}"
        _wait(lambda: address in local_ray_addresses(), 120, f"head {address}", proc)
        return address

    def ours(self):
        """Every process of these clusters: their command lines name our temp dir."""
        out = [psutil.Process(p.pid) for p in self.procs if p.poll() is None]
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(self.temp_dir in part for part in proc.info["cmdline"] or ()):
                    out.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return out

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        _, alive = psutil.wait_procs(self.ours(), timeout=10)
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in alive + self.ours():
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        for p in self.procs:
            p.wait(10)
        import shutil

        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _client_server_port():
    """A free port outside Ray's default worker ports (10002-19999), which ray start refuses."""
    while True:
        port = _free_port()
        if not 10002 <= port <= 19999:
            return port


def _host():
    return ray.util.get_node_ip_address()


def _wait(predicate, timeout, what, proc=None):
    """Wait for ``predicate``; fail at once if ``proc`` (the ``ray start`` doing it) exited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: `ray start` exited with code {proc.returncode} before it came up")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up within {timeout}s")
        time.sleep(0.3)


def _alive(address):
    return address in local_ray_addresses()


def ensure_auth_token():
    """Make sure a Ray auth token exists, as a user does before ``ray start --head``.

    With token authentication (the default of ``ray start`` in 2.60) a head with no
    token exits at once (RAY-NOTES); a fresh machine has none until something makes
    one.  ``ray get-auth-token --generate`` writes ``~/.ray/auth_token`` only if no
    token exists yet.
    """
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    subprocess.run([RAY, "get-auth-token", "--generate"], check=True, capture_output=True, timeout=60)
    assert os.path.exists(os.path.expanduser("~/.ray/auth_token"))


@pytest.fixture(scope="module")
def external():
    from conftest import _pool

    _pool.close()  # one Ray per process: this module's driver joins the external cluster
    ensure_auth_token()
    starter = RayStart()
    try:
        address = starter.head()
        starter.start(f"--address={address}")
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        starter.stop()
        assert not starter.ours()


@pytest.fixture
def joined(external):
    client = Client(address=external, dashboard_address=None)
    client.wait_for_workers(2, timeout=120)
    yield client
    client.close()


@pytest.mark.timeout(240)
def test_join_by_host_port_and_run_on_both_nodes(joined, external):
    assert isinstance(joined.cluster, RayCluster)
    assert joined.scheduler_address == f"ray://{external}"
    info = joined.scheduler_info()["workers"]
    assert len(info) == 2 and all(w["nthreads"] == 1 for w in info.values())
    for address, w in info.items():
        assert w["name"] == address  # nodes without raydask's label are named by address
        assert joined.submit(where, address, workers=[address], pure=False).result(timeout=60) == w["node_id"]


@pytest.mark.timeout(120)
def test_closing_the_client_leaves_the_cluster_running(external):
    client = Client(address=external, dashboard_address=None)
    assert client.submit(where, 1, pure=False).result(timeout=60)
    client.close()
    assert not ray.is_initialized()
    time.sleep(1)
    assert _alive(external)
    again = Client(address=external, dashboard_address=None)  # and it can be joined again
    again.wait_for_workers(2, timeout=120)  # run alone, this test may come before the 2nd node is up
    assert len(again.scheduler_info()["workers"]) == 2
    again.close()


@pytest.mark.timeout(120)
def test_an_asynchronous_client_joins_by_address(external):
    import asyncio

    async def main():
        async with Client(address=external, asynchronous=True, dashboard_address=None) as client:
            assert isinstance(client.cluster, RayCluster)
            futures = [client.submit(where, i, pure=False) for i in range(4)]
            nodes = await client.gather(futures)
            assert len(await client.nthreads()) == 2
            return nodes

    assert len(asyncio.run(main())) == 4
    assert not ray.is_initialized()  # closing it disconnected; the cluster keeps running
    assert _alive(external)


@pytest.mark.timeout(120)
def test_ray_address_environment_variable(external, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", external)
    client = Client(dashboard_address=None)
    try:
        assert isinstance(client.cluster, RayCluster)
        assert client.scheduler_address == f"ray://{external}"
    finally:
        client.close()
    with pytest.raises(TypeError, match="cannot be used with address"):
        Client(address=external, n_workers=2)


@pytest.mark.timeout(180)
def test_auto_with_several_local_clusters_is_an_error(external):
    extra = None
    if len(local_ray_addresses()) < 2:
        extra = RayStart()
        extra.head()
    try:
        with pytest.raises(ConnectionError, match=r"address='auto' matches \d+ Ray clusters on this machine") as info:
            Client(address="auto", dashboard_address=None)
        assert external in str(info.value)
        assert not ray.is_initialized()
    finally:
        if extra is not None:
            extra.stop()
    assert resolve_address(external) == external


@pytest.mark.timeout(120)
def test_scale_requests_resources_from_the_autoscaler(joined, caplog):
    import json

    from ray.autoscaler.v2.sdk import get_cluster_status
    from ray.autoscaler.v2.utils import is_autoscaler_v2
    from ray.experimental.internal_kv import _internal_kv_get

    with caplog.at_level(logging.WARNING, logger="raydask"):
        joined.cluster.scale(4)
    if is_autoscaler_v2():
        status = get_cluster_status(joined.cluster._gcs_address)
        requested = [b.bundle for d in status.resource_demands.cluster_constraint_demand
                     for b in d.bundles_by_count for _ in range(b.count)]
    else:  # the v1 autoscaler reads the request from the GCS' key-value store
        requested = json.loads(_internal_kv_get("autoscaler_resource_request"))
    assert requested == [{"CPU": 1}] * 4
    assert joined.cluster.target == 4
    if not joined.cluster.has_autoscaler():
        assert "no Ray autoscaler" in caplog.text
    time.sleep(2)
    assert len(joined.scheduler_info()["workers"]) == 2  # `ray start` clusters do not grow
    joined.cluster.scale(0)


@pytest.mark.timeout(120)
def test_upload_file_on_a_joined_cluster(joined, tmp_path):
    name = f"raydask_joined_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("VALUE = 'joined'\n")
    joined.upload_file(str(tmp_path / f"{name}.py"))

    def read(x):
        import importlib

        return importlib.import_module(name).VALUE

    assert set(joined.gather(joined.map(read, range(4), pure=False))) == {"joined"}



_RAY_CLIENT_SCRIPT = """
import sys, time
import ray
from raydask import Client, as_completed
from raydask.cluster import RayCluster

address = sys.argv[1]
for attempt in range(3):  # Ray Client's proxy sometimes fails its first start under load
    try:
        client = Client(address=address, dashboard_address=None)
        break
    except (ConnectionError, ConnectionAbortedError) as exc:
        print("retrying after", type(exc).__name__, flush=True)
        if ray.is_initialized():
            ray.shutdown()
        time.sleep(3)
else:
    sys.exit("could not connect")
assert isinstance(client.cluster, RayCluster)
x = client.submit(lambda v: v + 1, 1)
assert x.result(timeout=60) == 2 and x.status == "finished"
futures = client.map(lambda v: v * 10, range(5))
assert sorted(f.result() for f in as_completed(futures)) == [0, 10, 20, 30, 40]
assert client.gather(client.scatter({"a": 1, "b": 2})) == {"a": 1, "b": 2}
try:
    client.submit(lambda: 1 / 0).result(timeout=60)
except ZeroDivisionError:
    pass
else:
    sys.exit("no ZeroDivisionError")
client.close()
assert not ray.is_initialized()
print("RAY CLIENT OK")
"""


@pytest.mark.timeout(300)
def test_join_through_ray_client(external, tmp_path):
    """``ray://`` goes through Ray Client, which in Ray 2.60 sends no auth token: the
    cluster must run with ``RAY_AUTH_MODE=disabled`` (docs/migrating.md says so).
    The client runs in a subprocess: Ray Client mode installs process-wide hooks."""
    starter = RayStart()
    try:
        port, client_port = _free_port(), _client_server_port()
        proc = starter.start("--head", f"--port={port}", "--include-dashboard=false",
                             f"--ray-client-server-port={client_port}", f"--temp-dir={starter.temp_dir}",
                             auth="disabled")
        _wait(lambda: f"{_host()}:{port}" in local_ray_addresses(), 120, "ray client head", proc)
        script = tmp_path / "ray_client.py"
        script.write_text(_RAY_CLIENT_SCRIPT)
        env = dict(os.environ, RAY_AUTH_MODE="disabled")
        env.pop("RAY_ADDRESS", None)
        out = subprocess.run([sys.executable, str(script), f"ray://127.0.0.1:{client_port}"],
                             capture_output=True, text=True, timeout=240, env=env)
        assert "RAY CLIENT OK" in out.stdout, out.stdout[-2000:] + out.stderr[-4000:]
        assert f"{_host()}:{port}" in local_ray_addresses()  # closing left the cluster up
    finally:
        starter.stop()
        assert not starter.ours()
