"""Sans-I/O plumbing: the Qdrant layer's logic is written once, as generators.

A logic generator ``yield``\\ s :class:`Call` objects (a client method name and its
keyword arguments) and receives the result (or the raised exception, thrown back
into it). :func:`drive` runs it against a :class:`~qdrant_client.QdrantClient`,
:func:`adrive` against an :class:`~qdrant_client.AsyncQdrantClient`; so the sync and
async clients share every line of planning, statistics and reranking code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator

__all__ = ["Call", "Logic", "drive", "adrive"]


@dataclass
class Call:
    """One client call: ``getattr(client, name)(**kwargs)``."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


Logic = Generator[Call, Any, Any]


def drive(gen: Logic, client: Any) -> Any:
    """Run a logic generator with a synchronous client; return its value."""
    send: Any = None
    exc: BaseException | None = None
    while True:
        try:
            call = gen.throw(exc) if exc is not None else gen.send(send)
        except StopIteration as stop:
            return stop.value
        exc = None
        try:
            send = getattr(client, call.name)(**call.kwargs)
        except Exception as e:  # handed to the logic, which may recover
            exc, send = e, None


async def adrive(gen: Logic, client: Any) -> Any:
    """Run a logic generator with an asynchronous client; return its value."""
    send: Any = None
    exc: BaseException | None = None
    while True:
        try:
            call = gen.throw(exc) if exc is not None else gen.send(send)
        except StopIteration as stop:
            return stop.value
        exc = None
        try:
            send = await getattr(client, call.name)(**call.kwargs)
        except Exception as e:
            exc, send = e, None
