"""The public face: one import line replaces dask.distributed's."""

import concurrent.futures

import raydask


def test_all_lists_exactly_the_public_names_sorted():
    public = sorted(n for n in vars(raydask) if not n.startswith("_") and n not in {
        "client", "cluster", "errors", "events", "future", "keys", "progress_module", "scheduling",
        "waiting", "worker", "dashboard",
    } and not isinstance(getattr(raydask, n), type(raydask)))
    assert raydask.__all__ == sorted(raydask.__all__)
    assert set(raydask.__all__) == set(public)


def test_seed_imports_work():
    from raydask import Client, as_completed, progress  # noqa: F401


def test_exception_types_are_the_ones_dask_users_catch():
    assert issubclass(raydask.FutureCancelledError, concurrent.futures.CancelledError)
    assert raydask.CancelledError is concurrent.futures.CancelledError
    assert raydask.TimeoutError is TimeoutError
    assert issubclass(raydask.WorkerStartTimeoutError, TimeoutError)


def test_importing_starts_nothing():
    import ray

    import subprocess, sys
    code = "import raydask, ray, threading; print(ray.is_initialized(), threading.active_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "1"], out.stderr
    assert ray  # imported for the subprocess's sake only
