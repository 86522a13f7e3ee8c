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

from .node import EngineError, LocalEngine
from .urls import redact_urls, safe_url

__all__ = ["ConnectionSettings", "NoCluster", "NoClusterError", "redact_urls", "safe_url"]

ENV_URL = "OPENSEARCH_URL"
ENV_USER = "OPENSEARCH_USER"
ENV_PASSWORD = "OPENSEARCH_PASSWORD"
ENV_CA = "OPENSEARCH_CA_CERTS"


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

    @classmethod
    def resolve(cls, url: str | None = None, *, user: str | None = None, password: str | None = None,
                insecure: bool = False, ca_certs: str | None = None, timeout: float = 60.0) -> "ConnectionSettings":
        """Arguments first, then OPENSEARCH_* environment variables, then the running local node.

        Raises :class:`NoClusterError` when none of them gives a URL.
        """
        url = url or os.environ.get(ENV_URL)
        if not url:
            local = LocalEngine()
            url = local.url()
            if not url:
                raise NoClusterError(f"no cluster given (--url or ${ENV_URL}) and the local engine under "
                                     f"{local.state_dir} is not running: start it with `cmsearch engine start`, "
                                     "or name a cluster with --url")
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
        password = password or os.environ.get(ENV_PASSWORD)
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
        kwargs: dict = {"hosts": [self.url], "timeout": self.timeout, "http_compress": False}
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
