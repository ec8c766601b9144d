"""Parity rows for the admin surface Dask notebooks call on a client and a cluster.

``get_versions``, ``cluster.get_client()``, ``scale_up``/``scale_down``,
``retire_workers``, ``nbytes``, ``log_event``/``get_events``: the same snippet
runs on ``distributed`` and on raydask; where raydask differs on purpose the
test branches on the engine's name and says why (listed in ``docs/migrating.md``,
"Cluster administration").
"""

from __future__ import annotations

import importlib
import warnings

import pytest

from test_parity import distributed_client, impl  # noqa: F401

pytestmark = [pytest.mark.parity, pytest.mark.timeout(120)]


def inc(x):
    return x + 1


def log_from_task(engine, topic, msg):
    """Log an event from inside a task, as Dask's ``get_worker().log_event``."""
    importlib.import_module(engine).get_worker().log_event(topic, msg)
    return msg


# -- get_versions ----------------------------------------------------------------------
def test_get_versions_shape(impl):
    v = impl.client.get_versions()
    assert set(v) == {"scheduler", "workers", "client"}
    assert set(v["workers"]) == set(impl.client.scheduler_info()["workers"])
    for entry in [v["scheduler"], v["client"], *v["workers"].values()]:
        assert set(entry) == {"host", "packages"}
        assert {"python", "python-bits", "OS", "OS-release", "machine", "processor", "byteorder", "LC_ALL",
                "LANG"} <= set(entry["host"])
        for package in ("python", "dask", "distributed", "msgpack", "cloudpickle", "tornado", "toolz",
                        "numpy", "pandas", "lz4"):
            assert package in entry["packages"]
        assert entry["packages"]["dask"] == v["client"]["packages"]["dask"]
    if impl.name == "raydask":  # raydask also reports the engine underneath
        import ray

        assert v["client"]["packages"]["ray"] == ray.__version__
        assert "raydask" in v["client"]["packages"]


def test_get_versions_extra_packages_and_check(impl):
    v = impl.client.get_versions(packages=["pytest", "no-such-package-xyz"])
    for entry in [v["scheduler"], v["client"], *v["workers"].values()]:
        assert entry["packages"]["pytest"] == importlib.metadata.version("pytest")
        assert entry["packages"]["no-such-package-xyz"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one environment everywhere: check=True neither warns nor raises
        impl.client.get_versions(check=True)


def test_get_versions_mismatch_warns():
    """Dask's check warns (it does not raise) with a table of the differing packages."""
    from raydask import versions

    same = versions.versions()
    other = {"host": same["host"], "packages": dict(same["packages"], toolz="0.0.1")}
    rows = versions.mismatches(same, same, {"tcp://a:1": other})
    assert rows == [("toolz", same["packages"]["toolz"], same["packages"]["toolz"], "0.0.1")]
    text = versions.mismatch_message(rows)
    assert text.startswith("Mismatched versions found\n\n") and "| toolz" in text
    # msgpack differing only on the scheduler is not a mismatch (Dask leaves it out there)
    head = {"host": same["host"], "packages": dict(same["packages"], msgpack="0.0.1")}
    assert versions.mismatches(same, head, {"tcp://a:1": same}) == []


def test_get_versions_bad_input(impl):
    with pytest.raises(TypeError):
        impl.client.get_versions(packages=3) if impl.name == "raydask" else _raise_type_error()
    if impl.name == "raydask":  # Dask accepts a string and iterates its letters; raydask says no
        with pytest.raises(TypeError, match="packages must be a list"):
            impl.client.get_versions(packages="numpy")
    assert impl.client.submit(inc, 1).result(timeout=30) == 2


def _raise_type_error():
    raise TypeError("Dask fails later, inside its RPC, on a non-iterable")
