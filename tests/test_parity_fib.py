"""Parity rows for tasks launching tasks: the Fibonacci blocks of Dask's task-launch page.

distributed's ``docs/source/task-launch.rst`` (and ``futures.rst``, "Submit Tasks
from Tasks") computes Fibonacci numbers with tasks that submit their two
predecessors: once with ``get_client`` + ``secede``/``rejoin``, once with
``worker_client``.  The functions (``benchmarks/tasks.py``, also the benchmark
rows) are those blocks, with the module (``distributed`` or ``raydask``) passed
in, since the same code runs on both.
Dask's scheduler runs each key once, however many tasks submit it: ``fib(n)``
is ``n + 1`` tasks, not ``2 fib(n + 1) - 1``.  raydask shares keys within one
process only (the process's one task client): the same key submitted from two
worker processes runs twice (docs/migrating.md).
"""

from __future__ import annotations

import importlib
import os

import pytest

from benchmarks.tasks import fib_get_client, fib_worker_client  # the page's two blocks, as benchmarked
from test_parity import distributed_client, impl  # noqa: F401 - fixtures

pytestmark = [pytest.mark.parity, pytest.mark.timeout(180)]


def fib_logged(n, api, path):
    """``fib_worker_client`` that writes one line per task run to ``path``."""
    with open(path, "a") as f:
        f.write(f"{n} {os.getpid()}\n")
    if n < 2:
        return n
    with importlib.import_module(api).worker_client() as client:
        a, b = client.gather([client.submit(fib_logged, n - 1, api, path),
                              client.submit(fib_logged, n - 2, api, path)])
    return a + b


def test_get_client_block(impl):
    assert impl.client.submit(fib_get_client, 10, impl.module).result() == 55


def test_worker_client_block(impl):
    assert impl.client.submit(fib_worker_client, 10, impl.module).result() == 55


def test_each_key_runs_once_per_scheduler_however_many_tasks_submit_it(impl, tmp_path):
    # fib(k) is submitted by fib(k + 1) and by fib(k + 2): one task per key, 9 in all
    path = tmp_path / "runs.txt"
    assert impl.client.submit(fib_logged, 8, impl.module, str(path)).result() == 21
    runs = sorted(int(line.split()[0]) for line in path.read_text().splitlines())
    if impl.name == "raydask":  # keys are shared per worker process, not cluster-wide (migrating.md)
        assert sorted(set(runs)) == list(range(9)) and len(runs) <= 2 * 34 - 1  # at most the undeduplicated tree
    else:
        assert runs == list(range(9))


def test_the_blocks_run_again_with_the_same_keys(impl):
    # once every future of a run is released its keys are forgotten: the next run recomputes
    first = impl.client.submit(fib_get_client, 7, impl.module)
    key = first.key
    assert first.result() == 13
    del first
    again = impl.client.submit(fib_get_client, 7, impl.module)
    assert again.key == key
    assert again.result() == 13
