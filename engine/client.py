"""Connecting to a cluster: the local node by default, or a user's own with URL, basic auth and TLS.

Credentials come from the environment (or arguments) and are never part of a message: URLs are
shown without their user-info, and errors are passed through ``redact`` before anyone sees them.

Without a URL the target is the local node, and only when it runs: falling back to whatever
answers on 127.0.0.1:9200 would report another node's health or create an index there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from opensearchpy import OpenSearch

from .errors import EngineError
from .node import LocalEngine
from .security import SecureNode
from .urls import redact_urls, safe_url

__all__ = ["ConnectionSettings", "NoCluster", "NoClusterError", "redact_urls", "safe_url"]

ENV_URL = "OPENSEARCH_URL"
ENV_USER = "OPENSEARCH_USER"
ENV_PASSWORD = "OPENSEARCH_PASSWORD"
ENV_CA = "OPENSEARCH_CA_CERTS"
ENV_PASSWORD_FILE = "OPENSEARCH_PASSWORD_FILE"


class NoClusterError(EngineError):
    """No cluster was named and the local node is not running."""


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to connect; ``repr`` never shows the password."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_certs: bool = True
    ca_certs: str | None = None
    timeout: float = 60.0
    # connections kept open per host: a Searcher is shared by threads, and urllib3 keeps one by
    # default, so every concurrent query beyond the first opened a connection (on a secured
    # cluster a TLS handshake) and threw it away after
    pool_size: int = 10

    @classmethod
    def resolve(cls, url: str | None = None, *, user: str | None = None, password: str | None = None,
                insecure: bool = False, ca_certs: str | None = None, timeout: float = 60.0,
                password_file: str | None = None) -> "ConnectionSettings":
        """Arguments first, then OPENSEARCH_* environment variables, then the running local node.

        The password is taken from ``password``, the URL's user-info, ``password_file`` (its first
        line), $OPENSEARCH_PASSWORD or the file $OPENSEARCH_PASSWORD_FILE names, in that order.
        The local node, when it runs secured, is verified against its own CA by default.
        Raises :class:`NoClusterError` when none of them gives a URL, ``ValueError`` for a
        password file that cannot be read.
        """
        url = url or os.environ.get(ENV_URL)
        if not url:
            local = LocalEngine()
            url = local.url()
            if not url:
                raise NoClusterError(f"no cluster given (--url or ${ENV_URL}) and the local engine under "
                                     f"{local.state_dir} is not running: start it with `cmsearch engine start`, "
                                     "or name a cluster with --url")
            ca_file = SecureNode(local.state_dir).ca_file
            if url.startswith("https:") and not (ca_certs or os.environ.get(ENV_CA)) and ca_file.is_file():
                ca_certs = str(ca_file)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {safe_url(url)!r}")
        # user-info in the URL moves to basic auth, so the URL itself can be shown
        if parts.username is not None:
            user = user or unquote(parts.username)
            password = password or (unquote(parts.password) if parts.password is not None else None)
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            netloc = host + (f":{parts.port}" if parts.port else "")
            url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        user = user or os.environ.get(ENV_USER)
        password = password or _read_password(password_file) or os.environ.get(ENV_PASSWORD) or \
            _read_password(os.environ.get(ENV_PASSWORD_FILE))
        return cls(url=url.rstrip("/"), user=user, password=password, verify_certs=not insecure,
                   ca_certs=ca_certs or os.environ.get(ENV_CA), timeout=timeout)

    def client(self) -> OpenSearch:
        return OpenSearch(**self._client_kwargs())

    def async_client(self) -> Any:
        """An ``AsyncOpenSearch`` with the same URL, auth and TLS settings (needs aiohttp:
        ``pip install cmsearch[async]``); the caller closes it (``await client.close()``)."""
        from opensearchpy import AsyncOpenSearch

        return AsyncOpenSearch(**self._client_kwargs())

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict = {"hosts": [self.url], "timeout": self.timeout, "http_compress": False,
                        "pool_maxsize": self.pool_size}
        if self.user is not None:
            kwargs["http_auth"] = (self.user, self.password or "")
        if self.url.startswith("https"):
            kwargs["use_ssl"] = True
            kwargs["verify_certs"] = self.verify_certs
            kwargs["ssl_show_warn"] = self.verify_certs
            if self.ca_certs:
                kwargs["ca_certs"] = self.ca_certs
            if not self.verify_certs:
                kwargs["ssl_assert_hostname"] = False
        return kwargs

    def redact(self, text: str) -> str:
        """``text`` with this connection's password (and any URL user-info) removed."""
        if self.password:
            text = text.replace(self.password, "***")
        return redact_urls(text)

    def describe_error(self, exc: BaseException) -> str | None:
        """One line that says what to fix for a refused login, a refused action or a TLS failure;
        None for other errors.  Never the password."""
        status = getattr(exc, "status_code", None)
        who = f"user {self.user!r}" if self.user else "no user"
        if status == 401:
            if self.user is None:
                return (f"{safe_url(self.url)} asks for credentials and none were given: set {ENV_USER} and "
                        f"{ENV_PASSWORD} (or {ENV_PASSWORD_FILE}), or put the user in the URL")
            return (f"{safe_url(self.url)} refused the credentials of {who} (401): check the user name and "
                    f"the password ({ENV_PASSWORD} / {ENV_PASSWORD_FILE})")
        if status == 403:
            reason = _reason(exc)
            return self.redact(f"{who} may not do this on {safe_url(self.url)} (403): {reason}")
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl")[0].strip(" )'\"") \
                if "certificate verify failed:" in text else "certificate verify failed"
            against = f"the CA in {self.ca_certs}" if self.ca_certs else "the system's CA certificates"
            return (f"the TLS certificate of {safe_url(self.url)} could not be verified against {against} "
                    f"({detail}): pass the cluster's CA with --ca-certs (or {ENV_CA})")
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
            return f"{safe_url(self.url)} does not speak TLS: use an http:// URL"
        return None


def _read_password(path: str | None) -> str | None:
    """The first line of the password file ``path`` (None when no file is named)."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline().rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read the password file {path}: {exc.strerror or type(exc).__name__}") from None
    if not line:
        raise ValueError(f"the password file {path} is empty")
    return line


def _reason(exc: BaseException) -> str:
    info = getattr(exc, "info", None)
    if isinstance(info, dict) and isinstance(info.get("error"), dict):
        return str(info["error"].get("reason") or info["error"].get("type") or exc)
    return str(getattr(exc, "error", "") or exc)


@dataclass(frozen=True)
class NoCluster:
    """Stands in for :class:`ConnectionSettings` when no cluster is named and the local node is
    down: a command that never needs a cluster (a dry run) still works, and the first that asks
    for a client gets the reason instead of a connection to whatever answers on port 9200."""

    reason: str
    url: None = None

    def client(self) -> OpenSearch:
        raise NoClusterError(self.reason)

    def redact(self, text: str) -> str:
        return redact_urls(text)
