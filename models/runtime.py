"""The one place cmsearch opens onnxruntime sessions.

A search runs several models one after another: the image tower, then the image head and the
classifier, and for a text + photo query the text encoder too.  Each session has its own
intra-op thread pool, and onnxruntime lets a pool's workers spin for a while after a run to
catch the next one.  On two cores those spinning workers took the cores from the next model:
a photo query took 15 ms where its parts take 5 (BENCHMARKS, "One photo query, several models").
So every session here stops its workers spinning when its run returns
(``session.force_spinning_stop``; they still spin *during* a run, which keeps a run fast), and
the heads, graphs too small to split across threads, get no pool at all (``threads=1``).

A process-wide pool shared by every session (``use_per_session_threads = False``) was as fast,
but it is process state: once it exists, onnxruntime refuses every per-session pool in the
process, so a host that opens its own sessions would break.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["onnx_session"]


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session for ``path``: every graph optimisation, sequential execution,
    ``threads`` intra-op threads (None: onnxruntime's default, one per physical core) that stop
    spinning when a run returns."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = int(threads)
    so.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
