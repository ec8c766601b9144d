"""Interleave engines, take medians, print ratios, write RESULTS.md.

Rows are grouped by the cluster they need.  A group's engines live in their own
subprocesses (:func:`benchmarks.engines.serve`) for the whole group, and each
repetition runs the workload once on every engine in turn (A B C A B C ...), so
slow drift of a shared machine falls on all of them alike.  One warm-up run per
engine (at the quick size) precedes the measured ones and is discarded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import engines as engines_mod

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCAL = {"nodes": 1, "cpus": 2}
TWO_NODES = {"nodes": 2, "cpus": 1}


@dataclass
class Row:
    """One line of the table: a workload, the engines it runs on, how to read it."""

    id: str
    workload: str
    engines: tuple
    config: dict
    full: dict
    quick: dict
    unit: str
    higher_is_better: bool
    to_metric: object  # (result dict, params) -> float
    targets: dict = field(default_factory=dict)  # {"ray": (op, bound)}: ratio raydask/other
    reps: int = 3
    warmup: bool = True
    about: str = ""
    fresh: bool = False  # measured in a new process per repetition (startup, memory)
    checks: dict = field(default_factory=dict)  # {part: (op, bound)}: raydask's median part, absolute


def per_second(key):
    return lambda r, p: p[key] / r["seconds"]


def per_call_ms(r, p):
    return r["seconds"] / p["n"] * 1000


def seconds(r, p):
    return r["seconds"]


def megabytes(r, p):
    return r["value"] / 2**20


def milliseconds(r, p):
    return r["seconds"] * 1000


#: Rows whose priority= turns raydask's priority gate on for the rest of the client's life.
PRIORITY_WORKLOADS = ("notebook", "priority_throughput", "priority_jump")
#: The gate's window for 10 ms tasks on 2 CPUs: floor(2 x (1 + 3 ms / 10 ms)) (raydask/priority.py).
JUMP_WINDOW = 2


MAIN = ("raydask", "ray", "dask")
DASH = ("raydask", "raydask+dashboard")
COORD = ("raydask", "ray", "dask")  # Ray: its own Queue; a dict-and-lock actor for Lock/Variable (the floor)
FAST = {"ray": (">=", 0.9)}


def rows() -> list[Row]:
    out = [
        Row("submit_rate", "submit_rate", MAIN, LOCAL, {"n": 2000}, {"n": 200}, "tasks/s", True, per_second("n"),
            about="submit N no-op tasks (timed), then gather (not timed)"),
        Row("throughput", "throughput", MAIN, LOCAL, {"n": 2000}, {"n": 200}, "tasks/s", True, per_second("n"),
            {"ray": (">=", 0.9), "dask": (">=", 3.0)}, about="submit N no-op tasks and gather them"),
        Row("map", "map", MAIN, LOCAL, {"n": 2000}, {"n": 200}, "tasks/s", True, per_second("n"),
            about="client.map over N integers, gather (Ray: a list of .remote calls)"),
        Row("round_trip", "round_trip", MAIN, LOCAL, {"n": 200}, {"n": 20}, "ms/call", False, per_call_ms,
            {"ray": ("<=", 1.2)}, about="submit(...).result() one at a time"),
        Row("chain", "chain", MAIN, LOCAL, {"n": 1000}, {"n": 100}, "tasks/s", True, per_second("n"), dict(FAST),
            about="1,000 tasks, each depending on the previous"),
        Row("tree", "tree", MAIN, LOCAL, {"n": 1024}, {"n": 64}, "leaves/s", True, per_second("n"), dict(FAST),
            about="pairwise tree reduction over 1,024 leaves (2,047 tasks)"),
        Row("as_completed", "as_completed", MAIN, LOCAL, {"n": 2000}, {"n": 200}, "futures/s", True,
            per_second("n"), {"ray": (">=", 1.0)},
            about="submit 2,000, take each as it completes and fetch it (Ray: a ray.wait(num_returns=1) loop)"),
        Row("memory_10k", "memory_10k", MAIN, LOCAL, {"n": 10_000}, {"n": 1000}, "MiB per 10k", False, megabytes,
            {"ray": ("<=", 1.1)}, reps=2, warmup=False, fresh=True,
            about="driver RSS growth while 10,000 futures wait behind a blocker (fresh process each)"),
        Row("scale_up", "scale_up", MAIN, LOCAL, {}, {}, "s/node", False, seconds, reps=3, warmup=False,
            about="add one 2-CPU worker and wait until it is up (then remove it)"),
        Row("notebook", "notebook", MAIN, LOCAL, {"sleep": 0.001}, {"sleep": 0.001}, "s", False, seconds,
            {"dask": ("<=", 0.6)}, about="the seed notebook's code (examples/futures.py), sleeps up to 1 ms, "
                                         "without startup, each run on a new client of the cluster"),
        Row("notebook_one_client", "notebook", MAIN, LOCAL, {"sleep": 0.001, "one_client": True},
            {"sleep": 0.001, "one_client": True}, "s", False, seconds,
            about="the same, every run on one long-lived client (raydask: its priority gate is on "
                  "from the second run, for the whole graph)"),
        Row("priority_throughput", "priority_throughput", MAIN, LOCAL, {"n": 2000}, {"n": 200}, "tasks/s", True,
            per_second("n"), {"ray": (">=", 0.8)},
            about="throughput with priority=i % 5 on every task (Ray: plain throughput, it has no priorities)"),
        Row("priority_jump", "priority_jump", MAIN, LOCAL, {"n": 400, "sleep": 0.01, "delay": 0.1},
            {"n": 40, "sleep": 0.01, "delay": 0.05}, "ms wait", False, milliseconds,
            checks={"overtook": ("<=", JUMP_WINDOW)},
            about="a priority=100 task submitted 0.1 s after 400 priority=0 tasks of 10 ms: ms from its "
                  "submission to its start (Ray: no priorities, the FIFO reference)"),
        Row("async_awaits", "async_awaits", MAIN, LOCAL, {"n": 5000}, {"n": 200}, "futures/s", True,
            per_second("n"), {"ray": (">=", 0.9), "dask": (">=", 3.0)},
            about="5,000 no-op tasks of an asynchronous client, each awaited by its own coroutine in one "
                  "loop (Ray: await ref; Dask: its asynchronous client)"),
        Row("actor_calls", "actor_calls", MAIN, LOCAL, {"n": 1000}, {"n": 100}, "calls/s", True, per_second("n"),
            {"ray": (">=", 0.8), "dask": (">=", 1.0)},
            about="1,000 actor method calls, each awaited (.result()) before the next"),
        Row("actor_inflight", "actor_inflight", MAIN, LOCAL, {"n": 10_000}, {"n": 1000}, "calls/s", True,
            per_second("n"), {"ray": (">=", 0.8), "dask": (">=", 1.0)},
            about="10,000 actor method calls in flight, then every result (Ray: one ray.get of the list)"),
        Row("array_reduction", "array_reduction", MAIN, LOCAL, {"chunks": 1000}, {"chunks": 50}, "s", False,
            seconds, about="dask.array (x * 2).sum() over 1,000 chunks, .compute() through the client "
                           "(Ray: ray.util.dask.ray_dask_get)"),
        Row("dataframe_groupby", "dataframe_groupby", MAIN, LOCAL, {"partitions": 100}, {"partitions": 10},
            "s", False, seconds, about="dask.dataframe groupby-sum over 100 pandas partitions, .compute() "
                                       "through the client (Ray: ray.util.dask.ray_dask_get)"),
        Row("scatter_transfer", "scatter_transfer", MAIN, TWO_NODES, {"mb": 100}, {"mb": 10}, "s", False, seconds,
            about="scatter 100 MB numpy array, a task reading it on the other node, gather it back (2 nodes x 1 CPU)"),
        Row("fib_get_client", "fib_get_client", MAIN, LOCAL, {"n": 10}, {"n": 3}, "s", False, seconds,
            {"dask": ("<=", 1.0)},
            about="Dask's task-launch page, get_client block: fib(10), each task maps fib(n-1), fib(n-2), "
                  "secedes, gathers, rejoins (Dask: 11 keys; Ray: nested fib.remote + ray.get, 177 tasks)"),
        Row("fib_worker_client", "fib_worker_client", MAIN, LOCAL, {"n": 10}, {"n": 3}, "s", False, seconds,
            {"dask": ("<=", 1.0)},
            about="the same page's worker_client block: fib(10), two submits and a gather inside "
                  "`with worker_client()` (Ray: the same nested fib.remote)"),
        Row("queue_put_get", "queue_put_get", COORD, LOCAL, {"n": 10_000}, {"n": 200}, "items/s", True,
            per_second("n"), {"dask": (">=", 1.0)},
            about="10,000 Queue.put of small items, then 10,000 Queue.get, from the client"),
        Row("lock_pairs", "lock_pairs", COORD, LOCAL, {"n": 1000}, {"n": 100}, "pairs/s", True,
            per_second("n"), {"dask": (">=", 1.0)},
            about="1,000 Lock.acquire + release pairs on a free lock, from the client"),
        Row("variable_pairs", "variable_pairs", COORD, LOCAL, {"n": 1000}, {"n": 100}, "pairs/s", True,
            per_second("n"), {"dask": (">=", 1.0)},
            about="1,000 Variable.set + get pairs of small values, from the client"),
    ]
    for name in ("submit_rate", "throughput", "round_trip", "chain", "tree", "as_completed", "notebook"):
        base = next(r for r in out if r.id == name)
        # ratio = off / on: on at most 10% slower means off/on <= 1.1 for rates, >= 1/1.1 for times
        op, bound = ("<=", 1.1) if base.higher_is_better else (">=", 1 / 1.1)
        out.append(Row(f"dashboard/{name}", base.workload, DASH, LOCAL, base.full, base.quick, base.unit,
                       base.higher_is_better, base.to_metric, {"raydask+dashboard": (op, bound)},
                       base.reps, base.warmup, "dashboard on vs off: " + base.about))
    return out


SCALING_NODES = (1, 2, 4)
SCALING = [
    ("submit_rate", {"n": 2000}, {"n": 200}, "tasks/s", per_second("n")),
    ("throughput", {"n": 2000}, {"n": 200}, "tasks/s", per_second("n")),
    ("memory_10k", {"n": 10_000}, {"n": 1000}, "MiB per 10k", megabytes),
]
STARTUP_ENGINES = ("raydask", "ray", "dask", "raydask+dashboard")


# -- engine subprocesses ---------------------------------------------------------------
class EngineProcess:
    """A long-lived subprocess running one engine; ``run`` sends it a workload."""

    def __init__(self, name, config, log_dir, timeout):
        self.name, self.config = name, dict(config)
        self.log = Path(log_dir) / f"{name.replace('+', '-')}-{config['nodes']}x{config['cpus']}.log"
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=engines_mod.serve, args=(child, name, config, str(self.log)),
                                name=f"bench-{name}", daemon=False)
        self.proc.start()
        child.close()
        self.info = self._reply(timeout, "start")

    def _reply(self, timeout, what):
        if not self.conn.poll(timeout):
            self.kill()
            raise RuntimeError(f"{self.name}: {what} took longer than {timeout} s (log: {self.log})")
        try:
            status, payload = self.conn.recv()
        except EOFError:
            self.kill()
            raise RuntimeError(f"{self.name}: process died during {what} (log: {self.log})") from None
        if status == "error":
            raise RuntimeError(f"{self.name}: {what} failed:\n{payload}")
        return payload

    def run(self, workload, params, timeout):
        self.conn.send(("run", workload, params))
        return self._reply(timeout, workload)

    def close(self, timeout=60):
        if self.proc.is_alive():
            try:
                self.conn.send(("close",))
                self.conn.poll(timeout) and self.conn.recv()
            except (OSError, EOFError):
                pass
        self.proc.join(10)
        self.kill()

    def kill(self):
        if self.proc.is_alive():
            self.proc.terminate()  # Ray's SIGTERM handler stops the nodes it started
            self.proc.join(20)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


class Pool:
    """Engine subprocesses kept across groups with the same cluster shape."""

    def __init__(self, log_dir, timeout):
        self.log_dir, self.timeout = log_dir, timeout
        self.live: dict = {}
        self.infos: dict = {}

    def only(self, wanted):
        """Keep the engines in ``wanted`` ((name, config) pairs), closing the others first."""
        keys = {(n, tuple(sorted(c.items()))) for n, c in wanted}
        for k in [k for k in self.live if k not in keys]:
            self.live.pop(k).close()
        out = {}
        for name, config in wanted:
            k = (name, tuple(sorted(config.items())))
            if k not in self.live:
                say(f"  starting {name} ({config['nodes']} node(s) x {config['cpus']} CPU)")
                try:
                    self.live[k] = EngineProcess(name, config, self.log_dir, self.timeout)
                    self.infos[name] = self.live[k].info
                except Exception as exc:  # noqa: BLE001 - an engine that cannot start is reported, not fatal
                    say(f"  ! {exc}")
                    continue
            out[name] = self.live[k]
        return out

    def drop(self, name):
        for k in [k for k in self.live if k[0] == name]:
            self.live.pop(k).kill()

    def close(self):
        for p in self.live.values():
            p.close()
        self.live.clear()


def say(msg):
    print(msg, flush=True)


# -- measuring ---------------------------------------------------------------------------
@dataclass
class Result:
    row: Row
    samples: dict  # engine -> [metric]
    parts: dict  # engine -> {part: [seconds]}
    errors: dict  # engine -> message

    def median(self, engine):
        s = self.samples.get(engine)
        return statistics.median(s) if s else None

    def ratio(self, other):
        a, b = self.median(self.row.engines[0]), self.median(other)
        return a / b if a and b else None


def measure(row, procs, quick, reps, timeout, pool):
    params = row.quick if quick else row.full
    samples = {e: [] for e in row.engines}
    parts = {e: {} for e in row.engines}
    errors = {}
    alive = [e for e in row.engines if e in procs]
    for e in row.engines:
        if e not in procs:
            errors[e] = "engine did not start"
    if row.warmup:
        for e in list(alive):
            try:
                procs[e].run(row.workload, row.quick, timeout)
            except Exception as exc:  # noqa: BLE001
                errors[e] = str(exc).splitlines()[-1]
                say(f"  ! {row.id} warm-up on {e}: {exc}")
                alive.remove(e)
                pool.drop(e) if "took longer" in str(exc) or "died" in str(exc) else None
    for _ in range(reps):
        for e in list(alive):  # A B C A B C ...
            try:
                r = procs[e].run(row.workload, params, timeout)
            except Exception as exc:  # noqa: BLE001
                errors[e] = str(exc).splitlines()[-1]
                say(f"  ! {row.id} on {e}: {exc}")
                alive.remove(e)
                pool.drop(e) if "took longer" in str(exc) or "died" in str(exc) else None
                continue
            samples[e].append(row.to_metric(r, params))
            for k, v in r.get("parts", {}).items():
                parts[e].setdefault(k, []).append(v)
    return Result(row, samples, parts, errors)


def fmt(x):
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def verdict(ratio, target):
    if ratio is None or target is None:
        return ""
    op, bound = target
    ok = ratio >= bound if op == ">=" else ratio <= bound
    return f"{'✅' if ok else '❌'} {op} {bound:.2f}"


def part_median(res, engine, part):
    v = res.parts.get(engine, {}).get(part)
    return statistics.median(v) if v else None


def checks_text(res):
    """The row's absolute checks on raydask's median parts, e.g. ``overtook 1 ✅ <= 3.00``."""
    first = res.row.engines[0]
    return ", ".join(f"{k} {fmt(part_median(res, first, k))} {verdict(part_median(res, first, k), t)}"
                     for k, t in res.row.checks.items())


def parts_text(res):
    return "; ".join(f"{e}: " + ", ".join(f"{k} {fmt(statistics.median(v))}" for k, v in res.parts[e].items())
                     for e in res.row.engines if res.parts.get(e))


def summary_line(res):
    row = res.row
    absolute = " | ".join(f"{e} {fmt(res.median(e))}" for e in row.engines)
    ratios = ", ".join(f"vs {e} {fmt(res.ratio(e))} {verdict(res.ratio(e), row.targets.get(e))}".rstrip()
                       for e in row.engines[1:])
    line = f"{row.id:<26} {row.unit:<12} {absolute} | ratio {row.engines[0]} {ratios}"
    if row.checks:
        line += f" | {checks_text(res)} | parts (medians) {parts_text(res)}"
    return line


def run_fresh(row, quick, reps, timeout):
    """Each repetition starts a fresh process per engine (Ray: one cluster per process)."""
    samples = {e: [] for e in row.engines}
    errors = {}
    params = row.quick if quick else row.full
    mode = "startup" if row.workload == "startup" else f"memory_10k:{params['n']}"
    for _ in range(reps):
        for e in row.engines:
            if e in errors:
                continue
            try:
                out = subprocess.run([sys.executable, "-m", "benchmarks.engines", e, json.dumps(row.config), mode],
                                     cwd=ROOT, capture_output=True, text=True, timeout=timeout)
                line = [x for x in out.stdout.splitlines() if x.startswith("{")]
                if out.returncode or not line:
                    raise RuntimeError(f"exit {out.returncode}: {out.stderr.strip().splitlines()[-1:]}")
                samples[e].append(row.to_metric(json.loads(line[-1]), params))
            except Exception as exc:  # noqa: BLE001
                errors[e] = str(exc)
                say(f"  ! {row.id} on {e}: {exc}")
    return Result(row, samples, {}, errors)


def run_scaling(pool, quick, timeout, results):
    """submit rate, throughput and driver memory on 1, 2 and 4 nodes of 2 CPUs."""
    procs = pool.only([(e, LOCAL) for e in ("raydask", "ray")])
    engines = tuple(e for e in ("raydask", "ray"))
    for nodes in SCALING_NODES:
        say(f"  scaling: {nodes} node(s)")
        for e in list(procs):
            try:
                procs[e].run("set_nodes", {"n": nodes}, timeout)
            except Exception as exc:  # noqa: BLE001
                say(f"  ! {e} set_nodes({nodes}): {exc}")
                procs.pop(e)
        for name, full, small, unit, metric in SCALING:
            memory = name == "memory_10k"
            row = Row(f"scaling/{name}@{nodes}", name, engines, {"nodes": nodes, "cpus": 2}, full, small, unit,
                      not memory, metric, reps=1 if memory else 2, warmup=nodes == 1 and not memory,
                      about=f"{name} on {nodes} node(s) x 2 CPUs", fresh=memory)
            if memory:
                continue  # measured in fresh processes after the engines close, below
            res = measure(row, procs, quick, row.reps, timeout, pool)
            results.append(res)
            say(summary_line(res))
    for e in procs:  # leave them as the local group expects
        try:
            procs[e].run("set_nodes", {"n": 1}, timeout)
        except Exception:  # noqa: BLE001
            pool.drop(e)
    pool.close()
    for nodes in SCALING_NODES:
        name, full, small, unit, metric = SCALING[-1]
        row = Row(f"scaling/{name}@{nodes}", name, engines, {"nodes": nodes, "cpus": 2}, full, small, unit,
                  False, metric, reps=1, warmup=False, about=f"{name} on {nodes} node(s) x 2 CPUs", fresh=True)
        res = run_fresh(row, quick, 1, timeout)
        results.append(res)
        say(summary_line(res))


# -- the report --------------------------------------------------------------------------
def machine() -> dict:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "memory": mem,
            "python": platform.python_version(), "os": platform.platform(),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def report(results, infos, meta, path):
    m = meta["machine"]
    versions = {}
    for info in infos.values():
        versions.update(info.get("versions", {}))
    lines = [
        "# raydask benchmarks",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} in {meta['duration']:.0f} s"
        + (" (**--quick**: tiny sizes, one repetition; not for reading)" if meta["quick"] else "") + ".",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} memory, {m['os']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        + f". Load average at start {meta['load_start']}, at end {m['load']}.",
        "",
        "Each engine ran in its own long-lived process; repetitions were interleaved (A B C A B C ...), "
        "after one discarded warm-up; values are medians. **Ratio** = raydask's median ÷ the other "
        "engine's median in the row's unit, so for tasks/s higher is better and for s, ms or MiB lower is better. "
        "Raw Ray is the idiomatic program (`f.remote` + `ray.get`, a `ray.wait` loop for as_completed) on "
        "`ray.cluster_utils.Cluster`; dask.distributed is a `LocalCluster` with the same CPUs "
        "(1 worker x 2 threads; 2 workers x 1 thread for the transfer).",
        "",
        "The notebook and priority rows run after the others, and the raydask engines are restarted after "
        "each: a `priority=` switches a raydask client to its client-side priority gate for the rest of "
        "the client's life (`raydask/priority.py`), which would slow every later row.",
        "",
    ]
    dash_info = infos.get("raydask+dashboard")
    if dash_info is not None and not dash_info.get("dashboard_module"):
        lines += ["Note: raydask's dashboard server module was not present in this run, so "
                  "`dashboard_address=` turned on only the event log that feeds it.", ""]
    lines += ["## Ratios", "",
              "| workload | unit | raydask ÷ Ray | target | raydask ÷ dask | target |",
              "|---|---|---|---|---|---|"]
    main = [r for r in results if not r.row.id.startswith(("dashboard/", "scaling/"))]
    for res in main:
        row = res.row
        cells = []
        for other in ("ray", "dask"):
            if other in row.engines:
                cells += [fmt(res.ratio(other)), verdict(res.ratio(other), row.targets.get(other))]
            else:
                cells += ["—", ""]
        lines.append(f"| {row.id} | {row.unit} | " + " | ".join(cells) + " |")
    again = [r for r in main if r.samples.get(engines_mod.AGAIN)]
    if again:
        lines += ["", "### Ray ÷ Ray (`--aa`: a second raw-Ray engine, interleaved with the others)", "",
                  "What the ratio of two identical engines reads in this run: a raydask ratio this "
                  "close to 1 is not told apart from it.", "",
                  "| workload | unit | Ray ÷ Ray again | raydask ÷ Ray again |", "|---|---|---|---|"]
        for res in again:
            a, b = res.median("ray"), res.median(engines_mod.AGAIN)
            lines.append(f"| {res.row.id} | {res.row.unit} | {fmt(a / b if a else None)} | "
                         f"{fmt(res.ratio(engines_mod.AGAIN))} |")
    dash = [r for r in results if r.row.id.startswith("dashboard/")]
    if dash:
        lines += ["", "### Dashboard on vs off (raydask)", "",
                  "| workload | unit | off | on | off ÷ on | target (≤ 10% slower) |", "|---|---|---|---|---|---|"]
        for res in dash:
            off, on = res.median("raydask"), res.median("raydask+dashboard")
            ratio = res.ratio("raydask+dashboard")
            lines.append(f"| {res.row.id.split('/', 1)[1]} | {res.row.unit} | {fmt(off)} | {fmt(on)} | {fmt(ratio)} | "
                         f"{verdict(ratio, res.row.targets.get('raydask+dashboard'))} |")
    lines += ["", "## Absolute numbers (median, min–max over repetitions)", "",
              "| workload | unit | raydask | Ray | dask.distributed | what |", "|---|---|---|---|---|---|"]

    def cell(res, e):
        s = res.samples.get(e) or []
        if not s:
            return f"failed: {res.errors.get(e, '')[:80]}" if e in res.row.engines else "—"
        return f"{fmt(statistics.median(s))} ({fmt(min(s))}–{fmt(max(s))}, n={len(s)})" if len(s) > 1 else fmt(s[0])

    for res in main:
        lines.append(f"| {res.row.id} | {res.row.unit} | {cell(res, 'raydask')} | {cell(res, 'ray')} | "
                     f"{cell(res, 'dask')} | {res.row.about} |")
    parts = [(res, e) for res in main if res.row.id == "scatter_transfer" for e in res.row.engines if res.parts.get(e)]
    if parts:
        lines += ["", "Transfer phases (median seconds): " + "; ".join(
            f"{e}: " + ", ".join(f"{k} {fmt(statistics.median(v))}" for k, v in res.parts[e].items())
            for res, e in parts) + "."]
    for res in (r for r in main if r.row.id == "priority_jump"):
        lines += ["", "priority_jump (medians): *overtook* = low tasks that started after the high one was "
                  "submitted and before it started; *ahead* = low tasks that started before it in all; "
                  "*behind* = low tasks still running or not started when it ended; *released* = the gate's "
                  f"tasks in flight when it arrived. {parts_text(res)}. Check: {checks_text(res)} "
                  "(the gate's in-flight window)."]
    scaling = [r for r in results if r.row.id.startswith("scaling/")]
    if scaling:
        lines += ["", "## Scaling: 1, 2, 4 local nodes of 2 logical CPUs each (raydask vs raw Ray)", "",
                  "The nodes share this machine's CPUs, so more nodes add raylets and worker processes, "
                  "not compute: the curves show what grows with the cluster on the client side.", "",
                  "| workload | nodes | unit | raydask | Ray | raydask ÷ Ray |", "|---|---|---|---|---|---|"]
        for res in scaling:
            name, nodes = res.row.id.split("/", 1)[1].split("@")
            lines.append(f"| {name} | {nodes} | {res.row.unit} | {cell(res, 'raydask')} | {cell(res, 'ray')} | "
                         f"{fmt(res.ratio('ray'))} |")
    lines += client_budget(results)
    analysis = HERE / "analysis.md"
    if analysis.exists():
        lines += ["", analysis.read_text().rstrip()]
    Path(path).write_text("\n".join(lines) + "\n")


def client_budget(results) -> list:
    """The client's own cost per task, and where it would cap a 1,000-CPU cluster.

    Submit time per task (submit_rate, timed alone) plus gather time per task
    (measured after every task finished) is CPU the client spends whatever the
    cluster's size; a single client cannot finish tasks faster than one per that
    cost.  A cluster of P CPUs running tasks of d seconds finishes P/d per
    second, so the client is the bottleneck once d < P x cost.
    """
    res = next((r for r in results if r.row.id == "submit_rate"), None)
    if res is None:
        return []
    mem = next((r for r in results if r.row.id == "memory_10k"), None)
    out = ["", "## The client's own cost per task (from submit_rate)", "",
           "Submit and gather are timed separately (gather after every task has finished), so they "
           "measure the client alone. One client process cannot complete more than 1 ÷ (submit + gather) "
           "tasks per second, whatever the cluster; with P CPUs running tasks of d seconds the cluster "
           "completes P ÷ d per second, so the client caps the cluster once d < P × cost.", "",
           "| engine | submit µs/task | gather µs/task | client cap (tasks/s) | 1,000 CPUs saturate the client below | driver MiB per 1M pending futures |",
           "|---|---|---|---|---|---|"]
    for e in res.row.engines:
        sub, gat = res.parts.get(e, {}).get("submit"), res.parts.get(e, {}).get("gather")
        if not sub or not gat:
            continue
        n = (res.row.quick if QUICK[0] else res.row.full)["n"]
        cost = (statistics.median(sub) + statistics.median(gat)) / n
        m = mem.median(e) if mem is not None else None
        out.append(f"| {e} | {fmt(statistics.median(sub) / n * 1e6)} | {fmt(statistics.median(gat) / n * 1e6)} | "
                   f"{fmt(1 / cost)} | {fmt(1000 * cost * 1000)} ms per task | {fmt(m * 100) if m else '—'} |")
    return out


QUICK = [False]


# -- entry point ---------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition: a smoke run")
    parser.add_argument("--only", action="append", default=[],
                        help="workload ids or groups (comma-separated; repeatable): e.g. throughput,chain, "
                             "dashboard, dashboard/round_trip, scatter_transfer, startup, scaling")
    parser.add_argument("--engines", default="", help="restrict to these engines, e.g. raydask,ray")
    parser.add_argument("--aa", action="store_true",
                        help="also run a second raw-Ray engine on the rows Ray runs: Ray ÷ Ray is the run's noise")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per engine (default 3, quick 1)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed for one run of one workload")
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"), help="where to write the Markdown table")
    parser.add_argument("--list", action="store_true", help="list workload ids and exit")
    args = parser.parse_args(argv)
    QUICK[0] = args.quick

    all_rows = rows()
    if args.list:
        for r in all_rows:
            say(f"{r.id:<26} {r.about}")
        say(f"{'startup':<26} fresh process to first result, per engine")
        say(f"{'scaling':<26} submit rate, throughput, memory on 1, 2, 4 nodes (raydask, ray)")
        return 0
    only = {x.strip() for o in args.only for x in o.split(",") if x.strip()}
    engines_filter = {x.strip() for x in args.engines.split(",") if x.strip()}
    known = {r.id for r in all_rows} | {"startup", "scaling", "dashboard"}
    unknown = only - known
    if unknown:
        parser.error(f"unknown workload(s) {sorted(unknown)!r}; see --list")

    def wanted(rid):
        return not only or rid in only or rid.split("/", 1)[0] in only

    def keep_engines(engines):
        return tuple(e for e in engines if not engines_filter or e in engines_filter)

    reps_default = args.reps or (1 if args.quick else 3)
    t_start = time.time()
    meta = {"command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick,
            "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    say(f"# {meta['command']}  ({meta['date']}, load {meta['load_start']})")
    log_dir = tempfile.mkdtemp(prefix="raydask-bench-logs-")
    say(f"# engine logs: {log_dir}")
    pool = Pool(log_dir, args.timeout)
    results = []
    try:
        # local rows first, then scaling (same engines), dashboard, two nodes, startup
        selected = [r for r in all_rows if wanted(r.id)]
        order = ([r for r in selected if r.config == LOCAL and not r.id.startswith("dashboard/")]
                 + [None]  # scaling goes here, reusing the local raydask and Ray engines
                 + [r for r in selected if r.id.startswith("dashboard/")]
                 + [r for r in selected if r.config == TWO_NODES])
        for row in order:
            if row is None:
                if wanted("scaling") and len(keep_engines(("raydask", "ray"))) == 2:
                    say("== scaling")
                    run_scaling(pool, args.quick, args.timeout, results)
                continue
            row.engines = keep_engines(row.engines)
            if args.aa and "ray" in row.engines and not row.fresh:
                row.engines += (engines_mod.AGAIN,)
            if len(row.engines) < 1 or (row.id.startswith("dashboard/") and len(row.engines) < 2):
                continue
            reps = min(reps_default, row.reps) if args.reps is None else args.reps
            say(f"== {row.id}: {row.about}")
            if row.fresh:
                res = run_fresh(row, args.quick, reps, args.timeout)
            else:
                procs = pool.only([(e, row.config) for e in row.engines])
                res = measure(row, procs, args.quick, reps, args.timeout, pool)
                if row.workload in PRIORITY_WORKLOADS:
                    # its priority=1 turned on raydask's priority gate for the rest of the
                    # client's life: later rows get fresh raydask engines
                    pool.drop("raydask")
                    pool.drop("raydask+dashboard")
            results.append(res)
            say(summary_line(res))
        pool.close()
        if wanted("startup") and (not only or "startup" in only):
            engines = keep_engines(STARTUP_ENGINES)
            if engines:
                say("== startup: fresh process to first result")
                row = Row("startup", "startup", engines, LOCAL, {}, {}, "s", False, seconds, fresh=True,
                          about="fresh process: start the cluster (1 node x 2 CPUs) and get one result")
                res = run_fresh(row, args.quick, reps_default, args.timeout)
                results.append(res)
                say(summary_line(res))
    finally:
        pool.close()
    meta["duration"] = time.time() - t_start
    meta["machine"] = machine()
    report(results, pool.infos, meta, args.output)
    say(f"# wrote {args.output} in {meta['duration']:.0f} s")
    failed = [f"{r.row.id}/{e}" for r in results for e in r.errors]
    if failed:
        say(f"# failures: {', '.join(failed)}")
    return 1 if failed else 0
