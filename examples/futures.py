"""Dask's "Custom Workloads with Futures" example, run on Ray by raydask.

The code is the seed notebook's (``futures.ipynb`` beside this file), cell by
cell, with one change: the import line says ``raydask`` instead of
``dask.distributed``.  Expressions that the notebook displays are printed.
Set ``RAYDASK_EXAMPLE_SLEEP`` (default 1) to scale the random sleeps, e.g.
``0.05`` for a quick run; set ``RAYDASK_EXAMPLE_LINGER`` to a number of seconds
to keep the dashboard up after the computation.
"""
import os

SLEEP = float(os.environ.get("RAYDASK_EXAMPLE_SLEEP", "1"))

# [1]
from raydask import Client, progress
client = Client(threads_per_worker=4, n_workers=1)
print(client)
print("dashboard:", client.dashboard_link)

# [2]
import time
import random

def inc(x):
    time.sleep(random.random() * SLEEP)
    return x + 1

def double(x):
    time.sleep(random.random() * SLEEP)
    return 2 * x

def add(x, y):
    time.sleep(random.random() * SLEEP)
    return x + y

# [3]
print(inc(1))

# [4]
future = client.submit(inc, 1)  # returns immediately with pending future
print(future)

# [5]
time.sleep(1 * SLEEP + 0.5)
print(future)  # scheduler and client talk constantly

# [6]
print(future.result())

# [7]
x = client.submit(inc, 1)
y = client.submit(double, 2)
z = client.submit(add, x, y)
print(z)

# [8]
print(z.result())

# [9]
zs = []

# [10]  (%%time)
start = time.perf_counter()
for i in range(256):
    x = client.submit(inc, i)     # x = inc(i)
    y = client.submit(double, x)  # y = inc(x)
    z = client.submit(add, x, y)  # z = inc(y)
    zs.append(z)
print(f"Wall time: {time.perf_counter() - start:.2f} s")

# [11]
total = client.submit(sum, zs)

# [12]
client.cluster.scale(10)  # ask for ten 4-thread workers

# [13]
L = zs
while len(L) > 1:
    new_L = []
    for i in range(0, len(L), 2):
        future = client.submit(add, L[i], L[i + 1])  # add neighbors
        new_L.append(future)
    L = new_L                                   # swap old list for new

print("tree reduction:", L[0].result(), "total:", total.result())

# [14]
del future, L, new_L, total  # clear out some old work

# [15]
from raydask import as_completed

zs = client.map(inc, zs)
seq = as_completed(zs)

while seq.count() > 1:  # at least two futures left
    a = next(seq)
    b = next(seq)
    new = client.submit(add, a, b, priority=1)  # add them together
    seq.add(new)                                # add new future back into loop

print("as_completed sum:", next(seq).result())

linger = float(os.environ.get("RAYDASK_EXAMPLE_LINGER", "0"))
if linger:
    print(f"dashboard stays up for {linger:g} s at {client.dashboard_link}")
    time.sleep(linger)
client.close()
