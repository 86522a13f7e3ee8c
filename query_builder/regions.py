"""Shop the look: a scene photo cut into region queries, each searched, the results merged per product.

A room, a shelf or a street photo holds several products, and a whole-photo vector is the
average of all of them, close to none. So the photo is cut into regions, overlapping square
windows at a few scales (:func:`cut_regions`, pure); every region is embedded
through the space in one batch (the same decode, preprocessing and heads as any query photo,
:func:`region_requests`); each region runs as an ordinary photo search; and the lists are
merged per product (:func:`merge_regions`): a product's score is its best score over the
regions (``max``) or its reciprocal-rank sum (``rrf``), and it comes back with the box of the
region that ranked it best. The defaults of :class:`RegionSpec` were chosen on a validation
split of the IKEA room photos (BENCHMARKS.md, "Shop the look").
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Hashable, Sequence

import numpy as np

from .request import QueryVectors, RequestError, SearchRequest

__all__ = ["Box", "RegionSpec", "cut_regions", "merge_regions", "region_requests", "MERGES"]

MERGES = ("max", "rrf")
MAX_GRID = 8


@dataclass(frozen=True)
class Box:
    """A region in pixels of the upright (EXIF-rotated) photo: left, top inclusive; right, bottom exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)


@dataclass(frozen=True)
class RegionSpec:
    """How a scene photo is cut and its regions' results merged.

    - ``grids``: for each n, square windows n to the photo's short side (:func:`cut_regions`).
    - ``overlap``: the fraction of a window shared with its neighbour (0 <= overlap < 1).
    - ``merge``: ``max`` (best score of a product over the regions) or ``rrf`` (sum of
      1 / (``rrf_k`` + rank) over the regions that listed it).
    - ``per_region``: results asked of each region's search.
    - ``min_side``: a grid whose windows would be smaller than this (pixels) is left out.
    """

    grids: tuple[int, ...] = (1, 2, 3, 4)
    overlap: float = 0.25
    merge: str = "max"
    per_region: int = 50
    rrf_k: int = 60
    min_side: int = 32

    def __post_init__(self) -> None:
        grids = tuple(self.grids)
        if not grids or any(isinstance(g, bool) or not isinstance(g, int) or not 1 <= g <= MAX_GRID for g in grids):
            raise RequestError(f"region grids must be integers from 1 to {MAX_GRID}, got {list(grids)}")
        object.__setattr__(self, "grids", tuple(dict.fromkeys(grids)))
        if not isinstance(self.overlap, (int, float)) or not 0 <= float(self.overlap) < 1:
            raise RequestError(f"region overlap must be at least 0 and below 1, got {self.overlap!r}")
        if self.merge not in MERGES:
            raise RequestError(f"region merge {self.merge!r} is not one of {list(MERGES)}")
        if isinstance(self.per_region, bool) or not isinstance(self.per_region, int) or not 1 <= self.per_region <= 100:
            raise RequestError(f"per_region must be an integer from 1 to 100, got {self.per_region!r}")
        if self.rrf_k < 0 or self.min_side < 1:
            raise RequestError("rrf_k must be >= 0 and min_side >= 1")


def _spans(length: int, size: float, overlap: float) -> list[tuple[int, int]]:
    """Windows of ``size`` over [0, length), neighbours sharing at least ``overlap`` of a window,
    evenly spread so that the first starts at 0 and the last ends at ``length``."""
    if size >= length:
        return [(0, length)]
    count = int(np.ceil((length - size) / (size * (1 - overlap)) - 1e-9)) + 1
    stride = (length - size) / (count - 1)
    return [(int(round(i * stride)), length if i == count - 1 else int(round(i * stride + size)))
            for i in range(count)]


