"""Bulk ingest of product catalogs into the OpenSearch product index."""
