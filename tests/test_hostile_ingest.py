"""The standing hostile suite of ingest: bad catalogs, concurrent loads, signals, faulty servers.

Each test reproduces a break found by a fault and bad-input run (issue 15; issue 11 for the
bulk retries, progress lines and long image lists) so the next change cannot reopen it.
Catalogs are generated here; network cases use servers on 127.0.0.1; signals go to real
processes; the node is the real test node.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from plugin_ingest.bulk import BulkOp, BulkWriter, ClusterUnavailable
from plugin_ingest.catalog import Catalog
from plugin_ingest.checkpoint import Checkpoint, CheckpointStore
from plugin_ingest.fetch import FetchPolicy
from plugin_ingest.lock import LoadLock, LockBusy
from plugin_ingest.ingestor import IngestError, IngestInterrupted, IngestOptions, Ingestor
from plugin_ingest.rejects import RejectsWriter, read_rejects
from plugin_ingest.report import Counts, ProgressLines
from plugin_ingest.schema import InvalidRecord, validate
from plugin_ingest.survey import survey

REPO = Path(__file__).resolve().parents[1]


def _dry(path: Path, tmp_path: Path, **kw) -> Ingestor:
    kw.setdefault("progress", False)
    kw.setdefault("rejects_path", tmp_path / "rejects.jsonl")
    return Ingestor(path, IngestOptions(index="dry", dry_run=True, **kw))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ================================================================ 1. an unterminated CSV quote
CSV_HEADER = "id,title,price\n"


@pytest.mark.parametrize("tail, reason", [
    # the open quote runs to the end of the file
    ("p4,good four,4\np5,good five,5\n", "end of the file"),
    # a later quote closes it, leaving garbage after the closing quote
    ('p4,good four,4\np5,"good five",5\np6,six,6\n', "lines 3-5"),
    # a later quote closes it, with too many fields
    ('p4,good four,4\np5,five",5,5\np6,six,6\n', "lines 3-5"),
])
def test_unterminated_csv_quote_loses_no_valid_row(tmp_path, tail, reason):
    path = tmp_path / "c.csv"
    path.write_text(CSV_HEADER + 'p1,one,1\np3,"bad title,3\n' + tail, encoding="utf-8")
    records = list(Catalog(path).records())
    lines = [r.line for r in records]
    physical = len(path.read_text().splitlines()) - 1
    assert lines == list(range(2, 2 + physical)), lines     # every physical record counted once, in order
    bad = records[1]
    assert (bad.line, bad.end_line, bad.ok) == (3, 3, False)
    assert bad.raw == 'p3,"bad title,3' and reason in bad.error and "quote left open on line 3" in bad.error
    assert records[2].data == {"id": "p4", "title": "good four", "price": "4"}
    # resuming after any record gives exactly the records after it (checkpoints stay valid)
    for r in records:
        assert [x.line for x in Catalog(path).records(r.end_offset, r.end_line)] == [x.line for x in records
                                                                                      if x.line > r.line]
    assert survey(Catalog(path)).records == len(records)

    report = _dry(path, tmp_path).run()
    c = report.counts
    assert c.read == len(records) and c.balanced()
    assert c.indexed >= 2 and "p4" not in {e["id"] for e in read_rejects(tmp_path / "rejects.jsonl")}
    entry = read_rejects(tmp_path / "rejects.jsonl")[0]
    assert entry["line"] == 3 and entry["raw"] == 'p3,"bad title,3' and entry["stage"] == "read"


def test_open_quote_closed_with_the_right_field_count_is_rejected_with_its_span(tmp_path):
    """The quote opened in the title closes two lines later with the right number of fields: the
    swallowed row is inside the title. A CSV title never spans lines, so the record is rejected
    with its first and last line and its text, not indexed with the row hidden in it."""
    path = tmp_path / "c.csv"
    path.write_text(CSV_HEADER + 'p1,one,1\np3,"bad title,3\np4,good four,4\np5,end",5\np6,six,6\n')
    _dry(path, tmp_path).run()
    entry = read_rejects(tmp_path / "rejects.jsonl")[0]
    assert (entry["line"], entry["end_line"], entry["stage"]) == (3, 5, "validate")
    assert "line break" in entry["reason"] and "p4,good four,4" in entry["record"]["title"]


def test_multi_line_csv_cells_are_still_one_record(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('id,title,description\np1,one,"first line\nsecond, line"\np2,two,x\n')
    records = list(Catalog(path).records())
    assert [(r.line, r.end_line, r.ok) for r in records] == [(2, 3, True), (4, 4, True)]
    assert records[0].data["description"] == "first line\nsecond, line"


# ================================================================ 2, 3. numbers and reasons
@pytest.mark.parametrize("value", ["1_000", "1,000", "nan", "inf", "-inf", "１２", "0x10", "12 EUR", "1e", "--1"])
@pytest.mark.parametrize("key", ["price", "rating"])
def test_numeric_strings_must_be_plain_numbers(key, value):
    with pytest.raises(InvalidRecord, match=f"{key}: expected a"):
        validate({"id": "x", "title": "t", key: value})
    with pytest.raises(InvalidRecord, match=f"{key}: expected a"):
        validate({"id": "x", "title": "t", key: value}, csv_mode=True)


def test_plain_numeric_strings_and_huge_numbers():
    for text, x in [("12", 12.0), (" 12.5 ", 12.5), ("+3", 3.0), ("1e3", 1000.0), (".5", 0.5), ("7.", 7.0)]:
        assert validate({"id": "x", "title": "t", "price": text}).price == x
    with pytest.raises(InvalidRecord, match="price: expected a finite number, got an integer of 400 digits"):
        validate({"id": "x", "title": "t", "price": 10 ** 399})


def test_json_reasons_read_well_and_huge_integers_are_one_reject(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"id": "a", "title": "tab\x01here"}\n'
                     + b'{"id": "b", "title": "t", "price": ' + b"9" * 5000 + b"}\n"
                     + b'{"id": "c", "title": "fine"}\n')
    records = list(Catalog(path).records())
    assert records[0].error == "malformed JSON: Invalid control character at column 26"
    assert "at at" not in records[0].error
    assert records[1].error == "malformed JSON: a number with more digits than can be read"
    assert records[2].ok
    report = _dry(path, tmp_path).run()
    assert (report.counts.read, report.counts.indexed, report.counts.rejected) == (3, 1, 2)


# ================================================================ 9. messages name the input
def test_undecodable_image_is_named_not_shown_as_a_python_object(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image")
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "a", "title": "t", "images": ["junk.jpg"]}) + "\n")
    _dry(path, tmp_path).run()
    (entry,) = read_rejects(tmp_path / "rejects.jsonl")
    assert entry["image"] == "junk.jpg" and "not a recognised image format" in entry["reason"]
    assert " object at 0x" not in json.dumps(entry)


# ================================================================ 11. the rejects file is private
def test_rejects_file_is_0600_and_hides_url_credentials(tmp_path):
    rejects = tmp_path / "rejects.jsonl"
    rejects.write_text("old entry\n")
    os.chmod(rejects, 0o644)                        # left world-readable by an earlier version
    secret_url = "https://shop:S3CRET@127.0.0.1:9/private/a.jpg"
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "a", "title": "t", "images": [secret_url]}) + "\n"
                    + json.dumps({"id": "b", "title": "t", "price": "abc", "images": [secret_url]}) + "\n"
                    + '{"id": "c", "images": ["https://shop:S3CRET@127.0.0.1:9/x.jpg"], "title": \n')
    report = _dry(path, tmp_path, connect_timeout=0.5, read_timeout=0.5).run()
    assert report.counts.rejected == 2 and report.counts.images_dropped == 1
    text = rejects.read_text()
    assert "S3CRET" not in text and "shop:" not in text and "https://***@127.0.0.1:9/private/a.jpg" in text
    assert "old entry" not in text and _mode(rejects) == 0o600
    # a resumed writer truncates the existing file and tightens its mode too
    os.chmod(rejects, 0o644)
    w = RejectsWriter(rejects, resume_size=rejects.stat().st_size)
    w.write(line=9, reason=f"see {secret_url}", stage="read")
    w.close()
    assert _mode(rejects) == 0o600 and "S3CRET" not in rejects.read_text()


def test_checkpoint_and_lock_files_are_0600(tmp_path):
    store = CheckpointStore(tmp_path / "c.ckpt.json")
    store.path.write_text("{}")
    os.chmod(store.path, 0o644)
    store.save(Checkpoint(catalog={}, index="i", settings="s"))
    assert _mode(store.path) == 0o600
    lock = LoadLock(store.path, "the checkpoint").acquire()
    try:
        assert _mode(lock.path) == 0o600
    finally:
        lock.release()
    assert not lock.path.exists()


# ================================================================ 4. one load per checkpoint
def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    target = tmp_path / "c.ckpt.json"
    first = LoadLock(target, "the checkpoint", {"what": "loading c.jsonl into index i"}).acquire()
    try:
        with pytest.raises(LockBusy, match=rf"pid {os.getpid()}, started \d{{4}}-\d\d-\d\d .*loading c.jsonl"):
            LoadLock(target, "the checkpoint").acquire()
        got: list[float] = []
        waiter = threading.Thread(target=lambda: got.append(
            (LoadLock(target, "the checkpoint").acquire(wait=True, poll=0.05), time.monotonic())[1]))
        waiter.start()
        time.sleep(0.3)
        assert not got                                   # still waiting
        released = time.monotonic()
    finally:
        first.release()
    waiter.join(5)
    assert got and got[0] >= released


# ================================================================ issue 11: progress lines
def test_progress_lines_every_interval():
    now = [0.0]
    out: list[str] = []
    c = Counts(read=0)
    p = ProgressLines(c, total=1000, every=10, log=out.append, clock=lambda: now[0])
    c.read, c.indexed, c.rejected = 100, 95, 5
    now[0] = 5
    p.update(100)
    assert out == []                                     # not yet 10 s
    now[0] = 10
    p.update(0)
    assert out == ["progress: 100/1,000 records (10%): 95 indexed, 5 rejected, 0 unchanged; "
                   "10.0 records/s, about 1m 30s left"]


def test_cli_prints_progress_lines_when_not_on_a_terminal(tmp_path):
    from cmsearch.cmd_ingest import ingest

    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "title": f"t {i}"}) + "\n" for i in range(6)))
    res = CliRunner().invoke(ingest, [str(path), "--index", "dry", "--dry-run", "--batch-size", "2",
                                      "--progress-every", "0"])
    assert res.exit_code == 0, res.output
    progress = [ln for ln in res.stderr.splitlines() if ln.startswith("progress: ")]
    assert len(progress) >= 2 and progress[-1].startswith("progress: 6/6 records (100%): 6 indexed")
    res = CliRunner().invoke(ingest, [str(path), "--index", "dry", "--dry-run", "--no-progress"])
    assert "progress: " not in res.stderr


# ================================================================ issue 11: more than 64 images
def test_a_product_with_more_than_64_images_keeps_the_first_64(tmp_path):
    from test_ingest_e2e import _png_bytes

    uris = ["data:image/png;base64," + base64.b64encode(_png_bytes((i, 100, 100))).decode() for i in range(70)]
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "many", "title": "70 photos", "images": uris}) + "\n"
                    + json.dumps({"id": "few", "title": "1 photo", "images": uris[:1]}) + "\n")
    report = _dry(path, tmp_path).run()
    c = report.counts
    assert (c.read, c.indexed, c.rejected, c.images, c.images_dropped) == (2, 2, 0, 65, 6)
    (entry,) = read_rejects(tmp_path / "rejects.jsonl")
    assert entry["id"] == "many" and entry["rejected"] is False
    assert "6 image(s) left out" in entry["reason"] and "first 64" in entry["reason"]
    assert len(entry["images_left_out"]) == 6 and entry["images_left_out"][0].startswith("data:image/png")


# ================================================================ issue 11: one bulk retry policy
class _BulkServer:
    """Answers ``_bulk`` with the statuses queued in ``faults`` (whole request, or per document
    with ``per_item``), then with success; counts the requests."""

    def __init__(self) -> None:
        self.faults: list[int] = []
        self.always: int | None = None
        self.per_item = False
        self.requests = 0
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                srv.requests += 1
                ids = [json.loads(ln)["index"]["_id"] for ln in body.splitlines()[::2] if ln.strip()]
                status = srv.always or (srv.faults.pop(0) if srv.faults else None)
                if status and not srv.per_item:
                    self._send(status, {"error": {"type": "es_rejected_execution_exception", "reason": "busy"},
                                        "status": status})
                    return
                items = [{"index": {"_id": i, "status": status or 201,
                                    **({"error": {"type": "es_rejected_execution_exception", "reason": "busy"}}
                                       if status else {})}} for i in ids]
                self._send(200, {"took": 1, "errors": bool(status), "items": items})

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def bulk_server():
    s = _BulkServer()
    yield s
    s.server.shutdown()


@pytest.mark.parametrize("per_item", [False, True])
def test_a_429_is_sent_at_most_max_retries_plus_one_times(bulk_server, per_item):
    from opensearchpy import OpenSearch

    bulk_server.per_item = per_item
    writer = BulkWriter(OpenSearch(hosts=[bulk_server.url]), "i", max_retries=3, initial_backoff=0.001,
                        max_backoff=0.002)
    ops = [BulkOp("index", f"d{i}", json.dumps({"n": i})) for i in range(3)]
    bulk_server.faults = [429, 429]
    out = writer.write(ops)
    assert all(o.ok for o in out.values()) and bulk_server.requests == 3 and writer.retried_rounds == 2

    bulk_server.requests, bulk_server.always = 0, 429
    with pytest.raises(ClusterUnavailable, match="after 3 retries"):
        writer.write(ops)
    assert bulk_server.requests == 4                     # not (3 + 1) ** 2 = 16


# ================================================================ a load in another process
_CHILD = r"""
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
from pathlib import Path
from engine.client import ConnectionSettings
from plugin_ingest.fetch import FetchPolicy
from plugin_ingest.ingestor import IngestOptions, Ingestor
from test_ingest_e2e import HashEncoders
catalog, index, url, work = sys.argv[2:6]
opts = IngestOptions(index=index, create=True, batch_size=2, bulk_docs=2, progress=False,
                     fetch_policy=FetchPolicy(allow_private_urls=True),   # the image server is on 127.0.0.1
                     checkpoint_path=Path(work) / "ckpt.json", rejects_path=Path(work) / "rejects.jsonl")
