"""``raydask dashboard --address``: it gives up on an address where no Ray cluster answers.

(That it serves a live cluster's tasks is tested in tests/test_dashboard.py, which
has the cluster.)
"""

from __future__ import annotations

import os
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
