"""The benchmark harness runs end to end (tiny sizes); its numbers are never asserted."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quick_run(out, *args, timeout):
    """``python -m benchmarks --quick ARGS --output OUT``, which must succeed."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", *args, "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.timeout(300)
def test_quick_submit_rate_prints_a_ratio_and_ray_against_itself(tmp_path, no_client):
    out = tmp_path / "RESULTS.md"
    proc = quick_run(out, "--only", "submit_rate", "--engines", "raydask,ray", "--aa", timeout=280)
    ratio_lines = [line for line in proc.stdout.splitlines() if line.startswith("submit_rate") and "ratio raydask vs ray" in line]
    assert ratio_lines and "vs ray-again" in ratio_lines[0], proc.stdout
    table = out.read_text()
    assert "| submit_rate | tasks/s |" in table
    assert "Machine: " in table
    (aa,) = [line for line in table.splitlines() if line.startswith("| submit_rate |") and line.count("|") == 5]
    assert float(aa.split("|")[3]) > 0, aa  # Ray ÷ Ray again, a number


def test_unknown_workload_is_rejected():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "no_such_workload"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no_such_workload" in proc.stderr


@pytest.mark.timeout(600)
def test_quick_task_launch_rows_run_on_every_engine(tmp_path, no_client):
    proc = quick_run(tmp_path / "RESULTS.md", "--only", "fib_get_client", "--only", "fib_worker_client", timeout=580)
    for row in ("fib_get_client", "fib_worker_client"):
        lines = [line for line in proc.stdout.splitlines() if line.startswith(row) and "vs dask" in line]
        assert lines and "—" not in lines[0], proc.stdout