r = Ingestor(catalog, opts, client=ConnectionSettings.resolve(url).client(), encoders=HashEncoders()).run()
print("DONE", r.counts.read, r.counts.indexed, r.counts.rejected, r.counts.unchanged)
"""


@pytest.fixture
def slow_images():
    """A slow image server whose images from number 20 on wait for ``.release``: a load of it
    cannot finish before the test has signalled it, however busy the machine."""
    from types import SimpleNamespace

    from test_ingest_e2e import held_images

    handler, release = held_images(20)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{srv.server_address[1]}", release=release)
    release.set()
    srv.shutdown()


def _slow_catalog(path: Path, base: str, n: int) -> Path:
    lines = [json.dumps({"id": f"s{i}", "title": f"slow {i}", "images": [f"{base}/{i}.png"]}) for i in range(n)]
    lines.insert(3, '{"id": "bad", "title": ')                       # one reject (line 4)
    path.write_text("\n".join(lines) + "\n")
    return path


def _wait_for_checkpoint(ckpt: Path, proc: subprocess.Popen, line: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if ckpt.exists() and json.loads(ckpt.read_text() or "{}").get("line", 0) >= line:
                return
        except ValueError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint past line {line}: rc={proc.poll()}")


@pytest.mark.engine
def test_a_second_load_of_the_same_catalog_and_index_refuses_or_waits(local_engine, os_client, fresh_index,
                                                                      tmp_path, slow_images):
    from test_ingest_e2e import HashEncoders

    path = _slow_catalog(tmp_path / "c.jsonl", slow_images.url, 30)
    index = fresh_index("hostile-lock")
    cmd = [sys.executable, "-c", _CHILD, str(REPO), str(path), index, local_engine.url(), str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_checkpoint(tmp_path / "ckpt.json", proc, 4)
        opts = dict(index=index, batch_size=2, bulk_docs=2, progress=False, checkpoint_path=tmp_path / "ckpt.json",
                    rejects_path=tmp_path / "rejects.jsonl", fetch_policy=FetchPolicy(allow_private_urls=True))
        with pytest.raises(IngestError, match=rf"another load is using .*pid {proc.pid}, started .*{index}"):
            Ingestor(path, IngestOptions(**opts), client=os_client, encoders=HashEncoders()).run()
        assert proc.poll() is None                                    # the first load goes on
        slow_images.release.set()
        enc = HashEncoders()
        report = Ingestor(path, IngestOptions(**opts, wait=True), client=os_client, encoders=enc).run()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert out.split() == ["DONE", "31", "30", "1", "0"]
    # the waiting load ran after the first had finished: nothing left to do, each reject once
    c = report.counts
    assert (c.read, c.unchanged, c.rejected, c.indexed) == (31, 30, 1, 0) and enc.passages == []
    assert [e["line"] for e in read_rejects(tmp_path / "rejects.jsonl")] == [4]


# ================================================================ 5, 6. signals to a real `cmsearch ingest`
def _segments(client, index) -> int:
    return len(client.cat.segments(index=index, format="json"))


@pytest.mark.engine
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_the_cli_cleanly_and_the_rerun_finishes(local_engine, os_client, fresh_index,
                                                                         tmp_path, slow_images, sig, status):
    path = _slow_catalog(tmp_path / "c.jsonl", slow_images.url, 40)
    index = fresh_index("hostile-signal")
    ckpt = tmp_path / "ckpt.json"
    cmd = [sys.executable, "-m", "cmsearch.cli", "ingest", str(path), "--index", index, "--create",
           "--url", local_engine.url(), "--heads", "none", "--batch-size", "2", "--bulk-docs", "2",
           "--checkpoint", str(ckpt), "--rejects", str(tmp_path / "rejects.jsonl"), "--json", "--accept-rejects",
           "--threads", "1", "--allow-private-urls"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_checkpoint(ckpt, proc, 8)
        proc.send_signal(sig)
        slow_images.release.set()                                 # the images in flight may finish now
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, out + err
    assert "Traceback" not in err and "Run the same command again" in err
    partial = json.loads(out)                                     # --json: the partial summary on stdout
    c = partial["counts"]
    assert partial["complete"] is False and signal.Signals(sig).name in partial["stopped"]
    assert c["read"] == c["indexed"] + c["rejected"] + c["unchanged"] and 8 <= c["read"] < 41
    assert json.loads(ckpt.read_text())["line"] >= 8 and _mode(ckpt) == 0o600
    settings = os_client.indices.get_settings(index=index)[index]["settings"]["index"]
    assert settings["refresh_interval"] == "1s"                  # restored on the way out
    assert os_client.count(index=index)["count"] == c["indexed"]  # searchable without a refresh of ours

    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    final = json.loads(res.stdout)
    c = final["counts"]
    assert final["complete"] and final["resumed_from_line"] >= 8
    assert (c["read"], c["rejected"]) == (41, 1) and c["read"] == c["indexed"] + c["rejected"] + c["unchanged"]
    # the load that created the index finished in the resumed run: merged there
    assert final["stages"]["merge"]["items"] == 1 and _segments(os_client, index) == 1
    assert os_client.count(index=index)["count"] == 40 and not ckpt.exists()


@pytest.mark.engine
def test_a_resumed_load_merges_the_index_its_first_run_created(os_client, fresh_index, tmp_path):
    from test_ingest_e2e import HashEncoders, _catalog, _products

    index = fresh_index("hostile-merge")
    path = _catalog(tmp_path / "c.jsonl", _products(tmp_path, 12))
    opts = dict(index=index, batch_size=4, bulk_docs=4, progress=False, checkpoint_path=tmp_path / "ckpt.json",
                rejects_path=tmp_path / "rejects.jsonl")

    def crash(cp):
        if cp.line >= 4:
            raise RuntimeError("simulated crash")

    with pytest.raises(IngestInterrupted):
        Ingestor(path, IngestOptions(create=True, **opts), client=os_client, encoders=HashEncoders(),
                 on_checkpoint=crash).run()
    assert json.loads((tmp_path / "ckpt.json").read_text())["created_index"] is True
    report = Ingestor(path, IngestOptions(**opts), client=os_client, encoders=HashEncoders()).run()
    assert report.resumed_from_line == 4 and report.times.items["merge"] == 1
    assert _segments(os_client, index) == 1
