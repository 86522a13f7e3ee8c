"""The real OpenSearch client with every call a searcher makes written down, for tests that check
what a search asks of the cluster (which APIs, which paths), not only what it returns."""
from __future__ import annotations


class RecordingClient:
    """A client that records every call the searcher makes (api, method and path)."""

    def __init__(self, client):
        self._client, self.calls = client, []
        rec = self

        class Transport:
            def perform_request(self, method, url, *a, **kw):
                rec.calls.append(("transport", method, url))
                return client.transport.perform_request(method, url, *a, **kw)

        self.transport = Transport()

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if callable(attr):
            def call(*a, **kw):
                self.calls.append((name, kw.get("index")))
                return attr(*a, **kw)
            return call
        return attr
