"""Shards and replicas for a new index, chosen for the cluster it is made on.

One node cannot hold a replica of its own shards (the index would stay yellow), so it gets
none; on two or more data nodes one replica keeps every shard searchable and writable when a
node is lost.  One primary shard is the default everywhere: a product catalog of this size
searches fastest in one shard (k-NN and the hybrid query pay per shard), and more shards only
pay off when one shard grows too large for one node; ``--shards`` says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["IndexLayout", "choose_layout", "index_layout"]


@dataclass(frozen=True)
class IndexLayout:
    shards: int
    replicas: int
    data_nodes: int
    warning: str | None = None

    def describe(self) -> str:
        return (f"{self.shards} shard{'s' if self.shards != 1 else ''}, "
                f"{self.replicas} replica{'s' if self.replicas != 1 else ''} "
                f"on {self.data_nodes} data node{'s' if self.data_nodes != 1 else ''}")


def choose_layout(data_nodes: int, shards: int | None = None, replicas: int | None = None) -> IndexLayout:
    """The layout for ``data_nodes`` nodes; what the caller gives wins.  Pure."""
    if shards is not None and shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if replicas is not None and replicas < 0:
        raise ValueError(f"replicas must be 0 or more, got {replicas}")
    nodes = max(1, data_nodes)
    s = 1 if shards is None else shards
    r = (0 if nodes == 1 else 1) if replicas is None else replicas
    warning = None
    if r > nodes - 1:
        warning = (f"{r} replica{'s' if r != 1 else ''} need{'s' if r == 1 else ''} {r + 1} data nodes and the "
                   f"cluster has {nodes}: the index stays yellow (unassigned replicas) until nodes join")
    return IndexLayout(s, r, nodes, warning)


def index_layout(client: Any, shards: int | None = None, replicas: int | None = None) -> IndexLayout:
    """:func:`choose_layout` for the cluster ``client`` talks to (its data nodes, from health)."""
    data_nodes = int(client.cluster.health()["number_of_data_nodes"])
    return choose_layout(data_nodes, shards, replicas)