def cut_regions(width: int, height: int, grids: Sequence[int] = (1, 2, 3, 4), overlap: float = 0.25,
                min_side: int = 32) -> tuple[Box, ...]:
    """The region boxes of a ``width`` x ``height`` photo: square windows, grid by grid.

    For each n in ``grids``, n windows span the photo's short side, neighbours sharing
    ``overlap`` of a window, and as many windows of the same size as it takes span the long side
    with at least that overlap. Windows are square because the image tower sees the centre
    square of what it is given: a wide window would be cut to its middle, and the box would
    claim more than was looked at. n = 1 is the photo itself when it is square. Grids whose
    windows would be smaller than ``min_side`` are left out (never n = 1); a box listed twice
    is kept once.
    """
    if width < 1 or height < 1:
        raise RequestError(f"a photo of {width} x {height} pixels has no regions")
    spec = RegionSpec(grids=tuple(grids), overlap=overlap, min_side=min_side)
    short = min(width, height)
    boxes: list[Box] = []
    for n in spec.grids:
        size = short / (1 + (n - 1) * (1 - spec.overlap))
        if n > 1 and size < min_side:
            continue
        for top, bottom in _spans(height, size, spec.overlap):
            for left, right in _spans(width, size, spec.overlap):
                boxes.append(Box(left, top, right, bottom))
    return tuple(dict.fromkeys(boxes))


def merge_regions(lists: Sequence[Sequence[tuple[Hashable, float]]], merge: str = "max", rrf_k: int = 60
                  ) -> list[tuple[Hashable, float, int]]:
    """Per-region ranked lists of (product, score) -> [(product, merged score, region index)], best first.

    ``max``: a product's best score over the regions, and that region. ``rrf``: the sum over
    the regions that list it of 1 / (rrf_k + rank), and the region where its rank was best.
    Ties keep the order of first appearance (region by region), so the result is deterministic.
    """
    if merge not in MERGES:
        raise RequestError(f"region merge {merge!r} is not one of {list(MERGES)}")
    score: dict[Hashable, float] = {}
    best: dict[Hashable, tuple[float, int]] = {}   # product -> (its best value in one region, that region)
    for r, ranked in enumerate(lists):
        for rank, (doc, s) in enumerate(ranked, start=1):
            value = float(s) if merge == "max" else 1.0 / (rrf_k + rank)
            if merge == "max":
                score[doc] = max(score.get(doc, -np.inf), value)
            else:
                score[doc] = score.get(doc, 0.0) + value
            if doc not in best or value > best[doc][0]:
                best[doc] = (value, r)
    order = sorted(score, key=lambda d: -score[d])   # sorted() is stable: first appearance breaks ties
    return [(d, score[d], best[d][1]) for d in order]


def region_requests(request: SearchRequest, space: Any, spec: RegionSpec = RegionSpec()
                    ) -> list[tuple[Box, SearchRequest]]:
    """The request's one photo cut into regions, each embedded (one batch) into its own photo request.

    Every region request carries precomputed vectors (and the query text's vector, computed
    once, when the request has text too) and asks for ``spec.per_region`` results from the
    start. Raises :class:`RequestError` unless the request has exactly one photo, and
    :class:`~query_builder.query_vectors.QueryImageError` when the photo cannot be decoded.
    """
    from models.images import ImageDecodeError
    from models.space import unit

    from .query_vectors import QueryImageError, encode

    if len(request.images) != 1:
        raise RequestError(f"a region search takes exactly one photo (a scene), got {len(request.images)}")
    if space is None:
        raise RequestError("a region search needs the models (a space) to embed its regions")
    photo = request.images[0]
    try:
        img = space.decode(photo.data, name=photo.name or "query image")
    except ImageDecodeError as exc:
        raise QueryImageError(f"{exc.item} could not be decoded as an image: {exc.reason}") from None
    if img.mode != "RGB":
        img = img.convert("RGB")
    boxes = cut_regions(img.width, img.height, spec.grids, spec.overlap, spec.min_side)
    pixels = np.stack([space.preprocess(img.crop(b.as_tuple())) for b in boxes])
    feats, _ = space.image_features(pixels)
    shared = space.project_image(feats)
    text_vec = None
    if request.text and request.text.strip():
        text_vec = encode(replace(request, images=()), space).vectors
    out = []
    for i, box in enumerate(boxes):
        vectors = QueryVectors(image=tuple(float(v) for v in shared[i]) if shared is not None else None,
                               image_feature=tuple(float(v) for v in unit(feats[i])))
        vectors = vectors.merged(text_vec)
        out.append((box, replace(request, images=(), vectors=vectors, offset=0, size=spec.per_region,
                                 explain=False)))
    return out
