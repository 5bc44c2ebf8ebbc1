"""The query pipeline: small steps a query flows through, each calling the next.

A step is an object with ``async def resolve(query, nxt) -> bytes`` (the shape of an
aiohttp middleware or a blocky resolver). It may answer itself, change the query and
call ``nxt``, or look at what ``nxt`` answered. The chain is built once in app.py.

Most queries are answered without any real waiting (cache hits, blocks, refusals), so
the listener starts each chain *eagerly*: the coroutine runs at once inside the
datagram callback, and only a query that has to wait for the network gets a Task. This
is what Python 3.12's eager task factory does; it saves the Task and a loop iteration
on every cached answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .wire import Question

Next = Callable[["Query"], Coroutine[Any, Any, bytes]]


@dataclass(slots=True)
class Query:
    """One client query on its way through the chain.

    ``data`` is the query as received; ``client`` the source address as text.
    Steps fill in what they learn (``device``, ``profile``, ``decision``) and who
    answered (``source``: guard, local, policy, cache, stale, upstream, servfail).
    """

    data: bytes
    q: Question
    client: str
    transport: str  # "udp" or "tcp"
    received: float = field(default_factory=time.monotonic)
    device: Any = None
    profile: Any = None
    decision: Any = None
    source: str = ""
    upstream: str = ""
    rcode: int = 0
    reply: Any = None  # the upstream reply (wire.Reply) when one was fetched
    addr: Any = None  # the transport's address to answer (UDP)


class Step(Protocol):
    def resolve(self, query: Query, nxt: Next) -> Coroutine[Any, Any, bytes]: ...


async def _no_answer(query: Query) -> bytes:
    raise RuntimeError("the chain ended without an answer")


def build_chain(steps: Sequence[Step]) -> Next:
    """Compose steps into one callable; the first step sees the query first."""
    handler: Next = _no_answer
    for step in reversed(steps):
        handler = _link(step, handler)
    return handler


def _link(step: Step, nxt: Next) -> Next:
    resolve = step.resolve

    def call(query: Query) -> Coroutine[Any, Any, bytes]:
        return resolve(query, nxt)

    return call


def run_eagerly(
    coro: Coroutine[Any, Any, bytes],
) -> tuple[bytes | None, BaseException | None, asyncio.Task[bytes] | None]:
    """Run ``coro`` until it first waits.

    Returns (result, None, None) if it finished, (None, error, None) if it raised, or
    (None, None, task) with a Task that carries it on to the end.
    """
    try:
        waiting = coro.send(None)
    except StopIteration as done:
        return done.value, None, None
    except Exception as exc:  # noqa: BLE001 - handed to the caller, which logs it
        return None, exc, None
    return None, None, asyncio.get_running_loop().create_task(_carry_on(coro, waiting))


async def _carry_on(coro: Coroutine[Any, Any, bytes], waiting: Any) -> bytes:
    """Drive a coroutine that ``run_eagerly`` started, as a Task would.

    Awaiting the same future here gives the coroutine its outcome through
    ``future.result()`` when it resumes, cancellation included.
    """
    while True:
        try:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                waiting._asyncio_future_blocking = False
                await waiting
        except BaseException:  # noqa: BLE001 - the coroutine sees it on resume
            pass
        try:
            waiting = coro.send(None)
        except StopIteration as done:
            result: bytes = done.value
            return result
