"""Cluster requests as values, so one search flow serves a blocking and an asyncio client.

A *flow* is a generator that yields :class:`Call` objects and receives each call's response
(or has the client's exception thrown in at the ``yield``); what it returns is the flow's
result.  :func:`run_sync` drives a flow with ``opensearchpy.OpenSearch``, :func:`run_async`
with ``opensearchpy.AsyncOpenSearch``: the two clients have the same methods and raise the same
exceptions, so building, routing, fusion, error messages and result shaping are written once,
and only these two small loops differ.

:func:`read` wraps a search or msearch call so that one a lost node failed is sent once more;
every search the searchers and the fusion probe send goes through it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator, Iterator, Mapping, TypeVar

from opensearchpy.exceptions import TransportError

__all__ = ["Call", "Flow", "run_sync", "run_async", "search", "msearch", "count", "perform", "read", "causes",
           "node_left"]

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


def causes(err: Any) -> Iterator[Mapping[str, Any]]:
    """An engine error and every error under it: ``root_cause``, ``failed_shards``, ``caused_by``."""
    if not isinstance(err, Mapping):
        return
    yield err
    for root in err.get("root_cause") or ():
        yield from causes(root)
    for shard in err.get("failed_shards") or ():
        if isinstance(shard, Mapping):
            yield from causes(shard.get("reason"))
    yield from causes(err.get("caused_by"))


# a node left the cluster (killed, restarting, cut off) while a shard of the request was on it
_NODE_LEFT = frozenset({"node_not_connected_exception", "node_disconnected_exception", "node_closed_exception",
                        "connect_transport_exception", "send_request_transport_exception"})


def node_left(resp: Any) -> bool:
    """Whether a response (or an item of an msearch) failed, or lost shards, because a node left."""
    if not isinstance(resp, Mapping):
        return False
    shards = [f.get("reason") for f in (resp.get("_shards") or {}).get("failures") or () if isinstance(f, Mapping)]
    return any(e.get("type") in _NODE_LEFT for f in (resp.get("error"), *shards) for e in causes(f)) or \
        any(node_left(item) for item in resp.get("responses") or ())


def read(call: Call) -> Flow[Any]:
    """``call`` (a search, an msearch), sent once more when it failed because a node left.

    The engine fails a search over to a shard's other copy only in its query phase: a node
    that dies between the query and the fetch phase fails the request (or an msearch item, or
    drops its shards from a partial result) with a node-not-connected error, though every
    shard has a live copy.  A search is a read, so sending it again is safe, and the second
    one runs on the copies that are left.  Once: a cluster that keeps failing says so.
    """
    try:
        resp = yield call
    except TransportError as exc:
        if not node_left(getattr(exc, "info", None)):
            raise
        return (yield call)
    if node_left(resp):
        resp = yield call
    return resp


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
