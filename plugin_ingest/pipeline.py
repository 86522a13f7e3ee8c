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
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from analysis import AliasTable, Tokenizer, Vocabulary, normalize_brand
from engine.client import redact_urls
from engine.vocabulary import read_vocabulary
from mappings import fields as F

from .bulk import (DEFAULT_MAX_BYTES, DEFAULT_MAX_DOCS, BulkOp, BulkOutcome, BulkWriter, get_refresh_interval,
                   set_refresh_interval)
from .catalog import Catalog, SourceRecord
from .checkpoint import Checkpoint, CheckpointStore
from .enrich import ContentHash, Enricher, build_vocabulary
from .fetch import DEFAULT_MAX_IMAGE_BYTES, FetchError, ImageFetcher, source_kind
from .rejects import STAGE_IMAGE, STAGE_INDEX, STAGE_READ, STAGE_VALIDATE, RejectsWriter
from .report import Counts, IngestReport, StageTimes
from .schema import K_ID, InvalidRecord, Limits, Product, validate
from .survey import Survey, survey

__all__ = ["IngestOptions", "Ingestor", "IngestError", "IngestInterrupted", "default_rejects_path",
           "default_checkpoint_path"]

_END = object()
MAX_STORED_DATA_URI = 64 * 1024


class IngestError(RuntimeError):
    """The load cannot start or cannot go on (index missing, dims differ, a stage failed)."""


class IngestInterrupted(RuntimeError):
    """The load stopped early (Ctrl-C or a failure); the checkpoint says where to continue."""

    def __init__(self, message: str, report: IngestReport | None = None) -> None:
        super().__init__(message)
        self.report = report


def default_rejects_path(catalog: Path) -> Path:
    return catalog.with_name(catalog.name + ".rejects.jsonl")


def default_checkpoint_path(catalog: Path, index: str) -> Path:
    return catalog.with_name(f"{catalog.name}.{index}.checkpoint.json")


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
    limits: Limits = field(default_factory=Limits)
    aliases: AliasTable | None = None
    fmt: str | None = None
    progress: bool = True
    vector_decimals: int = 6             # vectors are unit length; 1e-6 is far below what ranking sees
    shards: int = 1
    replicas: int = 0
    # merge the index into one segment after the load: k-NN search walks one HNSW graph per
    # segment, so a 10k-product index answered a hybrid query in 9 ms instead of 20.5 ms
    # (3 segments; bench/bench_took.py).  None: only when this load created the index.
    force_merge: bool | None = None

    def __post_init__(self) -> None:
        if self.image_errors not in ("keep", "reject"):
            raise ValueError(f"image_errors must be 'keep' or 'reject', not {self.image_errors!r}")
        if self.batch_size < 1 or self.batch_images < 1 or self.decode_workers < 1:
            raise ValueError("batch_size, batch_images and decode_workers must be at least 1")


# -- per-record state ---------------------------------------------------------------------------
PENDING, WRITE, UNCHANGED, REJECTED = "pending", "write", "unchanged", "rejected"


@dataclass
class ImageResult:
    source: str
    pixels: np.ndarray | None = None
    ocr_text: str = ""
    error: str | None = None


@dataclass
class Item:
    rec: SourceRecord
    product: Product | None = None
    status: str = PENDING
    stage: str | None = None
    reason: str | None = None
    kind: str | None = None              # summary label of a rejection
    fields: dict[str, Any] | None = None
    chash: ContentHash | None = None
    passage: str = ""
    update_only: bool = False
    futures: list[Future] = field(default_factory=list)
    images_ok: list[ImageResult] = field(default_factory=list)
    image_problems: list[ImageResult] = field(default_factory=list)
    doc: dict[str, Any] | None = None
    op: BulkOp | None = None

    @property
    def pid(self) -> str | None:
        return self.product.id if self.product is not None else None

    def reject(self, stage: str, reason: str, kind: str) -> None:
        self.status, self.stage, self.reason, self.kind = REJECTED, stage, reason, kind
        self.futures = []
        self.images_ok = []


