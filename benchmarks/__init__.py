"""raydask against raw Ray and dask.distributed on the same machine.

Run ``python -m benchmarks`` (or ``./dev bench``); ``--quick`` for a smoke run,
``--only NAME`` to pick workloads, ``--list`` to see them.  Each engine runs in
its own long-lived subprocess (Ray allows one cluster per process, and startup
is then paid once); the parent interleaves repetitions A B C A B C ... so that
machine drift falls on every engine alike, and writes medians and ratios to
``benchmarks/RESULTS.md``.  Nothing here is asserted by tests: the numbers are
for reading.
"""
