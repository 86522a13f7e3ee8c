"""Bulk ingest of product catalogs into the OpenSearch product index.

``cmsearch ingest CATALOG --index NAME`` is a thin shell over :class:`ingestor.Ingestor`.
The catalog schema is in ``SCHEMA.md``.  Modules, in the order data flows through them:

- :mod:`.catalog`    streaming JSONL / CSV reader (per-line UTF-8, BOM, offsets for resume)
- :mod:`.survey`     the first, cheap pass: ids (duplicates, --delete-missing), brands and categories
- :mod:`.schema`     record -> typed :class:`schema.Product`, or every reason it is invalid
- :mod:`.enrich`     product -> document text and facet fields, content hash
- :mod:`.records`    one record's state through a load; the read stage that batches them
- :mod:`.fetch`      image bytes from files, http(s) and data: URIs, within a fetch policy, timeouts, a size cap
- :mod:`.image_jobs` fetch + decode + preprocess one image (through the space, :mod:`models.space`); OCR
- :mod:`.documents`  fields + vectors -> the index document (pure)
- :mod:`.bulk`       ``streaming_bulk`` with one retry policy for 429 / 5xx, refresh interval control
- :mod:`.settle`     each record counted once, and its rejects entries
- :mod:`.rejects`, :mod:`.checkpoint`, :mod:`.report`   nothing lost, resume, the summary
- :mod:`.lock`, :mod:`.signals`   one load per checkpoint; SIGTERM / SIGHUP like Ctrl-C
- :mod:`.parts`      ``--part i/N``: which records one of N parallel loads takes
- :mod:`.ingestor`   the stages together, overlapped with threads and bounded queues
- :mod:`.load_options`, :mod:`.target`, :mod:`.deletions`   options; the index before and after; --delete-missing
- :mod:`.index_admin` creating and checking the index from ``mappings/``, with the space it records
"""
