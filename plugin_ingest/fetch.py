"""Getting an image's bytes from where the catalog says it is: a local file, http(s), or a data: URI.

Fetching is separate from decoding (``models.images.load_image`` decodes bytes) so that every
way an image can fail is told apart in the rejects file: missing file, over the size cap,
HTTP status, connect timeout, read timeout, a bad data: URI.

HTTP uses ``http.client`` directly rather than ``urllib.request.urlopen`` because urlopen's
one ``timeout`` bounds each socket operation, not the whole download: a server that sends one
byte every few seconds would keep a worker forever.  Here the connect timeout bounds
connecting, and the read timeout bounds the *whole* response, checked between chunks; the
size cap is checked against Content-Length first and then while reading, so a 2 GB file is
never held in memory.  Redirects are followed (a few, http(s) only).
"""
from __future__ import annotations

import base64
import binascii
import http.client
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ImageFetcher", "FetchError", "DEFAULT_MAX_IMAGE_BYTES", "source_kind"]

DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024
_MAX_REDIRECTS = 5
_CHUNK = 256 * 1024


class FetchError(ValueError):
    """An image could not be fetched; ``reason`` is what the rejects file says."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{_label(source)}: {reason}")


def _label(source: str) -> str:
    """A source as shown in messages: data: URIs shortened, URL credentials removed."""
    if source.startswith("data:"):
        return source[:40] + ("..." if len(source) > 40 else "")
    parts = urllib.parse.urlsplit(source)
    if parts.scheme in ("http", "https") and (parts.username or parts.password):
        netloc = "***@" + (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return source


def source_kind(source: str) -> str:
    """"http", "data" or "file"."""
    low = source[:8].lower()
    if low.startswith(("http://", "https://")):
        return "http"
    if low.startswith("data:"):
        return "data"
    return "file"


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


@dataclass(frozen=True)
class ImageFetcher:
    """Fetches image bytes; safe to share between threads (it holds no connection)."""

    base_dir: Path
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    allow_http: bool = True
    user_agent: str = "cmsearch-ingest/0.1"

    def fetch(self, source: str) -> bytes:
        kind = source_kind(source)
        if kind == "http":
            if not self.allow_http:
                raise FetchError(source, "image URLs are turned off for this load")
            return self._http(source)
        if kind == "data":
            return self._data(source)
        return self._file(source)

    # -- local files ---------------------------------------------------------------------
    def _file(self, source: str) -> bytes:
        text = source
        if text.lower().startswith("file://"):
            text = urllib.parse.unquote(urllib.parse.urlsplit(text).path)
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise FetchError(source, f"image file not found: {path}") from None
        except OSError as exc:
            raise FetchError(source, f"image file cannot be read: {exc.strerror or exc}") from None
        if not path.is_file():
            raise FetchError(source, f"not a file: {path}")
        if size > self.max_bytes:
            raise FetchError(source, f"image file is {_mib(size)}, over the {_mib(self.max_bytes)} cap")
        if size == 0:
            raise FetchError(source, "image file is empty")
        try:
            with path.open("rb") as fh:
                return fh.read(self.max_bytes + 1)
        except OSError as exc:
            raise FetchError(source, f"image file cannot be read: {exc.strerror or exc}") from None

    # -- data: URIs ----------------------------------------------------------------------
    def _data(self, source: str) -> bytes:
        head, sep, payload = source.partition(",")
        if not sep:
            raise FetchError(source, "malformed data: URI (no ',' before the data)")
        params = head[5:].split(";")
        is_b64 = any(p.strip().lower() == "base64" for p in params[1:])
        # base64 grows data by 4/3; refuse before decoding what would exceed the cap
        est = len(payload) * 3 // 4 if is_b64 else len(payload)
        if est > self.max_bytes:
            raise FetchError(source, f"data: URI holds about {_mib(est)}, over the {_mib(self.max_bytes)} cap")
        if is_b64:
            compact = "".join(urllib.parse.unquote(payload).split())
            compact += "=" * (-len(compact) % 4)
            try:
                data = base64.b64decode(compact, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise FetchError(source, f"malformed data: URI (bad base64: {exc})") from None
        else:
            data = urllib.parse.unquote_to_bytes(payload)
        if not data:
            raise FetchError(source, "data: URI is empty")
        return data

    # -- http(s) -------------------------------------------------------------------------
    def _http(self, source: str) -> bytes:
        url = source
        deadline = None
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FetchError(source, f"not an http(s) URL: {_label(url)}")
            conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            kwargs = {"context": ssl.create_default_context()} if parts.scheme == "https" else {}
            try:
                conn = conn_cls(parts.hostname, parts.port, timeout=self.connect_timeout, **kwargs)
            except ValueError as exc:  # bad port
                raise FetchError(source, f"bad URL: {exc}") from None
            try:
                try:
                    conn.connect()
                except socket.timeout:
                    raise FetchError(source, f"connect timed out after {self.connect_timeout:g}s") from None
                except ssl.SSLError as exc:
                    raise FetchError(source, f"TLS error: {exc.reason or exc}") from None
                except OSError as exc:
                    raise FetchError(source, f"cannot connect: {exc.strerror or exc}") from None
                deadline = time.monotonic() + self.read_timeout
                conn.sock.settimeout(self.read_timeout)
                path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
                headers = {"User-Agent": self.user_agent, "Accept": "image/*,*/*;q=0.5"}
                if parts.username:
                    auth = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
                    headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
                try:
                    conn.request("GET", path, headers=headers)
                    conn.sock.settimeout(self._remaining(source, deadline))
                    resp = conn.getresponse()
                except socket.timeout:
                    raise FetchError(source, f"read timed out after {self.read_timeout:g}s") from None
                except (OSError, http.client.HTTPException) as exc:
                    raise FetchError(source, f"HTTP request failed: {exc}") from None
                if resp.status in (301, 302, 303, 307, 308):
                    location = resp.getheader("Location")
                    if not location:
                        raise FetchError(source, f"HTTP {resp.status} without a Location header")
                    url = urllib.parse.urljoin(url, location)
                    continue
                if resp.status != 200:
                    raise FetchError(source, f"HTTP {resp.status} {resp.reason}".rstrip())
                length = resp.getheader("Content-Length")
                if length and length.isdigit() and int(length) > self.max_bytes:
                    raise FetchError(source, f"image is {_mib(int(length))} (Content-Length), over the "
                                             f"{_mib(self.max_bytes)} cap")
                return self._read_body(source, conn, resp, deadline)
            finally:
                conn.close()
        raise FetchError(source, f"more than {_MAX_REDIRECTS} redirects")

    def _remaining(self, source: str, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(source, f"read timed out after {self.read_timeout:g}s")
        return left

    def _read_body(self, source: str, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                   deadline: float) -> bytes:
        buf = bytearray()
        while True:
            left = self._remaining(source, deadline)
            if conn.sock is not None:  # None once http.client handed the socket to the response
                conn.sock.settimeout(left)
            try:
                chunk = resp.read1(_CHUNK) if hasattr(resp, "read1") else resp.read(_CHUNK)
            except socket.timeout:
                raise FetchError(source, f"read timed out after {self.read_timeout:g}s") from None
            except (OSError, http.client.HTTPException) as exc:
                raise FetchError(source, f"download failed: {exc}") from None
            if not chunk:
                break
            buf += chunk
            if len(buf) > self.max_bytes:
                raise FetchError(source, f"image is over the {_mib(self.max_bytes)} cap (download stopped)")
        if not buf:
            raise FetchError(source, "HTTP response is empty")
        return bytes(buf)
