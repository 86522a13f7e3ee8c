"""Image-text pairs as arrays, product splits, and the refusal of catalogs too small to train on.

A product with several images gives several pairs that share one text; a product may also have
several text *views* (e.g. its English and its Chinese title), all of which are positives for
each of its images. Keeping images and views as two arrays indexed by product (rather than a
flat list of pairs) lets the loss treat every image of a product as a positive for its text,
instead of pushing apart two photos of the same product as if they were different products.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

MIN_PAIRS = 50


class NotEnoughPairs(ValueError):
    """The catalog cannot give a useful model: no images, or fewer than MIN_PAIRS pairs.

    Refusing is better than exporting heads that were fitted to a handful of pairs and would
    silently rank images at random.
    """


@dataclass
class PairData:
    """Cached backbone features of a catalog, arranged by product.

    image_features[i] belongs to product image_product[i]; text_vectors[j] is a text view of
    product view_product[j]. product_ids / categories are per product (index = product index).
    """

    image_features: np.ndarray          # [N, F] float32
    image_product: np.ndarray           # [N] int64
    text_vectors: np.ndarray            # [V, T] float32
    view_product: np.ndarray            # [V] int64
    product_ids: list[str]
    categories: list[tuple[str, ...]] = field(default_factory=list)
    image_keys: list[str] = field(default_factory=list)   # e.g. file path per image row
    # augmented views (training only): view_features[m] is a view of image row view_of[m]
    view_features: np.ndarray | None = None  # [M, F] float32
    view_of: np.ndarray | None = None        # [M] int64

    def __post_init__(self):
        self.image_features = np.asarray(self.image_features, dtype=np.float32)
        self.text_vectors = np.asarray(self.text_vectors, dtype=np.float32)
        self.image_product = np.asarray(self.image_product, dtype=np.int64)
        self.view_product = np.asarray(self.view_product, dtype=np.int64)
        if len(self.image_features) != len(self.image_product):
            raise ValueError("image_features and image_product differ in length")
        if len(self.text_vectors) != len(self.view_product):
            raise ValueError("text_vectors and view_product differ in length")
        if not self.categories:
            self.categories = [() for _ in self.product_ids]
        if not self.image_keys:
            self.image_keys = [str(i) for i in range(len(self.image_product))]
        if self.view_features is None or self.view_of is None or not len(self.view_of):
            self.view_features, self.view_of = None, None
        else:
            self.view_features = np.asarray(self.view_features, dtype=np.float32)
            self.view_of = np.asarray(self.view_of, dtype=np.int64)
            if len(self.view_features) != len(self.view_of):
                raise ValueError("view_features and view_of differ in length")

    @property
    def n_views(self) -> int:
        return 0 if self.view_of is None else int(len(self.view_of))

    def _views_for(self, im: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The views of the kept image rows (mask ``im``), their owners renumbered."""
        if self.view_of is None:
            return None, None
        row = -np.ones(len(im), dtype=np.int64)
        row[im] = np.arange(int(im.sum()))
        keep = row[self.view_of] >= 0
        return self.view_features[keep], row[self.view_of[keep]]

    @property
    def n_pairs(self) -> int:
        return int(len(self.image_product))

    @property
    def n_products(self) -> int:
        return len(self.product_ids)

    def products_with_images(self) -> np.ndarray:
        return np.unique(self.image_product)

    def subset(self, products: Sequence[int] | np.ndarray) -> "PairData":
        """Only the given products (re-indexed 0..k-1 in the given order), with their images and views."""
        products = np.asarray(products, dtype=np.int64)
        remap = -np.ones(self.n_products, dtype=np.int64)
        remap[products] = np.arange(len(products))
        im = remap[self.image_product] >= 0
        vm = remap[self.view_product] >= 0
        vf, vo = self._views_for(im)
        return PairData(
            image_features=self.image_features[im], image_product=remap[self.image_product[im]],
            text_vectors=self.text_vectors[vm], view_product=remap[self.view_product[vm]],
            product_ids=[self.product_ids[i] for i in products],
            categories=[self.categories[i] for i in products],
            image_keys=[k for k, keep in zip(self.image_keys, im) if keep], view_features=vf, view_of=vo)

    def without_views(self) -> "PairData":
        return PairData(self.image_features, self.image_product, self.text_vectors, self.view_product,
                        list(self.product_ids), list(self.categories), list(self.image_keys))

    def with_images(self, mask: np.ndarray) -> "PairData":
        """The same products and views, only the image rows where mask is true."""
        mask = np.asarray(mask, dtype=bool)
        vf, vo = self._views_for(mask)
        return PairData(self.image_features[mask], self.image_product[mask], self.text_vectors,
                        self.view_product, list(self.product_ids), list(self.categories),
                        [k for k, keep in zip(self.image_keys, mask) if keep], vf, vo)

    def first_view(self) -> np.ndarray:
        """[P, T]: one text vector per product (its first view); zeros where it has none."""
        out = np.zeros((self.n_products, self.text_vectors.shape[1]), dtype=np.float32)
        seen = np.zeros(self.n_products, dtype=bool)
        for j, p in enumerate(self.view_product):
            if not seen[p]:
                out[p] = self.text_vectors[j]
                seen[p] = True
        return out


