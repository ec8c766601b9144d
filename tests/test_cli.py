"""``raydask dashboard --address``: it gives up on an address where no Ray cluster answers.

(That it serves a live cluster's tasks is tested in tests/test_dashboard.py, which
has the cluster.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from raydask.__main__ import gcs_host_port


def _run(*args, timeout=60):
    env = dict(os.environ)
    env.setdefault("RAY_TMPDIR", "/tmp/rt-dash")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "raydask", "dashboard", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    return proc, time.monotonic() - start


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def _ray_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]  # Ray's C++ log


@pytest.mark.timeout(90)
def test_nothing_listening_fails_within_the_timeout_with_one_line_naming_the_address():
    port = _closed_port()
    proc, elapsed = _run("--address", f"127.0.0.1:{port}", "--timeout", "2")
    assert proc.returncode == 1
    lines = _ray_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert f"'127.0.0.1:{port}'" in lines[0] and "within 2 s" in lines[0]
    assert proc.stdout == ""
    assert elapsed < 2 + 15  # the interpreter and raydask's imports take a few seconds here


@pytest.mark.timeout(90)
def test_a_port_that_is_no_ray_cluster_fails_within_the_timeout():
    with socket.socket() as listener:  # accepts TCP connections, never speaks gRPC
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        proc, elapsed = _run("--address", f"127.0.0.1:{port}", "--timeout", "4")
    assert proc.returncode == 1
    lines = _ray_lines(proc.stderr)
    assert lines and f"'127.0.0.1:{port}'" in lines[-1] and "within 4 s" in lines[-1], proc.stderr
    assert not any("Traceback" in line for line in lines)
    assert elapsed < 4 + 15


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, needle", [
    (["--address", "nonsense"], "'nonsense'"),
    (["--address", "127.0.0.1:1", "--dashboard-address", "nope:x"], "'nope:x'"),
])
def test_malformed_addresses_fail_at_once(args, needle):
    proc, _ = _run(*args, "--timeout", "30")
    assert proc.returncode == 1
    assert needle in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:6379", ("127.0.0.1", 6379)), ("ray://head:10001", ("head", 10001)),
    ("[::1]:6379", ("::1", 6379)), (" head.example:1 ", ("head.example", 1)),
])
def test_gcs_host_port(address, expected):
    assert gcs_host_port(address) == expected


@pytest.mark.parametrize("address", ["head", "head:", ":6379", "head:0", "head:70000", "head:x"])
def test_gcs_host_port_rejects(address):
    with pytest.raises(ValueError, match="--address"):
        gcs_host_port(address)


# -- raydask scheduler / raydask worker ---------------------------------------------------
def _command(*args):
    """``raydask <args>`` in the foreground of a subprocess (its own session: the test signals it by PID)."""
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, "-m", "raydask", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)


def _address(proc, prefix, timeout=180):
    """The address a command prints after ``prefix`` (it prints once its node is up)."""
    import selectors

    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=1):
                line = proc.stdout.readline()
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
                if not line and proc.poll() is not None:
                    break
    raise AssertionError(f"no {prefix!r} line within {timeout}s; exit {proc.poll()}: {proc.stderr.read()[-3000:] if proc.poll() is not None else ''}")


def _tree(proc):
    import psutil

    me = psutil.Process(proc.pid)
    return [me, *me.children(recursive=True)]


def _stop(proc, tree, timeout=90):
    """SIGTERM ``proc`` by PID; its exit code once it and every process it started have gone."""
    import psutil

    os.kill(proc.pid, signal.SIGTERM)
    code = proc.wait(timeout)
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, f"left behind: {alive!r}"
    return code


def inc(x):
    return x + 1


@pytest.mark.timeout(420)
def test_scheduler_and_worker_commands_serve_until_sigterm_and_leave_no_process(no_client):
    from raydask import Client

    procs = []
    try:
        sched = _command("scheduler", "--port", "0")
        procs.append(sched)
        address = _address(sched, "raydask scheduler at: ")
        work = _command("worker", address, "--nthreads", "2", "--resources", "GPU=1 FOO=2", "--name", "cli-worker")
        procs.append(work)
        worker_address = _address(work, "raydask worker at: ")
        client = Client(address=address, dashboard_address=None)
        try:
            info = client.scheduler_info()["workers"]
            assert list(info) == [worker_address]  # the head runs no tasks: it is no worker
            w = info[worker_address]
            assert w["nthreads"] == 2 and w["name"] == "cli-worker"
            assert w["resources"] == {"GPU": 1.0, "FOO": 2.0}
            assert client.submit(inc, 1, resources={"FOO": 2}).result(timeout=120) == 2
            tree = _tree(work)
            assert any(p.name() == "raylet" for p in tree)
            assert _stop(work, tree) == 0
            deadline = time.monotonic() + 60
            while client.scheduler_info()["workers"] and time.monotonic() < deadline:
                time.sleep(0.5)
            assert client.scheduler_info()["workers"] == {}
        finally:
            client.close()
        tree = _tree(sched)
        assert {"gcs_server", "raylet"} <= {p.name() for p in tree}
        assert _stop(sched, tree) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(30)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, needle", [
    (["worker", "nonsense"], "'nonsense'"),
    (["worker", "127.0.0.1:1", "--resources", "GPU"], "'GPU'"),
    (["worker", "127.0.0.1:1", "--nthreads", "0"], "nthreads must be a positive integer, got 0"),
])
def test_worker_command_rejects_bad_input_at_once(args, needle):
    proc = subprocess.run([sys.executable, "-m", "raydask", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_parse_resources():
    from raydask.__main__ import parse_resources

    assert parse_resources("GPU=1 FOO=2") == {"GPU": 1.0, "FOO": 2.0}
    assert parse_resources("GPU=2,MEMORY=10e9") == {"GPU": 2.0, "MEMORY": 10e9}
    assert parse_resources("") == {}
    for bad in ("GPU", "=1", "GPU=x"):
        with pytest.raises(ValueError, match="--resources"):
            parse_resources(bad)
