"""A web service that hands each request's work to Ray through raydask's asynchronous client.

The Dask way of serving from an event loop: one ``Client(asynchronous=True)``
for the whole app, ``submit`` in the handler, ``await`` the future.  While a
request waits for its tasks the server keeps answering others: awaiting a
future blocks no thread.

Run it (it starts a local Ray cluster; set ``RAY_ADDRESS`` to join one)::

    python examples/web_service.py            # serves http://127.0.0.1:8000
    curl 'http://127.0.0.1:8000/fib/20'
    curl 'http://127.0.0.1:8000/sum-of-squares?upto=100'
"""

from __future__ import annotations

import contextlib
import os

from fastapi import FastAPI, HTTPException

from raydask import Client, as_completed


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def square(x: int) -> int:
    return x * x


def check(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative input: {x}")
    return x


def create_app(client_kwargs: dict | None = None) -> FastAPI:
    """The app; its client starts with the server and closes with it."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        kwargs = {"dashboard_address": None} | dict(client_kwargs or {})
        async with Client(asynchronous=True, **kwargs) as client:
            app.state.client = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/fib/{n}")
    async def fib_endpoint(n: int):
        return {"n": n, "fib": await app.state.client.submit(fib, n)}

    @app.get("/sum-of-squares")
    async def sum_of_squares(upto: int):
        client = app.state.client
        squares = client.map(square, range(upto))
        total = client.submit(sum, squares)  # the squares go worker to worker, not through here
        return {"upto": upto, "sum": await total}

    @app.get("/first-done")
    async def first_done(n: int = 5):
        client = app.state.client
        async for future, value in as_completed(client.map(fib, range(20, 20 + n)), with_results=True):
            return {"first": value}

    @app.get("/check/{x}")
    async def check_endpoint(x: int):
        try:
            return {"x": await app.state.client.submit(check, x)}
        except ValueError as exc:  # the task's own exception, as in Dask
            raise HTTPException(status_code=422, detail=str(exc)) from None

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
