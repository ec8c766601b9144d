"""Actors, published datasets and a concurrent.futures executor, the Dask way, on Ray.

Run: ``python examples/actors.py``.  The only change from a dask.distributed
program is the import line.
"""
import concurrent.futures

from raydask import Client, get_client


class Counter:
    """A stateful object living in the cluster: each call changes it."""

    n = 0  # declared on the class: as in Dask, a proxy reads only attributes the class has

    def __init__(self, start=0):
        self.n = start

    def increment(self, by=1):
        self.n += by
        return self.n


def add_many(counter, times):
    """A task that uses an actor it was given."""
    for _ in range(times):
        counter.increment().result()
    return times


def total_of(name):
    """A task that reads a published dataset by name."""
    return sum(get_client().get_dataset(name).result())


def square(x):
    return x * x


if __name__ == "__main__":
    client = Client(n_workers=1, threads_per_worker=2, dashboard_address=None)

    # -- an actor: one object, many calls -------------------------------------------
    counter = client.submit(Counter, 100, actor=True).result()
    print(counter)                                  # <Actor: Counter, key=Counter-...>
    print(counter.increment(5).result())            # 105
    client.gather([client.submit(add_many, counter, 10, pure=False) for _ in range(3)])
    print("n =", counter.n)                         # 135: attribute reads fetch the value

    # -- a published dataset: named data for every client of the cluster -------------
    numbers = client.submit(list, range(10))
    client.publish_dataset(numbers, name="numbers")
    print(client.list_datasets())                   # ['numbers']
    print(client.submit(total_of, "numbers").result())  # 45, read inside a task
    client.unpublish_dataset("numbers")

    # -- an Executor: the stdlib's API over the cluster -------------------------------
    with client.get_executor(pure=False) as executor:
        futures = [executor.submit(square, i) for i in range(5)]
        print(sorted(f.result() for f in concurrent.futures.as_completed(futures)))  # [0, 1, 4, 9, 16]
        print(list(executor.map(square, [5, 6])))   # [25, 36]

    client.close()
