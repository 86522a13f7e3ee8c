"""Connecting to a cluster: the local node by default, or a user's own with URL, basic auth and TLS.

Credentials come from the environment (or arguments) and are never part of a message: URLs are
shown without their user-info, and errors are passed through ``redact`` before anyone sees them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opensearchpy import OpenSearch

from .node import LocalEngine

ENV_URL = "OPENSEARCH_URL"
ENV_USER = "OPENSEARCH_USER"
ENV_PASSWORD = "OPENSEARCH_PASSWORD"
ENV_CA = "OPENSEARCH_CA_CERTS"
DEFAULT_URL = "http://127.0.0.1:9200"


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
        """Arguments first, then OPENSEARCH_* environment variables, then the running local node."""
        url = url or os.environ.get(ENV_URL) or LocalEngine().url() or DEFAULT_URL
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {safe_url(url)!r}")
        # user-info in the URL moves to basic auth, so the URL itself can be shown
        if parts.username:
            user = user or parts.username
            password = password or parts.password
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
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


def safe_url(url: str) -> str:
    return redact_urls(url)


_USERINFO = re.compile(r"(https?://)[^/@\s]+@")


def redact_urls(text: str) -> str:
    return _USERINFO.sub(r"\1***@", text)
