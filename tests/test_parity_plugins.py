"""Parity rows for worker plugins, topic subscriptions and forwarded logging.

``register_plugin`` / ``unregister_worker_plugin`` (replacing by name,
``idempotent``, errors in ``setup``, teardown), ``UploadFile``,
``subscribe_topic`` / ``unsubscribe_topic`` and ``forward_logging`` run the same
snippet on ``distributed`` (an in-process worker) and on raydask.  A plugin
writes what it does to a file, with the process id, so the rows can check it
whether it ran in the client's process (Dask) or in Ray's worker processes.
Where raydask differs on purpose the test says why (``docs/migrating.md``,
"Worker plugins").
"""

from __future__ import annotations

import importlib
import logging
import os
import time
import uuid

import pytest

from test_parity import distributed_client, impl  # noqa: F401

pytestmark = [pytest.mark.parity, pytest.mark.timeout(120)]

#: What the plugins set up in this process, by tag: the tasks read it.
STATE: dict = {}


class Recording:
    """A plugin's behaviour (mixed into each engine's ``WorkerPlugin``, see :func:`make`)."""

    def __init__(self, path, tag, value):
        self.path, self.tag, self.value = path, tag, value

    def _log(self, what):
        with open(self.path, "a") as fh:
            fh.write(f"{what} {self.value} {os.getpid()}\n")

    def setup(self, worker):
        STATE[self.tag] = self.value
        self._log("setup")

    def teardown(self, worker):
        STATE[self.tag] = f"torn-{self.value}"
        self._log("teardown")


class Failing:
    def setup(self, worker):
        raise ZeroDivisionError("setup failed on purpose")


def make(impl, behaviour, *args, idempotent=False, name=None):
    """An instance of ``behaviour`` on ``impl``'s ``WorkerPlugin`` (made here: both engines pickle
    the small class by value and its methods by reference)."""
    base = importlib.import_module(impl.module).WorkerPlugin
    attrs = {"idempotent": idempotent}
    if name is not None:
        attrs["name"] = name
    return type(f"{behaviour.__name__}Plugin", (behaviour, base), attrs)(*args)


def read_state(tag, i):
    time.sleep(0.2)  # two at once on raydask's 2 CPUs: two worker processes take part
    return os.getpid(), STATE.get(tag)


def log_lines(path):
    return open(path).read().split() if os.path.exists(path) else []


def events_by_pid(path):
    """``{pid: ["setup v1", "teardown v1", ...]}`` from a plugin's log."""
    out: dict = {}
    words = log_lines(path)
    for what, value, pid in zip(words[::3], words[1::3], words[2::3]):
        out.setdefault(int(pid), []).append(f"{what} {value}")
    return out


def states(impl, tag, n=6):
    return impl.client.gather(impl.client.map(read_state, [tag] * n, range(n), pure=False))


def addresses(impl):
    return set(impl.client.scheduler_info()["workers"])


@pytest.fixture
def log(tmp_path):
    return str(tmp_path / f"plugin-{uuid.uuid4().hex}.log")


def test_register_plugin_sets_up_before_tasks(impl, log):
    tag = uuid.uuid4().hex
    try:
        response = impl.client.register_plugin(make(impl, Recording, log, tag, "v1"), name=tag)
        assert set(response) == addresses(impl)
        assert list(response.values()) == [{"status": "OK"}] * len(response)
        # every process that ran a task had set the plugin up first
        seen = states(impl, tag)
        assert {value for _, value in seen} == {"v1"}
        if impl.name == "raydask":  # Ray worker processes, not only the one registering set it up
            assert len({pid for pid, _ in seen}) >= 2
    finally:
        impl.client.unregister_worker_plugin(tag)


def test_same_name_replaces_and_tears_down_the_old_one(impl, log):
    tag = uuid.uuid4().hex
    try:
        impl.client.register_plugin(make(impl, Recording, log, tag, "v1"), name=tag)
        states(impl, tag)
        impl.client.register_plugin(make(impl, Recording, log, tag, "v2"), name=tag)
        assert {value for _, value in states(impl, tag)} == {"v2"}
        by_pid = events_by_pid(log)
        assert any("setup v1" in events for events in by_pid.values())
        assert "teardown" in log_lines(log)
        for events in by_pid.values():
            assert events[-1] == "setup v2"
            if "setup v1" in events:  # the old one was torn down before the new one was set up
                assert events[events.index("setup v1") + 1] == "teardown v1"
    finally:
        impl.client.unregister_worker_plugin(tag)


