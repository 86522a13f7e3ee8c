"""What one load is asked to do (:class:`IngestOptions`), where its files go, and how it fails."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

from analysis import AliasTable

from .bulk import DEFAULT_MAX_BYTES, DEFAULT_MAX_DOCS
from .fetch import DEFAULT_MAX_IMAGE_BYTES, FetchPolicy
from .parts import Part
from .report import IngestReport
from .schema import Limits

__all__ = ["IngestOptions", "IngestError", "IngestInterrupted", "default_rejects_path", "default_checkpoint_path"]


class IngestError(RuntimeError):
    """The load cannot start or cannot go on (index missing, dims differ, a stage failed)."""


class IngestInterrupted(RuntimeError):
    """The load stopped early (a signal or a failure); the checkpoint says where to continue.

    ``signum`` is the signal that stopped it (SIGINT for Ctrl-C), None when a failure did.
    """

    def __init__(self, message: str, report: IngestReport | None = None, signum: int | None = None) -> None:
        super().__init__(message)
        self.report = report
        self.signum = signum


def default_rejects_path(catalog: Path, part: Part | None = None) -> Path:
    """``<catalog>.rejects.jsonl``; a part's own: ``<catalog>.part-2-of-3.rejects.jsonl``."""
    return catalog.with_name(catalog.name + (f".{part.suffix}" if part else "") + ".rejects.jsonl")


def default_checkpoint_path(catalog: Path, index: str, part: Part | None = None) -> Path:
    """``<catalog>.<index>.checkpoint.json``; a part's own: ``<catalog>.<index>.part-2-of-3.checkpoint.json``."""
    return catalog.with_name(f"{catalog.name}.{index}" + (f".{part.suffix}" if part else "") + ".checkpoint.json")


@dataclass
class IngestOptions:
    index: str
    batch_size: int = 32                 # products per encoder batch
    batch_images: int = 128              # images per encoder batch (a batch closes when it reaches this)
    image_errors: str = "keep"           # "keep": index without the bad image; "reject": reject the product
    ocr: bool = False
    delete_missing: bool = False
    dry_run: bool = False
    force: bool = False                  # re-encode even unchanged products
    create: bool = False                 # create the index if it does not exist
    recreate: bool = False               # drop and create it (and forget any checkpoint)
    rejects_path: Path | None = None
    checkpoint_path: Path | None = None
    resume: bool = True
    decode_workers: int = 2
    bulk_docs: int = DEFAULT_MAX_DOCS
    bulk_bytes: int = DEFAULT_MAX_BYTES
    max_retries: int = 6
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)   # what image sources may point at
    limits: Limits = field(default_factory=Limits)
    aliases: AliasTable | None = None
    fmt: str | None = None
    progress: bool = True                # a progress bar (for a terminal)
    progress_every: float | None = None  # instead of a bar: a progress line every this many seconds
    wait: bool = False                   # another load holds the checkpoint / rejects file: wait for it
    vector_decimals: int = 6             # vectors are unit length; 1e-6 is far below what ranking sees
    shards: int | None = None      # None: chosen for the cluster (engine.layout: 1 shard; a replica on 2+ nodes)
    replicas: int | None = None
    # merge the index into one segment after the load: k-NN search walks one HNSW graph per
    # segment, so one segment answers k-NN queries fastest (bench/bench_took.py measures it).
    # None: merge only when this load (or the load it resumes) created the index; never by
    # default in a load of one part (it cannot know whether the other parts are done).
    force_merge: bool | None = None
    # load only the products of this part (plugin_ingest.parts); None: the whole catalog
    part: Part | None = None
    # how a created index stores its vectors (mappings.VectorOptions; None: float32 with raw features)
    vectors: Any = None

    def __post_init__(self) -> None:
        if self.image_errors not in ("keep", "reject"):
            raise ValueError(f"image_errors must be 'keep' or 'reject', not {self.image_errors!r}")
        if self.batch_size < 1 or self.batch_images < 1 or self.decode_workers < 1:
            raise ValueError("batch_size, batch_images and decode_workers must be at least 1")
        if self.part is not None and self.recreate:
            raise ValueError(f"--recreate with --part {self.part}: one part would delete what the other parts "
                             "loaded; create the index once (`cmsearch index create`, or --create in every part)")
