"""Cluster requests as values, so one search flow serves a blocking and an asyncio client.

A *flow* is a generator that yields :class:`Call` objects and receives each call's response
(or has the client's exception thrown in at the ``yield``); what it returns is the flow's
result.  :func:`run_sync` drives a flow with ``opensearchpy.OpenSearch``, :func:`run_async`
with ``opensearchpy.AsyncOpenSearch``: the two clients have the same methods and raise the same
exceptions, so building, routing, fusion, error messages and result shaping are written once,
and only these two small loops differ.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator, Mapping, TypeVar

__all__ = ["Call", "Flow", "run_sync", "run_async", "search", "msearch", "count", "perform"]

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One client call: ``client.<api>(*args, **kwargs)``, or ``client.transport.perform_request`` for
    ``api == "transport"``."""

    api: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    args: tuple[Any, ...] = ()

    def bound(self, client: Any) -> Any:
        if self.api == "transport":
            return client.transport.perform_request
        return getattr(client, self.api)


Flow = Generator[Call, Any, T]


def search(index: str, body: Mapping[str, Any], params: Mapping[str, str] | None = None) -> Call:
    kwargs: dict[str, Any] = {"index": index, "body": body}
    if params:
        kwargs["params"] = dict(params)
    return Call("search", kwargs)


def msearch(body: list[Mapping[str, Any]]) -> Call:
    return Call("msearch", {"body": body})


def count(index: str, body: Mapping[str, Any]) -> Call:
    return Call("count", {"index": index, "body": body})


def perform(method: str, url: str, body: Mapping[str, Any] | None = None) -> Call:
    return Call("transport", {} if body is None else {"body": body}, (method, url))


def run_sync(client: Any, flow: Flow[T]) -> T:
    """Run ``flow`` with a blocking client (an interrupt closes it without its remaining calls)."""
    try:
        call = next(flow)
        while True:
            try:
                response = call.bound(client)(*call.args, **call.kwargs)
            except Exception as exc:  # noqa: BLE001 - handed to the flow, which decides
                call = flow.throw(exc)
            else:
                call = flow.send(response)
    except StopIteration as done:
        return done.value
    except BaseException:
        _close(flow)
        raise


def _close(flow: Flow[Any]) -> None:
    """Close a flow abandoned mid-way (an interrupt, a cancelled task) without its remaining calls."""
    try:
        flow.close()
    except RuntimeError:   # a flow that yields clean-up calls from a finally block
        pass


async def run_async(client: Any, flow: Flow[T]) -> T:
    """Run ``flow`` with an asyncio client (``AsyncOpenSearch``).

    A cancelled task closes the flow without running its remaining calls (a probe's clean-up
    included: its throw-away pipelines are then left on the cluster).
    """
    try:
        call = next(flow)
        while True:
            try:
                response = await call.bound(client)(*call.args, **call.kwargs)
            except Exception as exc:  # noqa: BLE001 - handed to the flow, which decides
                call = flow.throw(exc)
            else:
                call = flow.send(response)
    except StopIteration as done:
        return done.value
    except BaseException:
        _close(flow)
        raise
