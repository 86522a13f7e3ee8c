"""One space: the single path from pixels and words to vectors, shared by training, ingest and search.

A :class:`Space` is the encoders of a models directory, the heads of a heads directory (or
none), the one image decoder (:func:`models.images.load_image` with its limits), the image
preprocessing of the manifest, the passage text of a product, the fuse formula and the
identity of all of it. Product photos and query photos go through the same decode and the
same preprocessing because there is no other way to get a vector, as open_clip returns the
model together with its transforms so that training and serving cannot disagree on pixels.

Loading reads manifests only; each ONNX session opens the first time it is needed, so a
text query never loads the image tower. The failure policy is a parameter of the one loader:
``strict=True`` (ingest, training) raises :class:`SpaceError` for anything missing;
``strict=False`` (search) keeps what can be loaded and lists the rest in :attr:`problems`.

Example::

    space = Space.load(models_dir, heads_dir)                  # heads_dir None: no heads
    q = space.embed_query(text="红色 椅子", images=[photo_bytes])  # QueryEmbedding
    batch = space.embed_products([space.passage(p)], [[space.preprocess(space.decode(b))]])
    space.identity.describe()
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .identity import SpaceIdentity, heads_digest
from .images import ImageDecodeError, ImageSource, load_image
from .passage import DEFAULT_TEXT_FIELDS, PASSAGE_FORMAT, passage_text

__all__ = ["Space", "SpaceError", "ProductVectors", "QueryEmbedding", "fuse", "unit"]


class SpaceError(RuntimeError):
    """The models or heads cannot be loaded (or a part that was not loaded is needed)."""


def unit(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def fuse(image: Any, text: Any, w_img: float, w_txt: float) -> np.ndarray:
    """The fused vector: ``normalize(w_img * unit(image) + w_txt * unit(text))``, row by row.

    Written once, for products and queries alike. A zero row on one side gives the other
    side back (a product without images is its text).
    """
    return unit(float(w_img) * unit(image) + float(w_txt) * unit(text))


def _unit_mean(rows: np.ndarray) -> np.ndarray:
    """Several photos of one thing become one vector: the renormalized mean of unit rows."""
    return unit(unit(rows).mean(axis=0))


@dataclass
class ProductVectors:
    """Vectors of a batch of products; list entries are per product, arrays row-aligned with the input."""

    text: np.ndarray                              # [n, shared]
    fused: np.ndarray                             # [n, shared]
    features: list[np.ndarray]                    # per product [k, image_feature], unit rows
    image_vectors: list[np.ndarray] | None        # per product [k, shared]; None without heads
    categories: list[tuple[str, float] | None]    # per product: the most probable classifier label


@dataclass
class QueryEmbedding:
    """A query's vectors; None where the input was absent or the part needed is not loaded."""

    text: np.ndarray | None = None
    image: np.ndarray | None = None
    image_feature: np.ndarray | None = None
    fused: np.ndarray | None = None
    categories: tuple[tuple[str, float], ...] = ()
    decoded: list = field(default_factory=list)   # the decoded query photos (for OCR)


