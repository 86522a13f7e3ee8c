"""Augmented views of a training photo: random resized crop, flip, colour jitter, blur.

A catalog photo is a studio shot; the photos shoppers search with are crops of shelves and rooms,
taken in other light and often a little blurred. Training the image head on random views of each
catalog photo (as well as the photo itself) teaches it that these are the same product. The
backbone stays frozen, so a view is only a different input to it: each view's features are
computed once and cached (:meth:`models.training.features.FeatureCache.views`) under the photo,
the view's seed and the augmentation settings, and every epoch reuses them.

A view is a pure function of (photo, seed, settings): the random generator is seeded from them,
so a rerun (or another machine) makes the same view and finds it in the cache.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

__all__ = ["AugmentConfig", "augment", "view_rng"]


@dataclass(frozen=True)
class AugmentConfig:
    """How views are drawn; ``views`` per photo (0: no augmentation). Recorded in the heads manifest."""

    views: int = 2
    scale: tuple[float, float] = (0.35, 1.0)      # share of the photo's area the crop keeps
    ratio: tuple[float, float] = (3 / 4, 4 / 3)   # aspect ratio range of the crop
    flip: float = 0.5                             # probability of a horizontal flip
    jitter: float = 0.3                           # brightness / contrast / saturation factor in [1-j, 1+j]
    blur: float = 0.3                             # probability of a Gaussian blur ...
    blur_radius: tuple[float, float] = (0.3, 1.5)  # ... with a radius drawn from this range (pixels)

    def __post_init__(self):
        if self.views < 0:
            raise ValueError(f"views must be >= 0, not {self.views}")
        if not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ValueError(f"scale must be 0 < lo <= hi <= 1, not {self.scale}")

    def digest(self) -> str:
        """What decides a view's pixels (the view count does not: view 0 is view 0 whatever the count)."""
        d = asdict(self)
        d.pop("views")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def view_rng(photo_key: str, seed: int, cfg: AugmentConfig) -> np.random.Generator:
    h = hashlib.sha256(f"{photo_key}|{seed}|{cfg.digest()}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _crop_box(w: int, h: int, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box: area share and log-uniform aspect, 10 tries, else the whole photo."""
    area = w * h
    lo, hi = math.log(cfg.ratio[0]), math.log(cfg.ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*cfg.scale)
        aspect = math.exp(rng.uniform(lo, hi))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return x, y, x + cw, y + ch
    return 0, 0, w, h


def augment(img: Image.Image, rng: np.random.Generator, cfg: AugmentConfig) -> Image.Image:
    """One random view of a decoded RGB photo (the space's preprocessing follows, as for any photo)."""
    out = img.crop(_crop_box(img.size[0], img.size[1], rng, cfg))
    if rng.random() < cfg.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if cfg.jitter > 0:
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            out = enhance(out).enhance(float(rng.uniform(1 - cfg.jitter, 1 + cfg.jitter)))
    if rng.random() < cfg.blur:
        out = out.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*cfg.blur_radius))))
    return out
