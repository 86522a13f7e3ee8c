"""The load, end to end: read -> validate -> enrich -> fetch/decode -> encode -> bulk, one way.

Stages overlap so that encoding, the expensive part, is never waiting for the others:

- the **main thread** reads, validates, tokenizes, asks OpenSearch which products are
  unchanged (one ``mget`` per batch) and hands each image to the decode pool;
- a small **decode pool** (threads) fetches, decodes and preprocesses images (and runs OCR):
  PIL and onnxruntime release the GIL for the heavy parts;
- one **encoder thread** runs the text and image encoders on a whole batch at a time;
- one **writer thread** serializes documents, sends them with ``streaming_bulk``, settles every
  record (indexed / unchanged / rejected, in catalog order), writes the rejects file and the
  checkpoint.

The queues between them hold at most a couple of batches, so memory stays flat whatever the
catalog size: the catalog is streamed, and a batch's pixels are dropped once encoded.

Records are settled in catalog order by the single writer thread, which is what makes the
checkpoint simple: it is the end of the last settled record.

Nothing is lost: each record ends up counted exactly once as indexed, unchanged or rejected,
and each rejection is written to the rejects file with its line and reason.
"""
from __future__ import annotations

import hashlib
import json
import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from opensearchpy import OpenSearch

from .bulk import BulkOp, BulkOutcome, BulkWriter, get_refresh_interval, set_refresh_interval
from .catalog import Catalog
from .checkpoint import Checkpoint, CheckpointStore, start_or_resume
from .deletions import delete_missing
from .documents import serialize, update_document
from .encode_stage import encode_batch
from .enrich import Enricher
from .fetch import ImageFetcher
from .image_jobs import ImageJob
from .load_options import IngestError, IngestInterrupted, IngestOptions, default_checkpoint_path, default_rejects_path
from .lock import LoadLock, LockBusy, lock_all
from .parts import PART_MERGE_NOTE
from .records import WRITE, Batch, Item, mark_unchanged, read_batches
from .rejects import RejectsWriter
from .report import Counts, IngestReport, ProgressLines, StageTimes
from .settle import settle
from .survey import Survey, survey
from .target import force_merge, index_vectors, load_tokenizer, prepare_index

__all__ = ["IngestOptions", "Ingestor", "IngestError", "IngestInterrupted", "default_rejects_path",
           "default_checkpoint_path"]

_END = object()


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