class Space:
    """The models, heads and formulas of one vector space; build it with :meth:`load`."""

    def __init__(self, models_dir: Path, manifest: dict, heads_dir: Path | None, heads_manifest: dict | None, *,
                 strict: bool, threads: int | None, w_img: float | None, w_txt: float | None,
                 text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS, problems: Sequence[str] = (),
                 image_fit: str | None = None) -> None:
        from mappings import VectorDims
        from .image_encoder import FITS

        self.models_dir, self.manifest = models_dir, manifest
        self.heads_dir, self.heads_manifest = heads_dir, heads_manifest
        self.strict, self.threads = strict, threads
        self.text_fields = tuple(text_fields)
        self.problems: list[str] = list(problems)
        fusion = (heads_manifest or {}).get("fusion") or {}
        self.w_img = float(w_img if w_img is not None else fusion.get("w_img", 0.5))
        self.w_txt = float(w_txt if w_txt is not None else fusion.get("w_txt", 0.5))
        if self.w_img < 0 or self.w_txt < 0 or self.w_img + self.w_txt <= 0:
            raise SpaceError(f"fusion weights must be >= 0 and not both 0 (got {self.w_img}, {self.w_txt})")
        self.dims = VectorDims.from_manifest(heads_manifest if heads_manifest is not None else manifest)
        if heads_manifest is None and self.dims.shared != int(manifest["text"]["dim"]):
            raise SpaceError(f"the model manifest's shared space is {self.dims.shared}-d but the text encoder "
                             f"gives {manifest['text']['dim']}-d vectors; this model set needs its heads (--heads)")
        # How photos reach the image tower: the heads declare the fit they were trained with and
        # the image model file they run (fp32, or int8 calibrated on their catalog); without heads
        # (training) the caller may choose the fit. One choice, for products and queries alike.
        tower = (heads_manifest or {}).get("image_encoder") or {}
        declared = tower.get("fit")
        if declared and image_fit and declared != image_fit:
            raise SpaceError(f"the heads were trained with image fit {declared!r}, not {image_fit!r}")
        base = dict((manifest.get("image") or {}).get("preprocess") or {})
        self.image_fit = str(declared or image_fit or base.get("fit") or "center_crop")
        if self.image_fit not in FITS:
            raise SpaceError(f"unknown image fit {self.image_fit!r} (known: {', '.join(FITS)})")
        self.preprocess_spec = {**base, "fit": self.image_fit}
        self.image_variant = str(tower.get("variant") or (manifest.get("image") or {}).get("default_variant") or "fp32")
        self._tower_file = tower.get("file") if tower.get("variant") else None
        if self._tower_file and heads_dir is None:
            raise SpaceError("the heads name their own image model file but have no directory")
        self._lock = threading.Lock()
        self._parts: dict[str, Any] = {}
        self.identity = self._identity()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, models_dir: str | Path | None = None, heads_dir: str | Path | None = None, *,
             strict: bool = True, threads: int | None = None, w_img: float | None = None,
             w_txt: float | None = None, image_fit: str | None = None) -> "Space":
        """Read the manifests of ``models_dir`` (default: the user's models dir) and ``heads_dir``.

        ``heads_dir=None`` means no heads (see :mod:`models.heads_registry` for finding them).
        ``image_fit`` ("center_crop" or "letterbox") is for spaces without heads (training
        chooses it); heads declare their own, and asking for another one is an error.
        Only manifests are read here; sessions open on first use.
        """
        from .heads import MANIFEST as HEADS_MANIFEST
        from .manifest import ManifestError, default_models_dir, load_manifest

        mdir = Path(models_dir) if models_dir else default_models_dir()
        try:
            manifest = load_manifest(mdir)
        except ManifestError as exc:
            raise SpaceError(str(exc)) from None
        hman, problems = None, []
        if heads_dir is not None:
            hdir = Path(heads_dir)
            try:
                hman = json.loads((hdir / HEADS_MANIFEST).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                msg = (f"no heads at {hdir} ({HEADS_MANIFEST} unreadable: {getattr(exc, 'strerror', None) or exc}); "
                       "run `cmsearch train CATALOG` first")
                if strict:
                    raise SpaceError(msg) from None
                problems.append(f"{msg}; no photo search through the shared space")
                heads_dir = None
        return cls(mdir, manifest, Path(heads_dir) if heads_dir is not None else None, hman, strict=strict,
                   threads=threads, w_img=w_img, w_txt=w_txt, problems=problems, image_fit=image_fit)

    def _identity(self) -> SpaceIdentity:
        from .manifest import entry_variants

        def model(key: str) -> tuple[str, str]:
            entry = self.manifest[key]
            v = entry_variants(entry).get(entry.get("default_variant") or "fp32") or {}
            return f"{entry.get('name', key)}:{entry.get('default_variant')}", str(v.get("sha256"))

        (tname, tsha), (iname, isha) = model("text"), model("image")
        if self._tower_file:  # the heads' own image model file (int8 calibrated on their catalog)
            iname = f"{self.manifest['image'].get('name', 'image')}:{self.image_variant}"
            isha = str(((self.heads_manifest or {}).get("image_encoder") or {}).get("sha256"))
        if self.image_fit != "center_crop":  # the export default keeps older identities unchanged
            iname += f"+{self.image_fit}"
        spaces = (self.heads_manifest or self.manifest)["spaces"]
        return SpaceIdentity(
            text_model=tname, text_sha256=tsha, image_model=iname, image_sha256=isha,
            heads=heads_digest(self.heads_manifest) if self.heads_manifest is not None else None,
            shared_dim=self.dims.shared, image_feature_dim=self.dims.image_feature,
            shared_space_type=str(spaces["shared"].get("space_type", "cosinesimil")),
            image_space_type=str(spaces["image_feature"].get("space_type", "cosinesimil")),
            w_img=self.w_img, w_txt=self.w_txt, passage=f"{PASSAGE_FORMAT}:{','.join(self.text_fields)}")

    def _part(self, name: str) -> Any:
        """The text encoder, image encoder or heads, opened once (None when lenient and broken)."""
        with self._lock:
            if name in self._parts:
                return self._parts[name]
            try:
                part = self._open(name)
            except Exception as exc:  # noqa: BLE001 - any reason a part cannot open is reported the same way
                msg = f"{name} not loaded: {exc}"
                if self.strict:
                    raise SpaceError(msg) from None
                self.problems.append(msg)
                part = None
            self._parts[name] = part
            return part

    def _open(self, name: str) -> Any:
        if name == "text":
            from .text_encoder import TextEncoder
            return TextEncoder(self.models_dir, self.manifest["text"], threads=self.threads)
        if name == "image":
            from .image_encoder import ImageEncoder
            if self._tower_file:
                tower = self.heads_manifest["image_encoder"]
                entry = {**self.manifest["image"], "default_variant": self.image_variant,
                         "variants": {self.image_variant: {"file": self._tower_file, "sha256": tower.get("sha256")}}}
                return ImageEncoder(self.heads_dir, entry, threads=self.threads)
            return ImageEncoder(self.models_dir, self.manifest["image"], threads=self.threads)
        if name == "heads":
            if self.heads_dir is None:
                return None
            from .heads import Heads
            return Heads.load(self.heads_dir, threads=1)
        raise KeyError(name)

    def open_all(self) -> "Space":
        """Open every session now (ingest: fail before the load starts, not in its first batch)."""
        for name in ("text", "image", "heads"):
            self._part(name)
        return self

    def loaded(self) -> tuple[str, ...]:
        """Parts whose sessions are open (for timing and tests: a text query opens no image tower)."""
        with self._lock:
            return tuple(n for n, p in self._parts.items() if p is not None)

    # ------------------------------------------------------------------ facts
    @property
    def floors(self) -> dict[str, float]:
        """The no-words k-NN floors this space knows, by retriever kind (:mod:`models.floors`)."""
        from .floors import space_floors

        return space_floors(self.manifest, self.heads_manifest)

    @property
    def has_heads(self) -> bool:
        return self.heads_manifest is not None

    @property
    def text_head_is_identity(self) -> bool:
        return self.heads_manifest is None or not (self.heads_manifest.get("text_head") or {}).get("file")

    def describe(self) -> str:
        where = f"heads {self.heads_dir}" if self.heads_dir is not None else "no heads (text space only)"
        return f"{self.identity.describe()}, {where}"

    # ------------------------------------------------------------------ pixels and words
    def decode(self, source: ImageSource, name: str | None = None):
        """The only image decoder: EXIF upright, transparency on white, CMYK via ICC, size limits."""
        return load_image(source, name=name)

    def preprocess(self, img) -> np.ndarray:
        """A decoded image -> the image tower's input: the manifest's preprocessing with the space's fit."""
        from .image_encoder import preprocess
        return preprocess(img, self.preprocess_spec)

    def passage(self, product: Any) -> str:
        return passage_text(product, self.text_fields)

    def encode_text(self, texts: Sequence[str], kind: str = "passage", batch_size: int = 32) -> np.ndarray:
        """Raw text-encoder vectors (unit rows); ``kind`` is "query" or "passage"."""
        enc = self._require("text")
        return enc.encode(list(texts), kind=kind, batch_size=batch_size)

    def image_features(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Preprocessed [n, 3, H, W] -> (unit backbone features, logits or None)."""
        enc = self._require("image")
        if not len(pixels):
            return np.zeros((0, self.dims.image_feature), np.float32), None
        feats, logits = enc.encode_arrays(np.asarray(pixels, np.float32))
        return unit(feats), logits

    def encode_images(self, sources: Sequence[ImageSource], batch_size: int = 32
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, list[ImageDecodeError]]:
        """Decode, preprocess and encode image files or bytes: (features, logits, ok positions, errors).

        One bad image is its own :class:`ImageDecodeError` (with ``index``); the rest are encoded.
        """
        from .image_encoder import encode_in_batches

        feats, logits, ok, errors = encode_in_batches(sources, lambda src, name: self.preprocess(self.decode(src)),
                                                      self.image_features, batch_size)
        f = np.concatenate(feats) if feats else np.zeros((0, self.dims.image_feature), np.float32)
        lg = np.concatenate(logits) if logits and sum(map(len, logits)) == len(f) else None
        return f, lg, np.asarray(ok, np.int64), errors

    @property
    def image_labels(self) -> list[str]:
        return list(self._require("image").labels)

    # ------------------------------------------------------------------ into the shared space
    def project_text(self, e5: np.ndarray) -> np.ndarray:
        heads = self._part("heads") if not self.text_head_is_identity else None
        if heads is None and not self.text_head_is_identity:
            raise SpaceError("the text head is needed but not loaded: " + "; ".join(self.problems))
        return heads.project_text(e5) if heads is not None else unit(e5)

    def project_image(self, feats: np.ndarray) -> np.ndarray | None:
        heads = self._part("heads") if self.has_heads else None
        return heads.project_image(feats) if heads is not None else None

    def classify(self, feats: np.ndarray, k: int = 1) -> list[list[tuple[str, float]]] | None:
        heads = self._part("heads") if self.has_heads else None
        return heads.classify(feats, k=k) if heads is not None and heads.has_classifier else None

    def fuse(self, image: Any, text: Any) -> np.ndarray:
        return fuse(image, text, self.w_img, self.w_txt)

    def category_label(self, path: str) -> str:
        """A classifier label ("A > B") as the index writes category paths ("A>B")."""
        from mappings import fields as F

        sep = ((self.heads_manifest or {}).get("classifier") or {}).get("separator") or " > "
        return F.SEP.join(p.strip() for p in path.split(sep.strip()) if p.strip())

    # ------------------------------------------------------------------ products and queries
    def embed_products(self, passages: Sequence[str], pixels: Sequence[Sequence[np.ndarray]]) -> ProductVectors:
        """A batch of products (passage, preprocessed photos) -> text, image, feature and fused vectors."""
        if len(passages) != len(pixels):
            raise ValueError(f"{len(passages)} passages for {len(pixels)} products")
        d = self.dims.shared
        text = (self.project_text(self.encode_text(passages, "passage", max(1, len(passages))))
                if len(passages) else np.zeros((0, d), np.float32))
        flat = [p for ps in pixels for p in ps]
        feats, _ = self.image_features(np.stack(flat)) if flat else (np.zeros((0, self.dims.image_feature),
                                                                              np.float32), None)
        img = self.project_image(feats) if self.has_heads else None
        cats = self.classify(feats, k=1) if len(feats) and self.has_heads else None
        out_f, out_v, out_c, fused = [], [] if img is not None else None, [], np.zeros_like(text)
        j = 0
        for i, ps in enumerate(pixels):
            k = len(ps)
            out_f.append(feats[j:j + k])
            if img is not None and k:
                out_v.append(img[j:j + k])
                fused[i] = self.fuse(_unit_mean(img[j:j + k])[None, :], text[i:i + 1])[0]
            else:
                if out_v is not None:
                    out_v.append(np.zeros((0, d), np.float32))
                fused[i] = unit(text[i])
            out_c.append(max((c[0] for c in cats[j:j + k]), key=lambda c: c[1]) if cats and k else None)
            j += k
        return ProductVectors(text=text, fused=fused, features=out_f, image_vectors=out_v, categories=out_c)

    def embed_query(self, text: str | None = None, images: Sequence[ImageSource] = (), *,
                    names: Sequence[str] | None = None, classify_top: int = 5) -> QueryEmbedding:
        """A shopper's text and/or photos -> query vectors (several photos: their mean).

        Photos are decoded first (the same decode as product photos), so a broken upload fails
        with :class:`ImageDecodeError` before any model runs. Only the parts the input needs are
        opened: text alone never loads the image tower.
        """
        out = QueryEmbedding()
        decoded = [self.decode(src, name=(names[i] if names else None)) for i, src in enumerate(images)]
        out.decoded = decoded
        if text and text.strip() and self._part("text") is not None:
            e5 = self.encode_text([text], "query", 1)
            try:
                out.text = self.project_text(e5)[0]
            except SpaceError as exc:
                self.problems.append(str(exc))
        if decoded and self._part("image") is not None:
            feats, _ = self.image_features(np.stack([self.preprocess(im) for im in decoded]))
            out.image_feature = _unit_mean(feats)
            img = self.project_image(feats)
            if img is not None:
                out.image = _unit_mean(img)
            per_image = self.classify(feats, k=classify_top)
            if per_image:
                summed: dict[str, float] = {}
                for preds in per_image:
                    for label, prob in preds:
                        summed[label] = summed.get(label, 0.0) + float(prob) / len(decoded)
                out.categories = tuple(sorted(summed.items(), key=lambda kv: (-kv[1], kv[0])))
        if out.image is not None and out.text is not None:
            out.fused = self.fuse(out.image[None, :], out.text[None, :])[0]
        elif out.image is not None or out.text is not None:
            out.fused = unit(out.image if out.image is not None else out.text)
        return out

    def _require(self, name: str) -> Any:
        part = self._part(name)
        if part is None:
            raise SpaceError(f"the {name} encoder is not loaded: " + "; ".join(self.problems))
        return part

    def __repr__(self) -> str:
        return f"Space({self.describe()})"
