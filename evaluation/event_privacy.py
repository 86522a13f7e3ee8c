"""What of a user-behaviour event may be stored: pseudonymous ids, no IP addresses, a retention period.

The click model needs searches, positions and clicks; it never needs to know who clicked.  A
shop's logs, though, often carry an e-mail address as the user id and the shopper's IP address
in the event attributes.  Before an event reaches the events index it goes through
:class:`EventScrubber`:

- ``user_id`` becomes a **keyed pseudonym**, ``hmac:`` + 32 hex digits of HMAC-SHA256 under a
  secret the operator sets (environment variable :data:`SECRET_ENV`, or a secret file).  The
  same user gets the same pseudonym in every load made with the same secret, so per-user
  counting still works, while nobody without the secret can test a guessed e-mail address
  against the index.  A plain (unkeyed) hash would not protect anything: e-mail addresses are
  easy to enumerate.
- **Without a secret, user ids are not stored at all** (dropped, with one warning per load).
  There is deliberately no built-in default secret: a default is a published secret, and
  hashing under it would only look like protection.
- ``client_id`` and ``session_id`` are meant to be random browser/session ids and are kept, unless
  one holds an e-mail or IP address, which is treated like a user id.
- **IP addresses are never stored**: attributes named for one (``ip``, ``client_ip``,
  ``remote_addr``, ``x_forwarded_for`` ...) and any attribute value that is an IP address are
  removed; e-mail values and user-id attributes (``user_id``, ``email`` ...) inside the event
  attributes are pseudonymized or dropped like ``user_id``; e-mail and IP addresses inside the free
  texts (``message``, ``user_query``) are replaced by ``[email]`` / ``[ip]``.
- Values that already are pseudonyms (``hmac:`` + 32 hex digits) are kept as they are, so
  re-loading an exported log does not hash twice.

Retention is a purge, not an index setting: :func:`evaluation.events.purge_events` deletes the
events older than a period the operator chooses (``cmsearch events purge --older-than 90d``).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from .events import Event

__all__ = ["SECRET_ENV", "MIN_SECRET_BYTES", "PrivacyError", "ScrubCounts", "EventScrubber", "is_pseudonym"]

log = logging.getLogger(__name__)

SECRET_ENV = "CMSEARCH_EVENTS_SECRET"
MIN_SECRET_BYTES = 16
PREFIX = "hmac:"
_PSEUDONYM = re.compile(r"^hmac:[0-9a-f]{32}$")
# a constant mixed into every HMAC, so these pseudonyms cannot be matched with HMACs of the
# same ids made for some other purpose under the same secret
_DOMAIN = b"cmsearch events user id v1\x00"

# attribute names (lower case, "-" read as "_") that hold an IP address or a person's id
_IP_KEYS = frozenset({"ip", "ip_address", "ipaddress", "ip_addr", "client_ip", "remote_ip", "remote_addr",
                      "remote_address", "user_ip", "x_forwarded_for", "forwarded_for", "x_real_ip", "forwarded"})
_USER_KEYS = frozenset({"user_id", "userid", "user", "email", "e_mail", "user_email", "email_address",
                        "username", "user_name", "login"})
_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+\.[^\s@<>()\[\],;:\"'.]+")
_IPV4_IN_TEXT = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6_IN_TEXT = re.compile(r"(?<![0-9a-fA-F:])(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![0-9a-fA-F:])")


class PrivacyError(ValueError):
    """The pseudonymization secret is unusable (too short, unreadable); the message never shows it."""


def is_pseudonym(value: str) -> bool:
    return bool(_PSEUDONYM.match(value))


def _is_ip(value: str) -> bool:
    text = value.strip()
    if not any(ch.isdigit() for ch in text):            # "::" alone is an address, but not one to look for
        return False
    if text.startswith("[") and "]" in text:           # [2001:db8::1]:443
        text = text[1:text.index("]")]
    elif text.count(":") == 1 and "." in text:          # 203.0.113.7:8080
        text = text.split(":", 1)[0]
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _is_email(value: str) -> bool:
    return bool(_EMAIL.fullmatch(value.strip()))


def _redact_text(text: str) -> tuple[str, int]:
    """``text`` with e-mail and IP addresses replaced; and how many were."""
    n = 0

    def sub(tag: str, check=None):
        def f(m: re.Match) -> str:
            nonlocal n
            if check is not None and not check(m.group(0)):
                return m.group(0)
            n += 1
            return tag
        return f

    text = _EMAIL.sub(sub("[email]"), text)
    text = _IPV4_IN_TEXT.sub(sub("[ip]", _is_ip), text)
    text = _IPV6_IN_TEXT.sub(sub("[ip]", _is_ip), text)
    return text, n


@dataclass
class ScrubCounts:
    """What one load changed, for its summary."""

    ids_pseudonymized: int = 0
    ids_dropped: int = 0            # no secret set: user ids not stored
    ip_addresses_removed: int = 0
    texts_redacted: int = 0         # e-mail / IP addresses replaced inside message or user_query

    def summary(self) -> str:
        parts = []
        if self.ids_pseudonymized:
            parts.append(f"{self.ids_pseudonymized} user id(s) stored as keyed pseudonyms")
        if self.ids_dropped:
            parts.append(f"{self.ids_dropped} user id(s) not stored ({SECRET_ENV} is not set)")
        if self.ip_addresses_removed:
            parts.append(f"{self.ip_addresses_removed} IP address(es) removed")
        if self.texts_redacted:
            parts.append(f"{self.texts_redacted} e-mail/IP address(es) blanked in texts")
        return "; ".join(parts)


class EventScrubber:
    """Turns events into what may be stored (see the module docstring); counts what it changed.

    One scrubber per load: it warns once, at the first user id it has to drop for want of a secret.
    """

    def __init__(self, secret: bytes | str | None) -> None:
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if secret is not None:
            secret = secret.strip()
            if len(secret) < MIN_SECRET_BYTES:
                raise PrivacyError(f"the events secret is too short ({len(secret)} bytes); use at least "
                                   f"{MIN_SECRET_BYTES} random bytes, e.g. the output of `openssl rand -hex 32`")
        self._secret = secret
        self.counts = ScrubCounts()
        self._warned = False

    @classmethod
    def from_environment(cls, secret_file: str | Path | None = None,
                         environ: Mapping[str, str] | None = None) -> "EventScrubber":
        """The secret from ``secret_file`` if given, else from :data:`SECRET_ENV`; none: ids are dropped."""
        if secret_file is not None:
            try:
                return cls(Path(secret_file).read_bytes())
            except OSError as exc:
                raise PrivacyError(f"cannot read the events secret file {secret_file}: "
                                   f"{exc.strerror or exc}") from None
        value = (os.environ if environ is None else environ).get(SECRET_ENV)
        return cls(value if value else None)

    @property
    def has_secret(self) -> bool:
        return self._secret is not None

    def pseudonym(self, raw: str) -> str | None:
        """The stored form of a person's id: a keyed pseudonym, or None when no secret is set."""
        if is_pseudonym(raw):
            return raw
        if self._secret is None:
            return None
        return PREFIX + hmac.new(self._secret, _DOMAIN + raw.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def _person(self, raw: str | None) -> str | None:
        if raw is None or is_pseudonym(raw):
            return raw
        out = self.pseudonym(raw)
        if out is None:
            self.counts.ids_dropped += 1
            if not self._warned:
                self._warned = True
                log.warning("%s is not set: user ids are dropped, not stored (set a secret of at least %d bytes "
                            "to keep them as keyed pseudonyms)", SECRET_ENV, MIN_SECRET_BYTES)
        else:
            self.counts.ids_pseudonymized += 1
        return out

    def _maybe_person(self, value: str | None) -> str | None:
        """client_id / session_id: kept, unless it is an IP address (removed) or an e-mail (a person's id)."""
        if value is None:
            return None
        if _is_ip(value):
            self.counts.ip_addresses_removed += 1
            return None
        if _is_email(value):
            return self._person(value)
        return value

    def _text(self, text: str | None) -> str | None:
        if not text:
            return text
        out, n = _redact_text(text)
        self.counts.texts_redacted += n
        return out

    def _attributes(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                key = str(k).lower().replace("-", "_")
                if key in _IP_KEYS:
                    self.counts.ip_addresses_removed += 1
                    continue
                if key in _USER_KEYS and isinstance(v, (str, int)) and not isinstance(v, bool):
                    v = self._person(str(v))
                    if v is None:
                        continue
                    out[k] = v
                    continue
                v = self._attributes(v)
                if v is not _DROP:
                    out[k] = v
            return out
        if isinstance(value, (list, tuple)):
            return [x for x in (self._attributes(v) for v in value) if x is not _DROP]
        if isinstance(value, str):
            if _is_ip(value):
                self.counts.ip_addresses_removed += 1
                return _DROP
            if _is_email(value):
                out = self._person(value)
                return _DROP if out is None else out
        return value

    def scrub(self, event: "Event") -> "Event":
        """The event as it may be stored."""
        return replace(event, user_id=self._person(event.user_id), client_id=self._maybe_person(event.client_id),
                       session_id=self._maybe_person(event.session_id), message=self._text(event.message),
                       user_query=self._text(event.user_query),
                       extra_attributes=self._attributes(dict(event.extra_attributes)))


_DROP = object()