@dataclass
class Batch:
    items: list[Item]

    def to_encode(self) -> list[Item]:
        return [it for it in self.items if it.status == WRITE and not it.update_only]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _validation_kind(reason: str) -> str:
    return "missing id or title" if "(required)" in reason else "invalid value (type or limit)"


def _read_kind(reason: str) -> str:
    if "UTF-8" in reason:
        return "invalid UTF-8"
    if reason.startswith("malformed CSV"):
        return "malformed CSV row"
    if reason.startswith("malformed JSON"):
        return "malformed JSON"
    return "unreadable record"


def _image_label(source: str) -> str:
    """What ``images.url`` stores: the source, except that big data: URIs are not copied into the
    index and credentials in a URL (``https://user:pass@host/...``) never reach search results."""
    kind = source_kind(source)
    if kind == "data" and len(source) > MAX_STORED_DATA_URI:
        return source.split(",", 1)[0] + f",... ({len(source)} characters, not stored)"
    if kind == "http":
        return redact_urls(source)
    return source


def _short_source(source: str) -> str:
    return source if len(source) <= 120 else source[:100] + "..."


class Ingestor:
    """One load of one catalog into one index.

    ``client`` and ``encoders`` (a :class:`plugin_ingest.encode.ModelEncoders` or anything
    with its ``dims``, ``identity``, ``prepare_image``, ``encode_batch``, ``fuse`` and
    ``category_label``) are needed unless ``dry_run``; a dry run reads, validates, tokenizes,
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
        self.rejects_path = Path(options.rejects_path or default_rejects_path(cat_path))
        self.checkpoint_store = CheckpointStore(options.checkpoint_path
                                                or default_checkpoint_path(cat_path, options.index))
        self.fetcher = ImageFetcher(self.catalog.base_dir, max_bytes=options.max_image_bytes,
                                    connect_timeout=options.connect_timeout, read_timeout=options.read_timeout)
        self.times = StageTimes()
        self.counts = Counts()
        self.notes: list[str] = []
        self._notes_lock = threading.Lock()
        self._notes_dropped = 0
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._index_had_docs = False
        self._progress = None

    # ====================================================================== setup
    def _prepare_index(self) -> bool:
        """Create / check the index; True when it existed before (so unchanged products may be there)."""
        from plugin_ingest.index_admin import IndexExistsError, check_index, create_product_index

        o, client = self.o, self.client
        exists = bool(client.indices.exists(index=o.index))
        if o.recreate or (not exists and o.create):
            try:
                create_product_index(client, o.index, self.encoders.dims, recreate=o.recreate,
                                     shards=o.shards, replicas=o.replicas)
            except IndexExistsError as exc:  # a concurrent creation
                raise IngestError(str(exc)) from None
            self.log(f"created index {o.index}")
            return False
        if not exists:
            raise IngestError(f"index {o.index!r} does not exist; pass --create to create it from the "
                              f"product mapping, or create it with `cmsearch index create {o.index}`")
        problems = check_index(client, o.index, self.encoders.dims)
        if problems:
            raise IngestError(f"index {o.index!r} does not fit these models: " + "; ".join(problems)
                              + " (use --recreate to rebuild it)")
        return True

    def _force_merge(self) -> None:
        o = self.o
        self.log(f"merging {o.index} into one segment")
        with self.times.measure("merge"):
            try:
                self.client.indices.forcemerge(index=o.index, max_num_segments=1, request_timeout=3600)
                self.client.indices.refresh(index=o.index)
            except TransportError as exc:
                # the load itself is complete; a slower index is not a failed load
                self.notes.append(self.redact(f"force merge of {o.index} failed ({exc.status_code}: {exc.error}); "
                                              "search works, k-NN is slower until segments merge"))

    def _tokenizer(self, sv: Survey, index_existed: bool) -> tuple[Tokenizer, Vocabulary]:
        aliases = self.o.aliases
        index_vocab = None
        if index_existed and self.client is not None:
            index_vocab = read_vocabulary(self.client, self.o.index)
        brands = {normalize_brand(b, aliases) for b in sv.brands}
        vocab = build_vocabulary(brands, sv.category_paths, aliases, index_vocab)
        return Tokenizer(vocab.words()).warm_up(), vocab

    def _settings_identity(self, enricher: Enricher) -> str:
        o = self.o
        return _digest({"vectors": enricher.vector_identity, "text": enricher.text_identity,
                        "image_errors": o.image_errors, "ocr": o.ocr, "limits": asdict(o.limits),
                        "fmt": self.catalog.fmt, "force": o.force})

    # ====================================================================== run
    def run(self) -> IngestReport:
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
                index_existed = self._prepare_index()
            tokenizer, _ = self._tokenizer(sv, index_existed)
            vector_identity = self.encoders.identity if self.encoders is not None else "dry-run"
            if o.ocr:
                vector_identity += "+" + self.ocr.identity
            enricher = Enricher(tokenizer, o.aliases, vector_identity=vector_identity)
            self.enricher = enricher
            settings = self._settings_identity(enricher)
            fingerprint = self.catalog.fingerprint()

            stale: Checkpoint | None = None
            if not o.dry_run:
                cp = self.checkpoint_store.load() if (o.resume and not o.recreate) else None
                if cp is not None:
                    why = cp.matches(fingerprint, o.index, settings)
                    if why:
                        self.notes.append(f"checkpoint {self.checkpoint_store.path} not used: {why}; "
                                          "starting from the top (unchanged products are skipped)")
                        stale, cp = cp, None
                if cp is not None:
                    self.counts = Counts.from_dict(cp.counts)
                    resumed_line, resumed_read = cp.line, self.counts.read
                    self.log(f"resuming after line {cp.line} ({self.counts.read} records already done)")
                    index_existed = True
            rejects = RejectsWriter(self.rejects_path, resume_size=cp.rejects_size if cp else None)

            if not o.dry_run:
                if cp is not None:
                    original_refresh = cp.refresh_interval
                elif stale is not None and stale.index == o.index and not o.recreate:
                    # a crashed load left refresh off; its checkpoint knows the real setting
                    original_refresh = stale.refresh_interval
                else:
                    original_refresh = get_refresh_interval(self.client, o.index)
                if cp is None:
                    cp = Checkpoint(catalog=fingerprint, index=o.index, settings=settings,
                                    rejects_path=str(self.rejects_path), refresh_interval=original_refresh)
                    self.checkpoint_store.save(cp)
                set_refresh_interval(self.client, o.index, "-1")
                self._index_had_docs = index_existed
                try:
                    self._load(sv, enricher, rejects, cp)
                finally:
                    # restore even on Ctrl-C or failure; the checkpoint keeps the original too
                    try:
                        set_refresh_interval(self.client, o.index, original_refresh)
                        self.client.indices.refresh(index=o.index)
                    except Exception as exc:  # noqa: BLE001 - must not hide why the load stopped
                        self.notes.append(f"could not restore the refresh interval ({type(exc).__name__}); "
                                          "the next run restores it from the checkpoint")
                if o.delete_missing:
                    self._delete_missing(sv)
                if o.force_merge or (o.force_merge is None and not index_existed):
                    self._force_merge()
                self.checkpoint_store.delete()
            else:
                self._load(sv, enricher, rejects, None)
        except KeyboardInterrupt:
            report = self._report(t0, rejects, resumed_line, resumed_read)
            raise IngestInterrupted(self._interrupted_message("interrupted"), report) from None
        except IngestInterrupted:
            raise
        except BaseException as exc:
            if cp is not None and not isinstance(exc, IngestError):
                report = self._report(t0, rejects, resumed_line, resumed_read)
                raise IngestInterrupted(self._interrupted_message(f"stopped by {type(exc).__name__}: "
                                                                  f"{self.redact(str(exc))}"), report) from exc
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

    def _report(self, t0: float, rejects: RejectsWriter | None, resumed_line: int, resumed_read: int) -> IngestReport:
        return IngestReport(index=self.o.index, catalog=str(self.catalog.path), counts=self.counts,
                            times=self.times, wall_seconds=time.perf_counter() - t0, dry_run=self.o.dry_run,
                            resumed_from_line=resumed_line, resumed_read=resumed_read,
                            rejects_path=str(self.rejects_path) if rejects is not None and rejects.entries
                            or self.counts.rejected else None,
                            notes=self.notes, bulk_retries=getattr(self, "_bulk_retries", 0))

    # ====================================================================== the threaded load
    def _load(self, sv: Survey, enricher: Enricher, rejects: RejectsWriter, cp: Checkpoint | None) -> None:
        o = self.o
        if o.progress:
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
            for batch in self._batches(sv, enricher, *start):
                self._lookup(batch)
                self._submit_images(batch, pool)
                self._put(q_encode, batch)
            self._put(q_encode, _END)
            while threads[1].is_alive():
                threads[1].join(0.2)
                self._raise_failure()
            self._raise_failure()
        except BaseException:
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
    def _batches(self, sv: Survey, enricher: Enricher, offset: int, line: int) -> Iterator[Batch]:
        """Items grouped so each batch has ``batch_size`` valid products or ``batch_images`` images.

        Counting images as well as products keeps memory flat on catalogs whose products
        carry dozens of photos (32 products x 33 photos once took 13 GB); a batch holds at
        most 8x ``batch_size`` items in all, rejects included.
        """
        o = self.o
        csv_mode = self.catalog.fmt != "jsonl"
        items: list[Item] = []
        valid = images = 0
        records = self.catalog.records(offset, line)
        while True:
            t = time.perf_counter()
            rec = next(records, None)
            self.times.add("read", time.perf_counter() - t, 1 if rec is not None else 0)
            if rec is None:
                break
            item = Item(rec)
            t = time.perf_counter()
            if not rec.ok:
                item.reject(STAGE_READ, rec.error, _read_kind(rec.error))
            else:
                try:
                    item.product = validate(rec.data, csv_mode=csv_mode, limits=o.limits)
                except InvalidRecord as exc:
                    item.reject(STAGE_VALIDATE, str(exc), _validation_kind(str(exc)))
                else:
                    first = sv.duplicates.get(rec.line)
                    if first is not None:
                        item.reject(STAGE_VALIDATE, f"duplicate id {item.product.id!r}: already on line {first}",
                                    "duplicate id")
                    else:
                        p = item.product
                        item.fields = enricher.fields(p)
                        item.passage = enricher.passage(p)
                        item.chash = enricher.content_hash(p, ocr=o.ocr)
                        item.status = WRITE
                        valid += 1
                        images += len(p.images)
            self.times.add("tokenize", time.perf_counter() - t, 1 if item.status == WRITE else 0)
            items.append(item)
            if valid >= o.batch_size or images >= o.batch_images or len(items) >= 8 * o.batch_size:
                yield Batch(items)
                items, valid, images = [], 0, 0
        if items:
            yield Batch(items)

    def _lookup(self, batch: Batch) -> None:
        """Mark products whose stored content hash matches as unchanged (or text-only changes)."""
        if self.o.dry_run or self.o.force or not self._index_had_docs:
            return
        todo = [it for it in batch.items if it.status == WRITE]
        if not todo:
            return
        t = time.perf_counter()
        resp = self.client.mget(index=self.o.index, body={"ids": [it.pid for it in todo]},
                                _source_includes=[F.CONTENT_HASH])
        self.times.add("lookup", time.perf_counter() - t, len(todo))
        stored = {d["_id"]: ContentHash.parse((d.get("_source") or {}).get(F.CONTENT_HASH))
                  for d in resp.get("docs", []) if d.get("found")}
        for it in todo:
            old = stored.get(it.pid)
            if old is None:
                continue
            if old == it.chash:
                it.status = UNCHANGED
            elif old.vectors == it.chash.vectors:
                it.update_only = True

    def _submit_images(self, batch: Batch, pool: ThreadPoolExecutor) -> None:
        for it in batch.to_encode():
            it.futures = [pool.submit(self._image_job, src) for src in it.product.images]

    # ---------------------------------------------------------------- decode pool
    def _image_job(self, source: str) -> ImageResult:
        from models.images import ImageDecodeError, load_image

        if self._stop.is_set():
            return ImageResult(source, error="load stopped")
        t = time.perf_counter()
        try:
            data = self.fetcher.fetch(source)
        except FetchError as exc:
            self.times.add("fetch", time.perf_counter() - t)
            return ImageResult(source, error=exc.reason)
        t1 = time.perf_counter()
        self.times.add("fetch", t1 - t)
        try:
            img = load_image(data, name=_short_source(source))
            pixels = self.encoders.prepare_image(img) if self.encoders is not None else None
        except ImageDecodeError as exc:
            self.times.add("decode", time.perf_counter() - t1)
            return ImageResult(source, error=exc.reason)
        except Exception as exc:  # noqa: BLE001 - any failure of one image is that image's problem
            self.times.add("decode", time.perf_counter() - t1)
            return ImageResult(source, error=f"{type(exc).__name__}: {exc}")
        self.times.add("decode", time.perf_counter() - t1)
        text = ""
        if self.o.ocr:
            t2 = time.perf_counter()
            try:
                text = self.ocr.read(img)
            except Exception as exc:  # noqa: BLE001 - OCR failing must not lose the product
                self._note(f"OCR failed on {_short_source(source)}: {type(exc).__name__}: {exc}")
            self.times.add("ocr", time.perf_counter() - t2)
        return ImageResult(source, pixels=pixels, ocr_text=text)

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
        todo = batch.to_encode()
        for it in todo:
            results = [f.result() for f in it.futures]
            it.futures = []
            bad = [r for r in results if r.error]
            if bad and o.image_errors == "reject":
                reason = "; ".join(f"image {_short_source(r.source)}: {r.error}" for r in bad)
                it.reject(STAGE_IMAGE, reason, "image unreadable or missing")
                continue
            it.images_ok = [r for r in results if not r.error]
            it.image_problems = bad
        todo = [it for it in todo if it.status == WRITE]
        if o.dry_run or not todo:
            for it in todo:
                for r in it.images_ok:
                    r.pixels = None
            return
        enc = self.encoders
        t = time.perf_counter()
        vecs = enc.encode_batch([it.passage for it in todo], [r.pixels for it in todo for r in it.images_ok])
        self.times.add("encode", time.perf_counter() - t, len(todo))
        d = o.vector_decimals
        j = 0
        for i, it in enumerate(todo):
            k = len(it.images_ok)
            text_vec = vecs.text[i]
            img_vecs = vecs.image_vectors[j:j + k] if vecs.image_vectors is not None else None
            doc = dict(it.fields)
            doc[F.TEXT_VECTOR] = np.round(text_vec.astype(np.float64), d).tolist()
            doc[F.FUSED_VECTOR] = np.round(np.asarray(enc.fuse(text_vec, img_vecs), np.float64), d).tolist()
            if k:
                images = []
                for n, r in enumerate(it.images_ok):
                    entry = {F.IMAGE_URL: _image_label(r.source),
                             F.IMAGE_FEATURE: np.round(vecs.features[j + n].astype(np.float64), d).tolist()}
                    if img_vecs is not None:
                        entry[F.IMAGE_VECTOR] = np.round(img_vecs[n].astype(np.float64), d).tolist()
                    images.append(entry)
                doc[F.IMAGES] = images
                doc[F.IMAGE_URLS] = [im[F.IMAGE_URL] for im in images]
                if vecs.image_categories is not None:
                    label, _ = max(vecs.image_categories[j:j + k], key=lambda c: c[1])
                    doc[F.PREDICTED_CATEGORY] = enc.category_label(label)
            ocr_text = " ".join(r.ocr_text for r in it.images_ok if r.ocr_text)
            if ocr_text:
                doc[F.OCR_TEXT] = self.enricher.tokenizer.field_text(ocr_text)
            chash = it.chash.incomplete() if it.image_problems else it.chash
            doc[F.CONTENT_HASH] = str(chash)
            it.doc = doc
            for r in it.images_ok:
                r.pixels = None
            j += k

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
                self._settle(it, outcomes.get(it.pid) if it.op is not None else None, rejects)
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
                if not self._stop.is_set():
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
            body = self.enricher.update_fields(it.product)
            body[F.CONTENT_HASH] = str(it.chash)
            return BulkOp("update", it.pid, json.dumps({"doc": body}, ensure_ascii=False, separators=(",", ":")))
        return BulkOp("index", it.pid, json.dumps(it.doc, ensure_ascii=False, separators=(",", ":")))

    def _settle(self, it: Item, outcome: BulkOutcome | None, rejects: RejectsWriter) -> None:
        """Count one record exactly once and write what the rejects file needs to know."""
        c = self.counts
        c.read += 1
        record = it.rec.data
        if it.status == WRITE and it.op is not None and outcome is not None and not outcome.ok:
            it.reject(STAGE_INDEX, f"OpenSearch refused the document (status {outcome.status}): {outcome.error}",
                      "refused by OpenSearch")
        if it.status == REJECTED:
            c.rejected += 1
            c.rejected_by[it.kind or it.stage] += 1
            rejects.write(line=it.rec.line, product_id=it.pid or _raw_id(record), stage=it.stage, reason=it.reason,
                          record=record, raw=it.rec.raw)
            return
        if it.status == UNCHANGED:
            c.unchanged += 1
            return
        c.indexed += 1
        if it.update_only:
            c.updated_text_only += 1
        c.images += len(it.images_ok)
        for r in it.image_problems:
            c.images_dropped += 1
            rejects.write(line=it.rec.line, product_id=it.pid, stage=STAGE_IMAGE, rejected=False,
                          reason=f"image left out, product indexed without it: {r.error}", image=r.source)

    # ---------------------------------------------------------------- after the load
    def _delete_missing(self, sv: Survey) -> None:
        """Delete indexed products whose ids the catalog no longer has (only after a complete, clean read)."""
        if sv.unreadable_ids:
            self.notes.append(f"--delete-missing skipped: {sv.unreadable_ids} record(s) had no readable id, "
                              "so products behind them could be deleted by mistake; fix them and reload")
            return
        if sv.ids is None or sv.ids.size == 0:
            self.notes.append("--delete-missing skipped: the catalog has no products, refusing to empty the index")
            return
        from opensearchpy import helpers

        t = time.perf_counter()
        missing: list[str] = []
        writer = BulkWriter(self.client, self.o.index, max_docs=self.o.bulk_docs, redact=self.redact)
        deleted = 0
        for hit in helpers.scan(self.client, index=self.o.index, query={"query": {"match_all": {}}},
                                _source=False, size=1000, preserve_order=False):
            if hit["_id"] not in sv.ids:
                missing.append(hit["_id"])
            if len(missing) >= 1000:
                n, failures = writer.delete(missing)
                deleted += n
                self._note_delete_failures(failures)
                missing = []
        if missing:
            n, failures = writer.delete(missing)
            deleted += n
            self._note_delete_failures(failures)
        self.client.indices.refresh(index=self.o.index)
        self.counts.deleted += deleted
        self.times.add("bulk", time.perf_counter() - t, deleted)

    def _note(self, msg: str, limit: int = 20) -> None:
        """A note for the summary; past ``limit`` only counted, so a long load's memory stays flat."""
        with self._notes_lock:
            if len(self.notes) < limit:
                self.notes.append(msg)
            else:
                self._notes_dropped += 1
                more = f"... and {self._notes_dropped} more notes like these"
                if self.notes[-1].startswith("... and "):
                    self.notes[-1] = more
                else:
                    self.notes.append(more)

    def _note_delete_failures(self, failures: list[BulkOutcome]) -> None:
        for f in failures[:5]:
            self.notes.append(f"could not delete {f.id}: {f.error}")
        if len(failures) > 5:
            self.notes.append(f"... and {len(failures) - 5} more deletions failed")


def _raw_id(record: dict | None) -> str | None:
    if not isinstance(record, dict):
        return None
    v = record.get(K_ID)
    return str(v) if isinstance(v, (str, int)) and not isinstance(v, bool) else None
