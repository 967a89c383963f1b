"""How a call of the asyncio face reaches the blocking code in SQLAlchemy's greenlet, and what a
task's cancellation does to it.

- One call at a time per unit of work (`run_blocking`): a session does one thing at a time
  (SQLAlchemy's `AsyncSession` is not for concurrent tasks), so calls of one unit from several
  tasks wait their turn, each whole, in the order they came. A call from inside another of the
  same unit (an async iterable of rows that calls back into the unit it is written through) is
  refused: it would wait for itself.
- A cancelled call ends with `CancelledError`: an error its cleanup met on the way out (a
  savepoint rolled back on a connection the cancellation closed) is not what the caller sees,
  nor a result a driver handed back after losing the cancellation.
- A stream left early (`break` out of `async for ... in iterate()`) is closed by the event loop
  on one of its next turns, not at once as a blocking generator is: a call that finds one of
  its unit's streams still open gives the loop those turns first.
- A commit runs to its end (`to_its_end`): once `commit()` is called, a cancellation waits for
  it (the COMMIT may be on its way, and cutting it short would leave the outcome unknown), then
  goes on; its `CancelledError` notes whether the unit committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.error_events import raised_behind
from app.db.errors import InvalidQueryError

P = ParamSpec("P")
T = TypeVar("T")

_TURN = "app_async_turn"
_OPEN_STREAMS = "app_async_open_streams"
# Turns of the event loop a call gives a stream left early to be closed (the finalizer's task is
# made on one turn and runs on the next; closing the result may await once or twice more).
_TURNS_FOR_CLOSING = 4
CALLED_FROM_ITSELF = (
    "a call of this unit of work was made from inside another of its calls (an async iterable "
    "of rows that uses the unit it is written through?): gather the data first, or use another "
    "unit of work"
)
COMMITTED = "the unit of work committed before the cancellation took effect: its writes are stored"


@dataclass
class _Turn:
    """Whose call a unit's session is running, and the lock the others wait on."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    owner: asyncio.Task[Any] | None = None


async def run_blocking(
    session: AsyncSession, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run `fn(*args, **kwargs)` where its database calls can await `session`'s connection, in
    its unit's turn (see the module)."""
    info = session.sync_session.info
    turn: _Turn | None = info.get(_TURN)
    if turn is None:
        turn = info[_TURN] = _Turn()
    me = asyncio.current_task()
    if turn.owner is me and me is not None:
        raise InvalidQueryError(CALLED_FROM_ITSELF)
    if info.get(_OPEN_STREAMS):
        for _ in range(_TURNS_FOR_CLOSING):
            await asyncio.sleep(0)
            if not info.get(_OPEN_STREAMS):
                break
    async with turn.lock:
        turn.owner = me
        asked = me.cancelling() if me is not None else 0
        try:
            result = await session.run_sync(lambda _session: fn(*args, **kwargs))
            if me is not None and me.cancelling() > asked:
                # Cancelled during the call, and the cancellation lost below it (on Python
                # 3.11, asyncio.wait_for hands a task cancelled in the same turn of the loop
                # the result it was waiting for: asyncmy's connect uses it): it goes on.
                raise asyncio.CancelledError
            return result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if raised_behind(exc, asyncio.CancelledError) is not None:
                raise asyncio.CancelledError() from exc
            raise
        finally:
            turn.owner = None


def stream_opened(session: AsyncSession, opened: bool) -> None:
    """Count a stream of `session`'s unit as open (`opened`) or closed again."""
    info = session.sync_session.info
    info[_OPEN_STREAMS] = info.get(_OPEN_STREAMS, 0) + (1 if opened else -1)


async def to_its_end(call: Coroutine[Any, Any, T]) -> T:
    """Await `call` (a unit's commit) to its end even when this task is cancelled meanwhile;
    then the cancellation goes on, noting how the commit ended. The commit's own waits are
    bounded as any statement's."""
    finishing = asyncio.ensure_future(call)
    cancelled: asyncio.CancelledError | None = None
    while not finishing.done():
        try:
            await asyncio.shield(finishing)
        except asyncio.CancelledError as exc:
            cancelled = exc
        except Exception:  # noqa: S110 - the commit's own failure, told below
            pass
    if cancelled is None:
        return finishing.result()
    if finishing.cancelled():
        cancelled.add_note("the commit was cancelled too: whether it was applied is not known")
    elif (failure := finishing.exception()) is not None:
        cancelled.add_note(f"the commit failed: {type(failure).__name__}: {failure}")
    else:
        cancelled.add_note(COMMITTED)
    raise cancelled
