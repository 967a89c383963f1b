"""A client on the far side of a link that goes dark: run inside a private network namespace
(`python -m tests.vanishing FACE`, DATABASE_URL and the timeouts in its environment), it makes
each call of `STEPS` after the test has cut the link, and says how long the call took and what
it raised.

Protocol, one line each: it prints `ready STEP` once the step's connections are open, reads a
line (the test has cut the link), makes the call and prints a JSON object
`{"step", "seconds", "error"}`; then waits for the next line (the link is back) before the
next step.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.config import Settings
from app.db.session import (
    async_engine_from_settings,
    engine_from_settings,
    make_async_session_factory,
    make_session_factory,
)
from app.repositories import AsyncUnitOfWork, UnitOfWork

STEPS = ("statement", "commit", "pre-ping", "connect")
ASYNC_STEPS = (*STEPS, "asyncio-timeout")
ASYNCIO_TIMEOUT = 1.0  # the `asyncio.timeout` around a statement in the last step
_ROW = {"hashed_password": "x"}


def _report(step: str, started: float, error: BaseException | None) -> None:
    seconds = time.monotonic() - started
    name = type(error).__name__ if error is not None else None
    print(json.dumps({"step": step, "seconds": seconds, "error": name}), flush=True)


_cut: list[str] = []  # the steps whose link was cut


def _wait_for_cut(step: str) -> None:
    print(f"ready {step}", flush=True)
    sys.stdin.readline()
    _cut.append(step)


def _left(step: str, error: Exception) -> None:
    """A failure while leaving the step's unit: expected once the link is cut (and the call
    reported); before that, the step could not be set up, which the test must hear of."""
    if step not in _cut:
        print(f"setup of {step} failed: {type(error).__name__}: {error}", flush=True)


def _blocking(step: str) -> None:
    engine = engine_from_settings(Settings())
    factory = make_session_factory(engine)

    def timed(call: Callable[[], Any]) -> None:
        started = time.monotonic()
        try:
            call()
        except Exception as exc:
            return _report(step, started, exc)
        return _report(step, started, None)

    def checkout() -> None:
        with UnitOfWork(factory) as uow:
            uow.users.count()

    try:
        if step == "connect":
            _wait_for_cut(step)
            return timed(lambda: engine.connect().close())
        if step == "pre-ping":
            checkout()  # a pooled connection, idle when the link goes
            _wait_for_cut(step)
            return timed(checkout)
        with UnitOfWork(factory) as uow:
            uow.users.create({**_ROW, "email": f"{step}-{time.time_ns()}@example.com"})
            _wait_for_cut(step)
            timed(uow.users.count if step == "statement" else uow.commit)
    except Exception as exc:
        _left(step, exc)
    finally:
        engine.dispose()
    return None


async def _asyncio(step: str) -> None:
    engine = async_engine_from_settings(Settings())
    factory = make_async_session_factory(engine)

    async def timed(call: Callable[[], Awaitable[Any]]) -> None:
        started = time.monotonic()
        try:
            await call()
        except Exception as exc:
            return _report(step, started, exc)
        return _report(step, started, None)

    try:
        if step == "connect":
            _wait_for_cut(step)

            async def connect() -> None:
                async with engine.connect():
                    pass

            return await timed(connect)
        if step == "pre-ping":
            async with AsyncUnitOfWork(factory) as uow:
                await uow.users.count()
            _wait_for_cut(step)

            async def checkout() -> None:
                async with AsyncUnitOfWork(factory) as uow:
                    await uow.users.count()

            return await timed(checkout)
        async with AsyncUnitOfWork(factory) as uow:
            await uow.users.create({**_ROW, "email": f"{step}-{time.time_ns()}@example.com"})
            _wait_for_cut(step)
            if step == "statement":
                await timed(uow.users.count)
            elif step == "commit":
                await timed(uow.commit)
            elif step == "asyncio-timeout":

                async def bounded() -> None:
                    async with asyncio.timeout(ASYNCIO_TIMEOUT):
                        await uow.users.count()

                await timed(bounded)
    except Exception as exc:
        _left(step, exc)
    finally:
        await engine.dispose()


def main() -> None:
    face = sys.argv[1]
    for step in STEPS if face == "sync" else ASYNC_STEPS:
        if face == "sync":
            _blocking(step)
        else:
            asyncio.run(_asyncio(step))
        sys.stdin.readline()  # the link is back


if __name__ == "__main__":
    main()
