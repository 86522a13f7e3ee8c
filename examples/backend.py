"""A small search backend over cmsearch: FastAPI, one AsyncSearcher, a text and a photo endpoint.

Run it from the repository root (``pip install 'cmsearch[async]' fastapi uvicorn``)::

    OPENSEARCH_URL=http://127.0.0.1:9200 CMSEARCH_INDEX=products uvicorn examples.backend:app

    curl 'http://127.0.0.1:8000/search?q=红色+椅子&brand=ikea&size=5'
    curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' 'http://127.0.0.1:8000/photo-search?q=北风'

The searcher, its client and the space (the encoders that made the index) are made once, at startup, and shared by every
request: an ``AsyncSearcher`` serves concurrent requests on the event loop and runs the
encoders in worker threads.  Bad input is a 400 naming the problem, an engine failure a 502
whose message never carries the connection's password.  The photo is the request body itself
(any image type PIL reads), so the example needs no multipart parser.
"""
from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from engine.client import ConnectionSettings
from query_builder import (AsyncSearcher, BuildError, Filters, NumberRange, QueryImage, RequestError, SearchError,
                           SearchRequest, space_for_index)

MAX_PHOTO_BYTES = 20 * 1024 * 1024


def _space_of(conn: ConnectionSettings, index: str) -> Any:
    sync = conn.client()
    try:
        return space_for_index(sync, index)
    finally:
        sync.close()


def create_app(*, url: str | None = None, index: str | None = None, profile: Any = None,
               space: Any = None) -> FastAPI:
    """The app; unset arguments come from ``OPENSEARCH_URL`` / ``CMSEARCH_INDEX`` /
    ``CMSEARCH_PROFILE`` and the models under ``$CMSEARCH_MODELS_DIR``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        conn = ConnectionSettings.resolve(url)
        client = conn.async_client()
        name = index or os.environ.get("CMSEARCH_INDEX", "products")
        # the space that made the index (its heads and fusion weights); loading reads files: off the loop
        sp = space if space is not None else await asyncio.to_thread(_space_of, conn, name)
        app.state.conn = conn
        app.state.searcher = AsyncSearcher(client, profile or os.environ.get("CMSEARCH_PROFILE", "hybrid_minmax"),
                                           sp, index=name)
        try:
            yield
        finally:
            await client.close()

    app = FastAPI(title="cmsearch example backend", lifespan=lifespan)

    @app.exception_handler(RequestError)
    @app.exception_handler(BuildError)
    async def bad_request(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=400, content={"error": str(exc)})

    @app.exception_handler(SearchError)
    async def engine_failed(request: Request, exc: SearchError) -> JSONResponse:
        return JSONResponse(status_code=502, content={"error": request.app.state.conn.redact(str(exc))})

    def _filters(brand: list[str], category: list[str], price_min: float | None, price_max: float | None) -> Filters:
        price = NumberRange(price_min, price_max) if price_min is not None or price_max is not None else None
        return Filters(brand=tuple(brand), category=tuple(category), price=price)

    @app.get("/search")
    async def search(request: Request, q: str, brand: list[str] = Query(default=[]),
                     category: list[str] = Query(default=[]), price_min: float | None = None,
                     price_max: float | None = None, size: int = 10, offset: int = 0,
                     explain: bool = False) -> dict[str, Any]:
        """Products for the text ``q``, filtered, one page."""
        req = SearchRequest(text=q, filters=_filters(brand, category, price_min, price_max), size=size,
                            offset=offset, facets=("brand", "category", "price"), explain=explain)
        return (await request.app.state.searcher.search(req)).to_dict()

    @app.post("/photo-search")
    async def photo_search(request: Request, q: str | None = None, brand: list[str] = Query(default=[]),
                           category: list[str] = Query(default=[]), price_min: float | None = None,
                           price_max: float | None = None, size: int = 10, explain: bool = False) -> dict[str, Any]:
        """Products that look like the photo in the request body (and, if given, match the text ``q``)."""
        data = await request.body()
        if not data:
            raise RequestError("send the photo as the request body")
        if len(data) > MAX_PHOTO_BYTES:
            raise RequestError(f"the photo is {len(data)} bytes; at most {MAX_PHOTO_BYTES} are accepted")
        req = SearchRequest(text=q, images=(QueryImage(data=data, name="uploaded photo"),),
                            filters=_filters(brand, category, price_min, price_max), size=size, explain=explain)
        return (await request.app.state.searcher.search(req)).to_dict()

    return app


app = create_app()
