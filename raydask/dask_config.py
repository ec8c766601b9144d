"""Dask's configuration, read only where dask is installed (raydask never needs dask).

Dask's workers take their resources from ``distributed.worker.resources``
(``dask.config.set({"distributed.worker.resources.GPU": 1})``, a YAML file, or
``DASK_DISTRIBUTED__WORKER__RESOURCES__GPU=1``) when none are passed.  raydask's
workers do the same when dask is importable; ``import raydask`` itself never
imports dask: the first read does (about 0.3 s, once per process).
"""

from __future__ import annotations

__all__ = ["worker_resources"]


def worker_resources() -> dict:
    """``distributed.worker.resources`` from Dask's config, ``{}`` without dask or without the key.

    Raises:
        TypeError: the configured value is not a mapping of names to amounts.
    """
    try:
        import dask.config
    except ImportError:  # not installed (or blocked: sys.modules["dask"] = None)
        return {}

    value = dask.config.get("distributed.worker.resources", default=None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"dask config 'distributed.worker.resources' must be a mapping like {{'GPU': 1}}, got {value!r}")
    return dict(value)