class Ingestor:
    """One load of one catalog into one index.

    ``client`` and ``encoders`` (a :class:`models.space.Space`, or anything with its ``dims``,
    ``identity``, ``preprocess``, ``embed_products`` and ``category_label``) are needed unless
    ``dry_run``; a dry run reads, validates, tokenizes,
    fetches and decodes every image and reports, without models or a cluster.

    ``on_checkpoint`` is called after each checkpoint is saved (progress reporting; the tests
    raise from it to simulate a crash at a known point).
    """

    def __init__(self, catalog: str | Path | Catalog, options: IngestOptions, *,
                 client: OpenSearch | None = None, encoders: Any = None, ocr_reader: Any = None,
                 redact: Callable[[str], str] = lambda s: s,
                 on_checkpoint: Callable[[Checkpoint], None] | None = None,
                 log: Callable[[str], None] = lambda s: None) -> None:
        self.catalog = catalog if isinstance(catalog, Catalog) else Catalog(catalog, options.fmt)
        self.o = options
        self.client = client
        self.encoders = encoders
        self.ocr = ocr_reader
        self.redact = redact
        self.on_checkpoint = on_checkpoint
        self.log = log
        if not options.dry_run and (client is None or encoders is None):
            raise IngestError("a load needs a cluster client and the encoders (or use a dry run)")
        if options.ocr and ocr_reader is None:
            raise IngestError("--ocr needs an OCR reader")
        cat_path = self.catalog.path
        self.rejects_path = Path(options.rejects_path or default_rejects_path(cat_path, options.part))
        self.checkpoint_store = CheckpointStore(options.checkpoint_path
                                                or default_checkpoint_path(cat_path, options.index, options.part))
        self.fetcher = ImageFetcher(self.catalog.base_dir, max_bytes=options.max_image_bytes,
                                    connect_timeout=options.connect_timeout, read_timeout=options.read_timeout,
                                    policy=options.fetch_policy)
        self.times = StageTimes()
        self.counts = Counts()
        self.notes: list[str] = []
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._index_had_docs = False
        self._keep_features = True   # False: the index was created without raw image features
        self._progress = None
        self._settle_on_stop = False
        self._image_job = ImageJob(self.fetcher, encoders.preprocess if encoders is not None else None,
                                   ocr_reader if options.ocr else None, self.times, self.notes, self._stop.is_set)

    # ====================================================================== setup
    def _settings_identity(self, enricher: Enricher) -> str:
        o = self.o
        return _digest({"vectors": enricher.vector_identity, "text": enricher.text_identity,
                        "image_errors": o.image_errors, "ocr": o.ocr, "limits": asdict(o.limits),
                        "fmt": self.catalog.fmt, "force": o.force, **({"part": str(o.part)} if o.part else {})})

    # ====================================================================== run
    def run(self) -> IngestReport:
        """Load the catalog; the checkpoint and rejects file are this load's alone while it runs."""
        locks = self._lock()
        try:
            return self._run()
        finally:
            for lock in reversed(locks):
                lock.release()

    def _lock(self) -> list[LoadLock]:
        o = self.o
        targets = [(self.rejects_path, f"the rejects file {self.rejects_path}")]
        if not o.dry_run:
            targets.append((self.checkpoint_store.path, f"the checkpoint {self.checkpoint_store.path} "
                                                        f"(catalog {self.catalog.path.name}, index {o.index}"
                                                        + (f", part {o.part})" if o.part else ")")))
        part = f" (part {o.part})" if o.part else ""
        info = {"what": f"loading {self.catalog.path}{part} into index {o.index}", "index": o.index,
                "catalog": str(self.catalog.path), **({"part": str(o.part)} if o.part else {})}
        try:
            return lock_all(targets, info, wait=o.wait, log=self.log)
        except LockBusy as exc:
            raise IngestError(str(exc)) from None
        except KeyboardInterrupt as exc:
            raise IngestInterrupted("stopped while waiting for the other load; nothing was loaded",
                                    signum=getattr(exc, "signum", signal.SIGINT)) from None

    def _run(self) -> IngestReport:
        t0 = time.perf_counter()
        o = self.o
        rejects: RejectsWriter | None = None
        cp: Checkpoint | None = None
        sv: Survey | None = None
        resumed_line = resumed_read = 0
        try:
            with self.times.measure("survey", 0):
                sv = survey(self.catalog, limits=o.limits)
            self.times.items["survey"] = sv.records
            index_existed = False
            if not o.dry_run:
                index_existed = prepare_index(self.client, o, self.encoders, self.log)
                self._keep_features = index_vectors(self.client, o.index).image_feature
            created = not index_existed     # by this load, or (below) by the load it resumes
            tokenizer = load_tokenizer(sv, o.aliases, self.client, o.index, index_existed)
            vector_identity = self.encoders.identity.id if self.encoders is not None else "dry-run"
            if o.ocr:
                vector_identity += "+" + self.ocr.identity
            enricher = Enricher(tokenizer, o.aliases, vector_identity=vector_identity)
            self.enricher = enricher
            settings = self._settings_identity(enricher)
            fingerprint = self.catalog.fingerprint()

            resumed = False
            if not o.dry_run:
                cp, resumed, note = start_or_resume(
                    self.checkpoint_store, catalog=fingerprint, index=o.index, settings=settings,
                    rejects_path=str(self.rejects_path), use_existing=o.resume and not o.recreate,
                    created_index=created, refresh_interval=lambda: get_refresh_interval(self.client, o.index))
                if note:
                    self.notes.append(note)
                if resumed:
                    self.counts = Counts.from_dict(cp.counts)
                    resumed_line, resumed_read = cp.line, self.counts.read - self.counts.other_parts
                    self.log(f"resuming after line {cp.line} ({self.counts.read} records already done)")
                    index_existed, created = True, cp.created_index
            rejects = RejectsWriter(self.rejects_path, resume_size=cp.rejects_size if resumed else None)

            if not o.dry_run:
                # the parts of one load cannot tell which of them ends last, nor whether the
                # "-1" one reads was set by another part: a part leaves refresh as it is
                original_refresh = cp.refresh_interval
                if o.part is None:
                    set_refresh_interval(self.client, o.index, "-1")
                self._index_had_docs = index_existed
                try:
                    self._load(sv, enricher, rejects, cp)
                finally:
                    # restore even on Ctrl-C or failure; the checkpoint keeps the original too
                    try:
                        if o.part is None:
                            set_refresh_interval(self.client, o.index, original_refresh)
                        self.client.indices.refresh(index=o.index)
                    except Exception as exc:  # noqa: BLE001 - must not hide why the load stopped
                        self.notes.append(f"could not restore the refresh interval ({type(exc).__name__}); "
                                          "the next run restores it from the checkpoint")
                if o.delete_missing:
                    t = time.perf_counter()
                    deleted = delete_missing(self.client, o.index, sv, self.notes, bulk_docs=o.bulk_docs,
                                             redact=self.redact, part=o.part)
                    self.counts.deleted += deleted
                    self.times.add("bulk", time.perf_counter() - t, deleted)
                if o.force_merge or (o.force_merge is None and created and o.part is None):
                    force_merge(self.client, o.index, self.times, self.notes, redact=self.redact, log=self.log)
                elif o.part is not None and o.force_merge is None:
                    self.notes.append(PART_MERGE_NOTE)
                self.checkpoint_store.delete()
            else:
                self._load(sv, enricher, rejects, None)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
            message = self._interrupted_message(what)
            report = self._report(t0, rejects, resumed_line, resumed_read, stopped=message)
            raise IngestInterrupted(message, report, signum) from None
        except IngestInterrupted:
            raise
        except BaseException as exc:
            if cp is not None and not isinstance(exc, IngestError):
                message = self._interrupted_message(f"stopped by {type(exc).__name__}: {self.redact(str(exc))}")
                report = self._report(t0, rejects, resumed_line, resumed_read, stopped=message)
                raise IngestInterrupted(message, report) from exc
            raise
        finally:
            if sv is not None:
                sv.close()
            if rejects is not None:
                rejects.close()
            if self._progress is not None:
                self._progress.close()
        return self._report(t0, rejects, resumed_line, resumed_read)

    def _interrupted_message(self, what: str) -> str:
        if self.o.dry_run:
            return f"dry run {what} after {self.counts.read} records (a dry run keeps no checkpoint)."
        cp = self.checkpoint_store.load()
        where = f"after line {cp.line}" if cp and cp.line else "from the start"
        return (f"load {what}; {self.counts.read} records settled. Run the same command again to continue "
                f"{where} (checkpoint {self.checkpoint_store.path}).")

    def _report(self, t0: float, rejects: RejectsWriter | None, resumed_line: int, resumed_read: int,
                stopped: str | None = None) -> IngestReport:
        return IngestReport(index=self.o.index, catalog=str(self.catalog.path), counts=self.counts,
                            times=self.times, wall_seconds=time.perf_counter() - t0, dry_run=self.o.dry_run,
                            resumed_from_line=resumed_line, resumed_read=resumed_read,
                            rejects_path=str(self.rejects_path) if rejects is not None and rejects.entries
                            or self.counts.rejected else None,
                            notes=self.notes, bulk_retries=getattr(self, "_bulk_retries", 0), stopped=stopped,
                            part=str(self.o.part) if self.o.part else None)

    # ====================================================================== the threaded load
    def _load(self, sv: Survey, enricher: Enricher, rejects: RejectsWriter, cp: Checkpoint | None) -> None:
        o = self.o
        if o.progress_every is not None:
            self._progress = ProgressLines(self.counts, sv.records, o.progress_every, self.log)
        elif o.progress:
            from tqdm import tqdm
            self._progress = tqdm(total=sv.records, initial=self.counts.read, unit=" products",
                                  dynamic_ncols=True, smoothing=0.1, leave=False)
        writer = None
        if not o.dry_run:
            writer = BulkWriter(self.client, o.index, max_docs=o.bulk_docs, max_bytes=o.bulk_bytes,
                                max_retries=o.max_retries, initial_backoff=o.initial_backoff,
                                max_backoff=o.max_backoff, redact=self.redact)
        q_encode: queue.Queue = queue.Queue(maxsize=2)
        q_write: queue.Queue = queue.Queue(maxsize=2)
        pool = ThreadPoolExecutor(max_workers=o.decode_workers, thread_name_prefix="ingest-decode")
        threads = [
            threading.Thread(target=self._guard, args=(self._encode_loop, q_encode, q_write),
                             name="ingest-encode", daemon=True),
            threading.Thread(target=self._guard, args=(self._write_loop, q_write, writer, rejects, cp),
                             name="ingest-write", daemon=True),
        ]
        for t in threads:
            t.start()
        try:
            start = (cp.offset, cp.line) if cp is not None else (0, 0)
            for batch in read_batches(self.catalog, sv, enricher, self.times, limits=o.limits,
                                      batch_size=o.batch_size, batch_images=o.batch_images, ocr=o.ocr,
                                      offset=start[0], line=start[1], part=o.part):
                if not (o.dry_run or o.force or not self._index_had_docs):
                    mark_unchanged(self.client, o.index, batch, self.times)
                self._submit_images(batch, pool)
                self._put(q_encode, batch)
            self._put(q_encode, _END)
            while threads[1].is_alive():
                threads[1].join(0.2)
                self._raise_failure()
            self._raise_failure()
        except BaseException as exc:
            # a signal: what the writer already holds (encoded, not yet sent) is still written
            # and checkpointed; a failure: nothing more is written
            self._settle_on_stop = isinstance(exc, KeyboardInterrupt) and self._failure is None
            self._stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for t in threads:
                t.join(timeout=120)
            if writer is not None:
                self._bulk_retries = writer.retried_rounds

    def _guard(self, fn: Callable, *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            if self._failure is None:
                self._failure = exc
            self._stop.set()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _put(self, q: queue.Queue, item: Any) -> None:
        while True:
            self._raise_failure()
            if self._stop.is_set():
                raise IngestError("load stopped")
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue) -> Any:
        while True:
            if self._stop.is_set():
                return _END
            try:
                return q.get(timeout=0.2)
            except queue.Empty:
                continue

    # ---------------------------------------------------------------- main thread: read .. lookup
    def _submit_images(self, batch: Batch, pool: ThreadPoolExecutor) -> None:
        for it in batch.to_encode():
            it.futures = [pool.submit(self._image_job, src) for src in it.product.images]

    # ---------------------------------------------------------------- encoder thread
    def _encode_loop(self, q_in: queue.Queue, q_out: queue.Queue) -> None:
        while True:
            batch = self._get(q_in)
            if batch is _END:
                if not self._stop.is_set():
                    self._put(q_out, _END)
                return
            self._encode(batch)
            self._put(q_out, batch)

    def _encode(self, batch: Batch) -> None:
        o = self.o
        encode_batch(batch, self.encoders, self.enricher, self.times, image_errors=o.image_errors,
                     dry_run=o.dry_run, decimals=o.vector_decimals, keep_features=self._keep_features)

    # ---------------------------------------------------------------- writer thread
    def _write_loop(self, q_in: queue.Queue, writer: BulkWriter | None, rejects: RejectsWriter,
                    cp: Checkpoint | None) -> None:
        o = self.o
        pending: list[Item] = []
        ops: list[BulkOp] = []
        size = 0

        def flush() -> None:
            nonlocal ops, size, pending
            outcomes: dict[str, BulkOutcome] = {}
            if ops:
                t = time.perf_counter()
                outcomes = writer.write(ops)
                self.times.add("bulk", time.perf_counter() - t, len(ops))
            for it in pending:
                settle(it, outcomes.get(it.pid) if it.op is not None else None, self.counts, rejects,
                       max_images=o.limits.max_images)
            if pending and cp is not None:
                last = pending[-1].rec
                cp.offset, cp.line = last.end_offset, last.end_line
                cp.counts = self.counts.to_dict()
                cp.rejects_size = rejects.size()
                self.checkpoint_store.save(cp)
                if self.on_checkpoint is not None:
                    self.on_checkpoint(cp)
            if self._progress is not None and pending:
                self._progress.update(len(pending))
            pending, ops, size = [], [], 0

        while True:
            batch = self._get(q_in)
            if batch is _END:
                if not self._stop.is_set() or (self._settle_on_stop and self._failure is None):
                    flush()
                return
            t = time.perf_counter()
            for it in batch.items:
                if it.status == WRITE and not o.dry_run:
                    it.op = self._op(it)
                    it.doc = it.fields = None
                    ops.append(it.op)
                    size += it.op.size
                pending.append(it)
            self.times.add("bulk", time.perf_counter() - t, 0)
            if not ops or len(ops) >= o.bulk_docs or size >= o.bulk_bytes or len(pending) >= 4 * o.bulk_docs:
                flush()

    def _op(self, it: Item) -> BulkOp:
        if it.update_only:
            return BulkOp("update", it.pid, serialize(update_document(self.enricher.update_fields(it.product),
                                                                      str(it.chash))))
        return BulkOp("index", it.pid, serialize(it.doc))