def test_idempotent_plugin_is_not_registered_again(impl, log):
    tag = uuid.uuid4().hex
    try:
        first = impl.client.register_plugin(make(impl, Recording, log, tag, "v1", idempotent=True), name=tag)
        assert list(first.values()) == [{"status": "OK"}] * len(first)
        again = impl.client.register_plugin(make(impl, Recording, log, tag, "v2", idempotent=True), name=tag)
        assert again == {}
        assert {value for _, value in states(impl, tag)} == {"v1"}
        assert "v2" not in log_lines(log)
    finally:
        impl.client.unregister_worker_plugin(tag)


def test_name_defaults_to_the_plugins_name_attribute(impl, log):
    tag = uuid.uuid4().hex
    try:
        impl.client.register_plugin(make(impl, Recording, log, tag, "v1", name=f"named-{tag}"))
        assert {value for _, value in states(impl, tag, 2)} == {"v1"}
    finally:
        impl.client.unregister_worker_plugin(f"named-{tag}")  # raises if it had another name


def test_setup_error_reaches_the_caller_and_tasks_still_run(impl):
    name = f"failing-{uuid.uuid4().hex}"
    try:
        with pytest.raises(ZeroDivisionError, match="setup failed on purpose"):
            impl.client.register_plugin(make(impl, Failing), name=name)
        assert impl.client.submit(read_state, "nothing", 0, pure=False).result()[1] is None
    finally:
        # it stays registered although its setup failed, as in Dask
        response = impl.client.unregister_worker_plugin(name)
        assert list(response.values()) == [{"status": "OK"}] * len(response)


def test_unregister_tears_down(impl, log):
    tag = uuid.uuid4().hex
    impl.client.register_plugin(make(impl, Recording, log, tag, "v1"), name=tag)
    states(impl, tag)
    response = impl.client.unregister_worker_plugin(tag)
    assert set(response) == addresses(impl)
    assert list(response.values()) == [{"status": "OK"}] * len(response)
    after = states(impl, tag)
    assert "teardown" in log_lines(log)
    for _, value in after:
        # a process that had it set up tore it down; one that never had it has nothing
        assert value in ("torn-v1", None)
    with pytest.raises(ValueError, match=f"^The worker plugin {tag} does not exist$"):
        impl.client.unregister_worker_plugin(tag)


def test_register_rejects_classes_and_duck_typed_plugins(impl):
    base = importlib.import_module(impl.module).WorkerPlugin
    with pytest.raises(TypeError, match="^Please provide an instance of a plugin, not a type.$"):
        impl.client.register_plugin(type("P", (base,), {}))

    class Duck:
        def setup(self, worker):
            pass

    with pytest.raises(TypeError, match="^Registering duck-typed plugins is not allowed"):
        impl.client.register_plugin(Duck())


def uploaded_value(modname):
    return importlib.import_module(modname).VALUE


def test_upload_file_plugin(impl, tmp_path):
    modname = f"uploaded_{uuid.uuid4().hex}"
    path = tmp_path / f"{modname}.py"
    path.write_text("VALUE = 42\n")
    upload = importlib.import_module(f"{impl.module}.diagnostics.plugin" if impl.name == "distributed"
                                     else impl.module).UploadFile
    try:
        response = impl.client.register_plugin(upload(str(path)))
        assert list(response.values()) == [{"status": "OK"}] * len(response)
        assert impl.client.submit(uploaded_value, modname).result() == 42
    finally:
        impl.client.unregister_worker_plugin("upload_file")


# -- topics -------------------------------------------------------------------------------
def log_from_task(engine, topic, msg):
    importlib.import_module(engine).get_worker().log_event(topic, msg)
    return msg


