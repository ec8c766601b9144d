"""What software runs where: ``Client.get_versions`` (a leaf: no raydask imports).

Dask asks its scheduler, every worker and the client for the same two dicts,
``host`` (Python, OS, machine...) and ``packages`` (name -> version, None when
not installed); :func:`versions` is that answer for this process.  raydask's
"scheduler" is the client's machine's view of the Ray head and each worker's
answer is computed in a task on that worker's node, so a node with another
environment shows up as a mismatch, as in Dask.
"""

from __future__ import annotations

import functools
import os
import platform
import struct
import sys
from importlib.metadata import version

__all__ = ["PACKAGES", "check_packages", "mismatches", "mismatch_message", "versions"]

#: Dask's required and optional packages (``distributed.versions``), then Ray's and ours.
PACKAGES = ("dask", "distributed", "msgpack", "cloudpickle", "tornado", "toolz", "numpy", "pandas", "lz4",
            "ray", "raydask")

#: The packages Dask compares with the scheduler's (it leaves msgpack out); the rest only
#: between the client and the workers.
SCHEDULER_RELEVANT = frozenset({"dask", "distributed", "cloudpickle", "tornado", "toolz", "lz4", "python",
                                "ray", "raydask"})


def check_packages(packages) -> list:
    """``packages`` as a list of names (None: none).

    Raises:
        TypeError: if it is a single string or not an iterable of strings.
    """
    if packages is None:
        return []
    if isinstance(packages, str) or not all(isinstance(p, str) for p in _iterable(packages)):
        raise TypeError(f"packages must be a list of package names, got {packages!r}")
    return list(packages)


def _iterable(value):
    try:
        return list(value)
    except TypeError:
        raise TypeError(f"packages must be a list of package names, got {value!r}") from None


@functools.cache
def _version(package: str) -> str | None:
    # installed metadata, not an import: fast, and no import-time side effects
    try:
        return version(package)
    except Exception:  # noqa: BLE001 - not installed, or broken metadata: unknown, as Dask
        return None


def versions(packages=()) -> dict:
    """``{"host": {...}, "packages": {...}}`` for this process, in Dask's shape."""
    uname = platform.uname()
    host = {
        "python": "%d.%d.%d.%s.%s" % sys.version_info,
        "python-bits": struct.calcsize("P") * 8,
        "OS": uname.system,
        "OS-release": uname.release,
        "machine": uname.machine,
        "processor": uname.processor,
        "byteorder": sys.byteorder,
        "LC_ALL": os.environ.get("LC_ALL", "None"),
        "LANG": os.environ.get("LANG", "None"),
    }
    found = {"python": ".".join(map(str, sys.version_info))}
    for package in (*PACKAGES, *packages):
        found[package] = _version(package)
    return {"host": host, "packages": found}


def mismatches(client: dict, scheduler: dict, workers: dict) -> list:
    """``[(package, client's, scheduler's, workers')]`` for each package whose versions differ.

    Dask's rule: a package counts for the scheduler only if it is scheduler-relevant;
    the workers' column is one version when they agree, else the set of them.
    """
    source = client["packages"]
    head = scheduler["packages"]
    per_worker = {w: v["packages"] for w, v in workers.items()}
    names = set(source) | set(head)
    for found in per_worker.values():
        names |= set(found)
    rows = []
    for name in sorted(names):
        worker_versions = {found.get(name, "MISSING") for found in per_worker.values()}
        seen = {source.get(name, "MISSING")} | worker_versions
        if name in SCHEDULER_RELEVANT:
            seen.add(head.get(name, "MISSING"))
        if len(seen) > 1:
            column = next(iter(worker_versions)) if len(worker_versions) == 1 else (worker_versions or None)
            rows.append((name, source.get(name, "MISSING"), head.get(name, "MISSING"), column))
    return rows


def mismatch_message(rows) -> str:
    """Dask's warning text: ``"Mismatched versions found"`` and a table of ``rows``."""
    header = ("Package", "Client", "Scheduler", "Workers")
    cells = [header] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = [rule, _row(header, widths), rule, *(_row(row, widths) for row in cells[1:]), rule]
    return "Mismatched versions found\n\n" + "\n".join(lines)


def _row(cells, widths) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
