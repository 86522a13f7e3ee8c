"""The local OpenSearch node (Java launcher + Maven build) and connecting to any cluster.

The node's names are loaded on first use, so that ``engine.urls`` (URL redaction, which every
layer needs) can be imported without the node.
"""
from __future__ import annotations

__all__ = ["EngineError", "LocalEngine", "default_state_dir"]


def __getattr__(name: str):
    if name == "EngineError":
        from .errors import EngineError

        return EngineError
    if name in __all__:
        from . import node

        return getattr(node, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
