"""Removing credentials from URLs before anyone sees them.

The one redaction function of the project.  It lives in a module of its own, with nothing but the
standard library, so that every layer that shows a URL (engine, plugin_ingest, cmsearch) can use
it without importing the engine's node or a cluster client.

User-info is redacted whatever the scheme (``ftp://u:p@h``, ``s3://key:secret@bucket``,
``redis://:pw@h``): a password in a URL is a password, whether or not we can fetch that scheme.
"""
from __future__ import annotations

import re

__all__ = ["redact_urls", "safe_url"]

# scheme "://" then everything up to the *last* "@" of the authority (a password may hold an
# unescaped "@"); the authority ends at "/", "?", "#" or white space.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]*@")


def redact_urls(text: str) -> str:
    """``text`` with the user-info of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\1***@", text)


def safe_url(url: str) -> str:
    """One URL as it may be shown."""
    return redact_urls(url)
