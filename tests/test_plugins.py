"""raydask's worker plugins where Dask parity cannot apply (``tests/test_parity_plugins.py`` has the rest).

Dask's in-process test worker shares the client's process, and its ``Environ``
is a nanny plugin (restarting workers); here a plugin is set up in each Ray
worker process, so these check that per process: environment variables,
``async def`` setup, transition hooks around tasks, a client made inside a
task, a node that joins after the registration, and the asynchronous client.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid

import pytest

import raydask
from conftest import need
from raydask import Client, Environ, LocalCluster, WorkerPlugin
from raydask.plugins import plugin_name

pytestmark = pytest.mark.timeout(180)

STATE: dict = {}


class SetState(WorkerPlugin):
    def __init__(self, tag, value):
        self.tag, self.value = tag, value

    def setup(self, worker):
        STATE[self.tag] = self.value


class AsyncSetState(SetState):
    async def setup(self, worker):
        await asyncio.sleep(0)
        STATE[self.tag] = self.value


class Transitions(WorkerPlugin):
    def __init__(self, path):
        self.path = path

    def transition(self, key, start, finish, **kwargs):
        with open(self.path, "a") as fh:
            fh.write(f"{key} {start} {finish}\n")


def read_state(tag, i=0):
    time.sleep(0.05)
    return os.getpid(), STATE.get(tag)


def read_env(name, i=0):
    time.sleep(0.2)  # two at once on the shared client's 2 CPUs: two worker processes
    return os.getpid(), os.environ.get(name)


def fail(x):
    raise ValueError(x)


def read_state_in_nested_task(tag):
    """A task whose own client (made in its process) submits a task: it gets the plugins too."""
    return raydask.get_client().submit(read_state, tag, pure=False).result()[1]


def test_environ_sets_variables_in_every_process_that_runs_a_task(client):
    var = f"RAYDASK_TEST_{uuid.uuid4().hex.upper()}"
    try:
        response = client.register_plugin(Environ({var: 7}), name=var)
        assert list(response.values()) == [{"status": "OK"}]
        values = client.gather(client.map(read_env, [var] * 6, range(6), pure=False))
        assert {v for _, v in values} == {"7"}
        assert len({pid for pid, _ in values}) >= 2
    finally:
        client.unregister_worker_plugin(var)
    # Environ has no name attribute: Dask's default name, a new one per registration
    assert re.fullmatch(r"Environ-[0-9a-f-]{36}", plugin_name(Environ()))


def test_async_setup_is_awaited(client):
    tag = uuid.uuid4().hex
    try:
        client.register_plugin(AsyncSetState(tag, "async"), name=tag)
        assert {v for _, v in client.gather(client.map(read_state, [tag] * 4, range(4), pure=False))} == {"async"}
    finally:
        client.unregister_worker_plugin(tag)


def test_transition_hooks_around_each_task(client, tmp_path):
    path = str(tmp_path / "transitions.log")
    name = f"transitions-{uuid.uuid4().hex}"
    key_ok, key_bad = f"ok-{uuid.uuid4().hex}", f"bad-{uuid.uuid4().hex}"
    try:
        client.register_plugin(Transitions(path), name=name)
        assert client.submit(read_state, "x", key=key_ok).result()[1] is None
        with pytest.raises(ValueError):
            client.submit(fail, 1, key=key_bad).result()
    finally:
        client.unregister_worker_plugin(name)
    lines = open(path).read().splitlines()
    assert [line for line in lines if line.startswith(key_ok)] == [
        f"{key_ok} ready executing", f"{key_ok} executing memory"]
    assert [line for line in lines if line.startswith(key_bad)] == [
        f"{key_bad} ready executing", f"{key_bad} executing error"]


def test_a_client_made_in_a_task_carries_the_plugins(client):
    tag = uuid.uuid4().hex
    try:
        client.register_plugin(SetState(tag, "nested"), name=tag)
        assert client.submit(read_state_in_nested_task, tag, pure=False).result() == "nested"
    finally:
        client.unregister_worker_plugin(tag)


def test_dasks_own_environ_and_upload_file_are_accepted(client, tmp_path):
    plugin_mod = need("distributed.diagnostics.plugin")
    var = f"RAYDASK_TEST_{uuid.uuid4().hex.upper()}"
    plugin = plugin_mod.Environ({var: "dask"})
    modname = f"uploaded_{uuid.uuid4().hex}"
    path = tmp_path / f"{modname}.py"
    path.write_text("VALUE = 'uploaded'\n")
    try:
        client.register_plugin(plugin, name="dask-environ")
        client.register_plugin(plugin_mod.UploadFile(str(path)))
        assert client.submit(read_env, var, pure=False).result()[1] == "dask"
        assert client.submit(_uploaded, modname, pure=False).result() == "uploaded"
    finally:
        client.unregister_worker_plugin("dask-environ")
        client.unregister_worker_plugin("upload_file")
    with pytest.raises(TypeError, match="worker plugins only"):
        client.register_plugin(need("distributed").SchedulerPlugin())


def _uploaded(modname):
    import importlib

    return importlib.import_module(modname).VALUE


def test_bad_input_is_refused_and_the_client_keeps_working(client):
    with pytest.raises(TypeError, match="plugin name must be a string, got 5"):
        client.register_plugin(SetState("t", 1), name=5)
    with pytest.raises(TypeError, match="topic must be a string, got 123"):
        client.subscribe_topic(123, print)
    with pytest.raises(TypeError, match="handler must be callable, got 'nope'"):
        client.subscribe_topic("t", "nope")
    with pytest.raises(ValueError, match="no nanny plugins"):
        client.unregister_worker_plugin("x", nanny=True)
    with pytest.raises(TypeError, match="logger_name must be a string or None, got 1"):
        client.forward_logging(1)
    assert client.submit(read_state, "t", pure=False).result()[1] is None


def test_asynchronous_client_awaits_registration_and_async_handlers(client):
    topic = f"topic-{uuid.uuid4().hex}"
    tag = uuid.uuid4().hex

    async def main():
        async with Client(asynchronous=True, set_as_default=False, dashboard_address=None) as c:
            loop = asyncio.get_running_loop()
            got = []

            async def handler(event):
                await asyncio.sleep(0)
                got.append((event[1], asyncio.get_running_loop() is loop))

            c.subscribe_topic(topic, handler)
            response = await c.register_plugin(SetState(tag, "a"), name=tag)
            try:
                assert list(response.values()) == [{"status": "OK"}]
                assert (await c.submit(read_state, tag, pure=False))[1] == "a"
                await c.log_event(topic, "hello")
                for _ in range(400):
                    if got:
                        break
                    await asyncio.sleep(0.05)
                return got
            finally:
                await c.unregister_worker_plugin(tag)

    assert asyncio.run(main()) == [("hello", True)]


def test_subscriber_thread_is_joined_on_close(client):
    c = Client(set_as_default=False, dashboard_address=None)
    c.subscribe_topic(f"topic-{uuid.uuid4().hex}", print)
    thread = c._subscriber._thread
    assert thread.name == "raydask-topics" and thread.is_alive()
    c.close()
    assert not thread.is_alive()


def test_a_node_that_joins_later_sets_the_plugin_up(no_client):
    tag = uuid.uuid4().hex
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        c.register_plugin(SetState(tag, "late"), name=tag)
        first = set(c.scheduler_info()["workers"])
        cluster.scale(2)
        c.wait_for_workers(2, timeout=120)
        (new,) = set(c.scheduler_info()["workers"]) - first
        assert c.submit(read_state, tag, workers=[new], pure=False).result()[1] == "late"
        c.unregister_worker_plugin(tag)