def wait_until(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_subscribe_topic_receives_new_events(impl):
    topic = f"topic-{uuid.uuid4().hex}"
    impl.client.log_event(topic, "before")  # logged before the subscription: not delivered
    got = []
    impl.client.subscribe_topic(topic, got.append)
    try:
        time.sleep(0.5)  # Dask's subscription reaches the scheduler asynchronously
        impl.client.log_event(topic, {"from": "client"})
        impl.client.submit(log_from_task, impl.module, topic, {"from": "task"}).result()
        wait_until(lambda: len(got) >= 2)
        time.sleep(0.2)
        assert [type(t) for t, _ in got] == [float, float]
        assert got[0][1] == {"from": "client"}
        assert got[1][1]["from"] == "task"  # Dask's worker adds "worker" to dict messages
    finally:
        impl.client.unsubscribe_topic(topic)
    time.sleep(0.5)  # Dask's unsubscription reaches the scheduler asynchronously too (a message)
    impl.client.log_event(topic, "after")
    time.sleep(0.5)
    assert len(got) == 2
    never = f"never-{uuid.uuid4().hex}"
    with pytest.raises(ValueError, match=f"^No event handler known for topic {never}.$"):
        impl.client.unsubscribe_topic(never)
    if impl.name == "raydask":  # Dask keeps the handler after unsubscribing (its dict is never
        # cleared), so a second unsubscribe_topic passes there; raydask removes it, as Dask's docs say
        with pytest.raises(ValueError, match=f"^No event handler known for topic {topic}.$"):
            impl.client.unsubscribe_topic(topic)


def log_a_warning(name, n):
    logging.getLogger(name).warning("hello %s", n)
    return n


def test_forward_logging_round_trip(impl):
    name = f"forwarded.{uuid.uuid4().hex}"
    received = []

    class Keep(logging.Handler):
        def emit(self, record):
            if hasattr(record, "worker"):  # forwarded ones (Dask's in-process worker logs here too)
                received.append(record)

    handler = Keep()
    logging.getLogger(name).addHandler(handler)
    try:
        response = impl.client.forward_logging(name)
        assert list(response.values()) == [{"status": "OK"}] * len(response)
        assert impl.client.submit(log_a_warning, name, 5).result() == 5
        wait_until(lambda: received)
    finally:
        # Dask's in-process worker forwards the client's own re-emitted record again (it is the
        # same process), so stop at the first one
        impl.client.unforward_logging(name)
        logging.getLogger(name).removeHandler(handler)
    record = received[0]
    assert (record.name, record.levelname, record.getMessage()) == (name, "WARNING", "hello 5")
    assert record.args is None and record.funcName == "log_a_warning"
    assert record.worker in addresses(impl)
    with pytest.raises(ValueError):  # nothing forwarded any more (Dask: no such plugin)
        impl.client.unforward_logging(name)


# -- register_worker_callbacks -------------------------------------------------------------
def _callback_plain(tag):
    STATE[tag] = "plain"


def _callback_with_worker(tag, dask_worker):
    STATE[tag] = f"worker {dask_worker.address}"


def _worker_plugins(dask_worker):
    return list(dask_worker.plugins)


def plugin_names(impl) -> set:
    """The names of the worker plugins registered now."""
    if impl.name == "raydask":
        from raydask.coordinator import call
        from raydask.plugins import PluginStore

        return {name for name, _, _ in call(PluginStore, "snapshot")[2]}
    return set().union(*impl.client.run(_worker_plugins).values())


def test_register_worker_callbacks_runs_setup_with_or_without_dask_worker(impl):
    import functools

    plain, with_worker = uuid.uuid4().hex, uuid.uuid4().hex
    before = plugin_names(impl)
    try:
        for setup in (functools.partial(_callback_plain, plain),
                      functools.partial(_callback_with_worker, with_worker)):
            assert set(impl.client.register_worker_callbacks(setup)) == addresses(impl)
        assert len(plugin_names(impl) - before) == 2  # one plugin per call
        assert {value for _, value in states(impl, plain)} == {"plain"}
        seen = {value for _, value in states(impl, with_worker)}
        assert len(seen) == 1 and seen.pop().split(" ", 1)[1] in addresses(impl)
    finally:
        for name in plugin_names(impl) - before:
            impl.client.unregister_worker_plugin(name)


def test_register_worker_callbacks_rejects_a_non_callable(impl):
    if impl.name == "raydask":  # Dask accepts it and fails in setup on every worker later
        with pytest.raises(TypeError, match="callable"):
            impl.client.register_worker_callbacks(42)
    assert impl.client.submit(len, "ok").result(timeout=60) == 2


# -- a task's log_event names its worker ---------------------------------------------------
def _log_dict(engine, topic):
    importlib.import_module(engine).get_worker().log_event(topic, {"n": 1})
    importlib.import_module(engine).get_worker().log_event(topic, "plain")


def test_task_logged_dict_events_carry_the_worker_address(impl):
    topic = f"plugins-worker-{uuid.uuid4().hex}"
    impl.client.submit(_log_dict, impl.name, topic, pure=False).result(timeout=60)
    deadline = time.time() + 30
    while len(impl.client.get_events(topic)) < 2 and time.time() < deadline:
        time.sleep(0.05)  # Dask's worker sends its events in batches
    (_, first), (_, second) = impl.client.get_events(topic)
    assert first["n"] == 1 and first["worker"] in addresses(impl)
    assert second == "plain"
