"""Getting an image's bytes from where the catalog says it is: a local file, http(s), or a data: URI.

Fetching is separate from decoding (``models.images.load_image`` decodes bytes) so that every
way an image can fail is told apart in the rejects file: missing file, over the size cap,
HTTP status, connect timeout, read timeout, a bad data: URI, a source the fetch policy refuses.

A catalog is input from someone else, and the loader runs with the operator's rights next to
the cluster: without limits, an image named ``/etc/shadow`` or ``http://127.0.0.1:9200/_cat/indices``
would be read and its fate reported in the rejects file (server-side request forgery, port
probing).  :class:`FetchPolicy` says what a catalog may point at: local files only under the
catalog's directory and directories the operator names (symlinks resolved first), http(s) only to
public addresses unless private networks are allowed, every redirect and every DNS answer checked
again, and the connection made to the address that was checked (a second DNS lookup could answer
differently: DNS rebinding).  Reasons say what was refused and never quote what a server sent.

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
import http
import http.client
import ipaddress
import os
import re
import socket
import ssl
import stat
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from engine.urls import redact_urls

__all__ = ["ImageFetcher", "FetchError", "FetchPolicy", "DEFAULT_MAX_IMAGE_BYTES", "source_kind"]

DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024
_MAX_REDIRECTS = 5
_CHUNK = 256 * 1024
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    return redact_urls(source)


def source_kind(source: str) -> str:
    """"http", "data", "file" (a path or a file:// URL) or "url" (any other scheme, never fetched)."""
    low = source[:8].lower()
    if low.startswith(("http://", "https://")):
        return "http"
    if low.startswith("data:"):
        return "data"
    m = _SCHEME.match(source)
    if m and m.group(1).lower() != "file":
        return "url"
    return "file"


def _phrase(status: int) -> str:
    """The standard reason phrase (the server's own is not shown: it is the server's text)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def address_class(ip: IPAddress) -> str | None:
    """None for a public unicast address, else which kind of non-public address ``ip`` is."""
    if isinstance(ip, ipaddress.IPv6Address):  # IPv4 inside IPv6 is judged as the IPv4 it carries
        inner = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if inner is not None:
            return address_class(inner)
    for name, hit in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                      ("multicast", ip.is_multicast), ("unspecified", ip.is_unspecified),
                      ("private", ip.is_private), ("reserved", ip.is_reserved)):
        if hit:
            return name
    return None if ip.is_global else "non-public"


@dataclass(frozen=True)
class FetchPolicy:
    """What the images of a catalog may point at (see the module docstring for why).

    ``allow_dirs``: local directories besides the catalog's own.  ``allow_private_urls``: fetch
    from loopback, private, link-local, multicast and reserved addresses too.  ``allow_networks``:
    only these non-public networks (e.g. an internal image server), without opening all of them.
    ``resolve`` maps a host name and port to its addresses (the system resolver; tests swap it).
    """

    allow_dirs: tuple[Path, ...] = ()
    allow_private_urls: bool = False
    allow_networks: tuple[Network, ...] = ()
    resolve: Callable[[str, int], Sequence[str]] = field(default=_resolve, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_dirs", tuple(Path(d).expanduser() for d in self.allow_dirs))
        object.__setattr__(self, "allow_networks",
                           tuple(ipaddress.ip_network(n, strict=False) for n in self.allow_networks))

    def roots(self, base_dir: Path) -> list[Path]:
        """The directories local images may be in, symlinks resolved."""
        return [Path(os.path.realpath(d)) for d in (base_dir, *self.allow_dirs)]

    def refused_address(self, ip: IPAddress) -> str | None:
        """The kind of address ``ip`` is ("loopback", "private", ...) when connecting is refused, else None."""
        kind = address_class(ip)
        if kind is None or self.allow_private_urls or any(ip in net for net in self.allow_networks
                                                           if net.version == ip.version):
            return None
        return kind


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the host name resolves to now."""

    def __init__(self, host: str, port: int | None, address: str, **kwargs) -> None:
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As :class:`_PinnedHTTPConnection`, with TLS: SNI and the certificate check use the host name."""

    def __init__(self, host: str, port: int | None, address: str, **kwargs) -> None:
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


_PRIVATE_HINT = "pass --allow-private-urls (or --allow-net CIDR) to fetch from such addresses"


@dataclass(frozen=True)
class ImageFetcher:
    """Fetches image bytes within ``policy``; safe to share between threads (it holds no connection)."""

    base_dir: Path
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    policy: FetchPolicy = field(default_factory=FetchPolicy)
    user_agent: str = "cmsearch-ingest/0.1"

    def fetch(self, source: str) -> bytes:
        kind = source_kind(source)
        if kind == "http":
            return self._http(source)
        if kind == "data":
            return self._data(source)
        if kind == "url":
            scheme = _SCHEME.match(source).group(1).lower()  # type: ignore[union-attr]
            raise FetchError(source, f"refused: {scheme}:// URLs are not fetched (only http, https, data: and "
                                     "local files)")
        return self._file(source)

    # -- local files ---------------------------------------------------------------------
    def _file(self, source: str) -> bytes:
        text = source
        if text.lower().startswith("file://"):
            parts = urllib.parse.urlsplit(text)
            if parts.netloc not in ("", "localhost"):
                raise FetchError(source, "refused: a file:// URL on another host")
            text = urllib.parse.unquote(parts.path)
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        roots = self.policy.roots(self.base_dir)
        # symlinks resolved before the check: a link in the catalog's folder to /etc/shadow is refused;
        # checked before anything else, so refusals do not tell whether a file outside exists
        real = Path(os.path.realpath(path))
        if not _inside(real, roots):
            raise FetchError(source, "refused: the image path is outside the catalog's directory"
                                     f"{' and the allowed directories' if len(roots) > 1 else ''} "
                                     "(allow its directory with --allow-dir)")
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise FetchError(source, f"image file not found: {path}") from None
        except OSError as exc:
            raise FetchError(source, f"image file cannot be read: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            opened = Path(f"/proc/self/fd/{fd}")
            if opened.exists() and not _inside(Path(os.path.realpath(opened)), roots):  # swapped meanwhile
                raise FetchError(source, "refused: the image path is outside the catalog's directory")
            if not stat.S_ISREG(st.st_mode):
                raise FetchError(source, f"not a file: {path}")
            if st.st_size > self.max_bytes:
                raise FetchError(source, f"image file is {_mib(st.st_size)}, over the {_mib(self.max_bytes)} cap")
            if st.st_size == 0:
                raise FetchError(source, "image file is empty")
            with os.fdopen(fd, "rb") as fh:
                fd = -1  # the file object owns it now
                return fh.read(self.max_bytes + 1)
        except OSError as exc:
            raise FetchError(source, f"image file cannot be read: {exc.strerror or exc}") from None
        finally:
            if fd >= 0:
                os.close(fd)

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
    def _address(self, source: str, parts: urllib.parse.SplitResult, port: int, hop: int) -> str:
        """The one address to connect to for this hop, checked against the policy."""
        host = parts.hostname or ""
        where = "redirected to" if hop else "the URL's host"
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            answers = [literal]
        else:
            try:
                answers = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self.policy.resolve(host, port)]
            except (OSError, UnicodeError) as exc:
                raise FetchError(source, f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
            if not answers:
                raise FetchError(source, f"cannot resolve {host}: no address")
        # every answer must pass: a name answering with one public and one private address is refused
        for ip in answers:
            kind = self.policy.refused_address(ip)
            if kind:
                name = f"{host} ({ip})" if literal is None else str(ip)
                raise FetchError(source, f"refused: {where} {name}, a {kind} address; {_PRIVATE_HINT}")
        return str(answers[0])

    def _http(self, source: str) -> bytes:
        url = source
        deadline = None
        for hop in range(_MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                scheme = f"{parts.scheme}://" if parts.scheme else "a non-URL"
                raise FetchError(source, f"refused: redirected to {scheme} (only http and https are followed)"
                                 if hop else f"not an http(s) URL: {_label(url)}")
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError as exc:  # bad port
                raise FetchError(source, f"bad URL: {exc}") from None
            address = self._address(source, parts, port, hop)
            if parts.scheme == "https":
                conn: http.client.HTTPConnection = _PinnedHTTPSConnection(
                    parts.hostname, port, address, timeout=self.connect_timeout, context=ssl.create_default_context())
            else:
                conn = _PinnedHTTPConnection(parts.hostname, port, address, timeout=self.connect_timeout)
            try:
                try:
                    conn.connect()
                except socket.timeout:
                    raise FetchError(source, f"connect timed out after {self.connect_timeout:g}s") from None
                except ssl.SSLError as exc:
                    raise FetchError(source, f"TLS error: {exc.reason or type(exc).__name__}") from None
                except OSError as exc:
                    raise FetchError(source, f"cannot connect: {exc.strerror or type(exc).__name__}") from None
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
                except http.client.HTTPException as exc:  # what the peer sent is not quoted: it may be anything
                    raise FetchError(source, f"HTTP request failed: the answer is not HTTP ({type(exc).__name__})") \
                        from None
                except OSError as exc:
                    raise FetchError(source, f"HTTP request failed: {exc.strerror or type(exc).__name__}") from None
                if resp.status in (301, 302, 303, 307, 308):
                    location = resp.getheader("Location")
                    if not location:
                        raise FetchError(source, f"HTTP {resp.status} without a Location header")
                    url = urllib.parse.urljoin(url, location)
                    continue
                if resp.status != 200:
                    raise FetchError(source, f"HTTP {resp.status} {_phrase(resp.status)}".rstrip())
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
            except http.client.HTTPException as exc:
                raise FetchError(source, f"download failed: {type(exc).__name__}") from None
            except OSError as exc:
                raise FetchError(source, f"download failed: {exc.strerror or type(exc).__name__}") from None
            if not chunk:
                break
            buf += chunk
            if len(buf) > self.max_bytes:
                raise FetchError(source, f"image is over the {_mib(self.max_bytes)} cap (download stopped)")
        if not buf:
            raise FetchError(source, "HTTP response is empty")
        return bytes(buf)
