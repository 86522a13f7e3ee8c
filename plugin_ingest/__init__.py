"""Bulk ingest of product catalogs into the OpenSearch product index.

``cmsearch ingest CATALOG --index NAME`` is a thin shell over :class:`pipeline.Ingestor`.
The catalog schema is in ``SCHEMA.md``.  Modules, in the order data flows through them:

- :mod:`.catalog`    streaming JSONL / CSV reader (per-line UTF-8, BOM, offsets for resume)
- :mod:`.survey`     the first, cheap pass: ids (duplicates, --delete-missing), brands and categories
- :mod:`.schema`     record -> typed :class:`schema.Product`, or every reason it is invalid
- :mod:`.enrich`     product -> document text and facet fields, content hash
- :mod:`.fetch`      image bytes from files, http(s) and data: URIs, with timeouts and a size cap
- :mod:`.encode`     the encoders and heads as ingest uses them; OCR
- :mod:`.bulk`       ``streaming_bulk`` with retries on 429 / 5xx, refresh interval control
- :mod:`.rejects`, :mod:`.checkpoint`, :mod:`.report`   nothing lost, resume, the summary
- :mod:`.pipeline`   the stages together, overlapped with threads and bounded queues
- :mod:`.index_admin` creating and checking the index from ``mappings/``
"""
