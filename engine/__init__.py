"""The local OpenSearch node (Java launcher + Maven build) and connecting to any cluster."""
from .node import EngineError, LocalEngine, default_state_dir

__all__ = ["EngineError", "LocalEngine", "default_state_dir"]