@dataclass(frozen=True)
class Split:
    """Product indices of the three parts. Test products are never seen by training or stopping."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict:
        return {"train": int(len(self.train)), "val": int(len(self.val)), "test": int(len(self.test))}


def _count(n: int, value: float | int) -> int:
    return int(value) if isinstance(value, int) or value >= 1 else int(round(n * float(value)))


def split_products(candidates: Sequence[int] | np.ndarray, *, val: float | int = 0.1,
                   test: float | int = 0.15, seed: int = 0) -> Split:
    """Random product split, reproducible from the seed.

    val/test are fractions (< 1) or absolute counts (ints >= 1). Splitting by product, not by
    pair, keeps all images of a product on one side, so evaluation measures products the heads
    never saw rather than another photo of a product they learnt.
    """
    cands = np.array(sorted(int(c) for c in candidates), dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = cands[rng.permutation(len(cands))]
    n_test, n_val = _count(len(cands), test), _count(len(cands), val)
    if n_test + n_val >= len(cands):
        raise NotEnoughPairs(f"cannot hold out {n_test} test and {n_val} validation products "
                             f"out of {len(cands)} products with images")
    return Split(train=np.sort(order[n_test + n_val:]), val=np.sort(order[n_test:n_test + n_val]),
                 test=np.sort(order[:n_test]))


def check_pairs(n_pairs: int, n_products_with_images: int, *, n_records: int,
                image_urls: int = 0, missing_images: int = 0, failed_images: int = 0,
                min_pairs: int = MIN_PAIRS) -> None:
    """Raise NotEnoughPairs with a message that says what is missing and why."""
    why = []
    if image_urls:
        why.append(f"{image_urls} image URLs skipped (training reads local files only; "
                   "download them and point 'images' at the files)")
    if missing_images:
        why.append(f"{missing_images} image files not found")
    if failed_images:
        why.append(f"{failed_images} images could not be decoded")
    if n_pairs == 0:
        detail = "; ".join(why) if why else "no record lists an image"
        raise NotEnoughPairs(
            f"the catalog has no usable image-text pairs ({n_records} records; {detail}). "
            "Text-image alignment needs product photos.")
    if n_pairs < min_pairs:
        detail = f"; {'; '.join(why)}" if why else ""
        raise NotEnoughPairs(
            f"the catalog gives only {n_pairs} image-text pairs from {n_products_with_images} "
            f"products; at least {min_pairs} are needed for heads that generalise "
            f"({n_records} records{detail}). Add product photos or products.")
