"""Dask's coordination primitives on Ray: tasks that share a queue, a lock and a flag.

The code is plain dask.distributed code with one change, the import line.
Producer tasks wait for an ``Event`` from the client, then put numbers into a
``Queue``; consumer tasks take them (until a ``None``) and guard a shared file
with a ``Lock``; a ``Variable`` hands a Future from the client to tasks that a
``Semaphore`` lets run one at a time.  Run it as a script; with ``RAY_ADDRESS``
set it joins that cluster instead of starting one.
"""
import os
import tempfile

from raydask import Client, Event, Lock, Queue, Semaphore, Variable


def produce(queue, go, start, n):
    assert go.wait(timeout=60)  # every producer starts together
    for i in range(start, start + n):
        queue.put(i)
    return n


def consume(queue, lock, path):
    """Take numbers until a None; append each square to ``path``."""
    done = 0
    while (x := queue.get(timeout=60)) is not None:
        with lock:  # one writer at a time
            with open(path, "a") as f:
                f.write(f"{x * x}\n")
        done += 1
    return done


def scaled(variable, limiter):
    with limiter:  # at most one of these at a time
        factor = variable.get(timeout=30).result()  # a Future, stored by the client
        return factor * 10


if __name__ == "__main__":
    client = Client(dashboard_address=None)
    tag = f"example-{os.getpid()}"  # names are cluster-wide: keep this run's apart
    queue, lock, go = Queue(f"{tag}-work"), Lock(f"{tag}-file"), Event(f"{tag}-go")
    path = os.path.join(tempfile.mkdtemp(), "squares.txt")

    consumers = [client.submit(consume, queue, lock, path, pure=False) for _ in range(2)]
    producers = [client.submit(produce, queue, go, i * 10, 10, pure=False) for i in range(3)]
    go.set()
    print("produced:", sum(client.gather(producers)))
    for _ in consumers:
        queue.put(None)  # one stop sign each
    print("consumed:", sum(client.gather(consumers)))
    with open(path) as f:
        squares = sorted(int(line) for line in f)
    assert squares == [i * i for i in range(30)], squares

    factor = Variable(f"{tag}-factor")
    factor.set(client.submit(lambda: 4, pure=False))
    limiter = Semaphore(max_leases=1, name=f"{tag}-limit")
    print("scaled:", client.gather([client.submit(scaled, factor, limiter, pure=False) for _ in range(3)]))
    factor.delete()
    queue.close()
    limiter.close()
    client.close()
    print("done")
