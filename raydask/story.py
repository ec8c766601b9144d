"""``Client.story``: a key's transitions in Dask's tuple shape, from what raydask records.

Dask's scheduler and workers log every transition of a key; raydask keeps one
state per key (:class:`~raydask.future.FutureState`, or the event log's frozen
:class:`~raydask.events.TaskEvent` once released) with three timestamps: when
the client submitted it, and when the task started and stopped on its worker
(the receipt, :class:`~raydask.records.TaskRecord`).  This module turns those
facts into Dask's records::

    ("scheduler", key, start, finish, recommendations, stimulus_id, timestamp)
    (worker address, key, start, finish, finish, recommendations, stimulus_id, timestamp)

Nothing here talks to Ray: the caller hands in the facts and the node table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Facts", "collect", "records"]


@dataclass(frozen=True, slots=True)
class Facts:
    """What is recorded of one key: enough for its story, nothing more."""

    key: object
    submitted: float
    phase: str  # Dask's scheduler state now (raydask.future.FutureState.phase)
    record: object = None  # the TaskRecord of a task that ran, if known
    scattered: bool = False


def _one(facts: Facts, addresses: dict) -> list[tuple]:
    key, t0 = facts.key, facts.submitted
    if facts.scattered:  # data the client put into the object store: in memory from birth
        return [("scheduler", key, "released", "memory", {}, f"scatter-{t0}", t0)]
    out = [("scheduler", key, "released", "waiting", {key: "processing"}, f"update-graph-{t0}", t0)]
    rec = facts.record
    if rec is None:
        return out
    erred = facts.phase == "erred"
    worker = addresses.get(rec.node_id, f"ray://{rec.node_id}")
    started, stopped = f"compute-task-{rec.start}", f"task-{'erred' if erred else 'finished'}-{rec.stop}"
    end, worker_end = ("erred", "error") if erred else ("memory", "memory")
    out += [
        # the hand-over to a Ray worker is not recorded: "processing" is stamped when the task started
        ("scheduler", key, "waiting", "processing", {}, started, rec.start),
        (worker, key, "ready", "executing", "executing", {}, started, rec.start),
        (worker, key, "executing", worker_end, worker_end, {}, stopped, rec.stop),
        ("scheduler", key, "processing", end, {}, stopped, rec.stop),
    ]
    return out


def records(facts, keys_or_stimuli, addresses: dict) -> list[tuple]:
    """The records of ``facts`` whose key or stimulus id is in ``keys_or_stimuli``, oldest first.

    Args:
        facts: :class:`Facts` of every key the client knows.
        addresses: node id -> worker address, for the worker records.
    """
    wanted = set(keys_or_stimuli)
    out = []
    for f in facts:
        rows = _one(f, addresses)
        out += rows if f.key in wanted else [r for r in rows if r[-2] in wanted]
    out.sort(key=lambda r: r[-1])
    return out


def collect(log, states, keys_or_stimuli, addresses: dict) -> list[tuple]:
    """``Client.story``: the records of ``keys_or_stimuli`` from the client's held ``states`` and,
    for released keys, its event log ``log`` (None: the client keeps none).

    The caller settles the states asked about; their records are waited for here
    (:meth:`~raydask.future.FutureState.load_record`).
    """
    facts: dict = {}
    if log is not None:  # released keys the log still remembers, and the live ones
        _, events = log.snapshot(0)
        for ev in events:
            facts[ev.key] = Facts(ev.key, ev.submitted, ev.state, ev.record, ev.scattered)
    wanted = set(keys_or_stimuli)
    for st in states:
        record = st.load_record() if st.key in wanted else st.record
        facts[st.key] = Facts(st.key, st.submitted, st.phase(), record, st.scattered)
    return records(facts.values(), keys_or_stimuli, addresses)
