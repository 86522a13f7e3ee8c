"""Encode every product image and text once, and keep the features on disk.

Feature extraction is the whole cost of training (the heads train in seconds), so features are
cached by *content identity*: an image by its absolute path, size and modification time, a text
by its exact string and kind ("query"/"passage"). The cache lives in one folder per model (named
by a hash of the model's manifest entry), so vectors from another model build are never mixed
in. Storage is one ``.npy`` matrix plus a JSON key list per kind, written atomically; loading a
few thousand rows is instant and a rerun of ``cmsearch train`` re-encodes nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .progress import Progress


_SAVE_EVERY = 30.0   # seconds between cache saves during a long extraction


def default_cache_dir() -> Path:
    """$CMSEARCH_FEATURE_CACHE, else ~/.cache/cmsearch/features."""
    env = os.environ.get("CMSEARCH_FEATURE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cmsearch" / "features"


def _model_key(entry: dict, fit: str = "center_crop") -> str:
    """What decides a model's vectors: the weights file actually used and its pre-processing.

    Build metadata (timings, parity notes) is left out, so rebuilding identical weights keeps
    the cache; a different default variant (fp32 vs int8), preprocessing or image fit starts a
    new one (the default centre crop keeps the key caches had before fits existed).
    """
    variant = entry.get("default_variant")
    weights = (entry.get("variants") or {}).get(variant, {}).get("sha256") or entry.get("onnx_sha256")
    ident = {"weights": weights, "variant": variant,
             **{k: entry.get(k) for k in ("preprocess", "prefixes", "max_tokens", "pooling", "normalize")}}
    if not weights:  # unknown layout: fall back to the whole entry
        ident = dict(entry)
    if fit != "center_crop":
        ident["fit"] = fit
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def image_key(path: str) -> str:
    """Identity of an image file: path + size + mtime (a changed file is re-encoded)."""
    st = os.stat(path)
    return hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


def view_key(path: str, seed: int, aug) -> str:
    """Identity of one augmented view: the photo's identity, the view's seed and the settings."""
    return hashlib.sha1(f"{image_key(path)}|view{int(seed)}|{aug.digest()}".encode()).hexdigest()


def text_key(text: str, kind: str) -> str:
    return hashlib.sha1(f"{kind}\0{text}".encode("utf-8")).hexdigest()


class _Store:
    """key -> row of a float32 matrix, persisted as <name>.npy + <name>.keys.json."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = folder, name
        self.keys: dict[str, int] = {}
        self.matrix: np.ndarray | None = None
        kp, mp = folder / f"{name}.keys.json", folder / f"{name}.npy"
        if kp.is_file() and mp.is_file():
            try:
                keys = json.loads(kp.read_text())
                mat = np.load(mp)
                if len(keys) == len(mat):
                    self.keys = {k: i for i, k in enumerate(keys)}
                    self.matrix = mat
            except (OSError, ValueError):  # a broken cache is rebuilt, never trusted
                self.keys, self.matrix = {}, None

    def get(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(rows found, boolean mask of found keys)."""
        idx = np.array([self.keys.get(k, -1) for k in keys], dtype=np.int64)
        found = idx >= 0
        rows = self.matrix[idx[found]] if self.matrix is not None and found.any() else None
        return rows, found

    def add(self, keys: Sequence[str], rows: np.ndarray) -> None:
        if not len(keys):
            return
        rows = np.asarray(rows, dtype=np.float32)
        start = 0 if self.matrix is None else len(self.matrix)
        self.matrix = rows if self.matrix is None else np.concatenate([self.matrix, rows])
        for i, k in enumerate(keys):
            self.keys[k] = start + i

    def save(self) -> None:
        if self.matrix is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".npy")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, self.matrix)
        os.replace(tmp, self.folder / f"{self.name}.npy")
        order = sorted(self.keys, key=self.keys.get)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(order, fh)
        os.replace(tmp, self.folder / f"{self.name}.keys.json")


@dataclass
class ImageBatch:
    """Features of the images that decoded; `ok[i]` is the input position of row i."""

    features: np.ndarray
    logits: np.ndarray | None
    ok: np.ndarray
    errors: list[str] = field(default_factory=list)
    encoded: int = 0        # how many were encoded now (the rest came from the cache)
    seconds: float = 0.0


class FeatureCache:
    """The encoders of one :class:`models.space.Space` behind a feature cache.

    The space opens its encoders on first use, so a fully cached run does not even load the
    ONNX models; photos are decoded by the space, exactly as ingest and search decode them.
    """

    def __init__(self, space, cache_dir: str | Path | None = None, log: Callable[[str], None] | None = None):
        self.space = space
        self.manifest = manifest = space.manifest
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        folder = root / f"image-{_model_key(manifest['image'], getattr(space, 'image_fit', 'center_crop'))}"
        self._img = _Store(folder, "features")
        self._logit = _Store(folder, "logits")
        self._views = _Store(folder, "views")
        self._txt = _Store(root / f"text-{_model_key(manifest['text'])}", "vectors")
        self.log = log or (lambda s: None)

    @property
    def image_labels(self) -> list[str]:
        return self.space.image_labels

    def images(self, paths: Sequence[str], batch_size: int = 32, progress_every: int = 500) -> ImageBatch:
        """Raw (unit-length) backbone features for image files; undecodable ones are reported."""
        t0 = time.perf_counter()
        keys, key_ok, errors = [], [], []
        for i, p in enumerate(paths):
            try:
                keys.append(image_key(p))
                key_ok.append(i)
            except OSError as exc:
                errors.append(f"{p}: {exc.strerror or exc}")
        rows, found = self._img.get(keys)
        todo = [i for i, f in enumerate(found) if not f]
        if todo:
            with Progress(self.log, f"encoding images ({len(keys) - len(todo)} cached)", len(todo), "images") as prog:
                for s in range(0, len(todo), progress_every):
                    chunk = todo[s:s + progress_every]
                    feats, logits, ok, errs = self.space.encode_images([paths[key_ok[i]] for i in chunk], batch_size)
                    errors += [str(err) for err in errs]
                    new_keys = [keys[chunk[j]] for j in ok]
                    if new_keys:  # saved per chunk: an interrupted run keeps what it encoded
                        self._img.add(new_keys, feats)
                        if logits is not None:
                            self._logit.add(new_keys, logits)
                        self._img.save()
                        self._logit.save()
                    prog.update(s + len(chunk))
        rows, found = self._img.get(keys)
        ok = np.array([key_ok[i] for i in np.flatnonzero(found)], dtype=np.int64)
        logits, lfound = self._logit.get(keys)
        if logits is None or not np.array_equal(lfound, found):
            logits = None
        return ImageBatch(features=rows if rows is not None else np.zeros((0, 0), np.float32),
                          logits=logits, ok=ok, errors=errors, encoded=len(todo),
                          seconds=time.perf_counter() - t0)

    def views(self, paths: Sequence[str], aug, batch_size: int = 32, seed: int = 0,
              chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Features of ``aug.views`` augmented views of each photo: (features [m, F], photo position [m]).

        View ``v`` of a photo is drawn with seed ``seed + v`` (see :mod:`.augment`) and cached
        under the photo, that seed and the settings, so every epoch and every rerun reuses it.
        Photos that do not decode get no views (:meth:`images` reports them).
        """
        from .augment import augment, view_rng

        keys, owners, seeds = [], [], []
        for i, p in enumerate(paths):
            for v in range(aug.views):
                try:
                    keys.append(view_key(p, seed + v, aug))
                except OSError:
                    break
                owners.append(i)
                seeds.append(seed + v)
        _, found = self._views.get(keys)
        pending: dict[int, list[tuple[int, str]]] = {}
        for k, o, sd, f in zip(keys, owners, seeds, found):
            if not f:
                pending.setdefault(o, []).append((sd, k))
        if pending:
            n = sum(map(len, pending.values()))
            with Progress(self.log, f"encoding augmented views ({len(keys) - n} cached)", n, "views") as prog:
                done, batch, bkeys, saved = 0, [], [], time.perf_counter()
                for o, todo in pending.items():
                    try:
                        img = self.space.decode(paths[o])
                    except Exception:  # noqa: BLE001 - a photo that does not decode has no views
                        continue
                    pkey = image_key(paths[o])
                    for sd, k in todo:
                        batch.append(self.space.preprocess(augment(img, view_rng(pkey, sd, aug), aug)))
                        bkeys.append(k)
                    if len(batch) >= batch_size:
                        self._views.add(bkeys, self.space.image_features(np.stack(batch))[0])
                        done += len(batch)
                        batch, bkeys = [], []
                        prog.update(done)
                        if time.perf_counter() - saved > _SAVE_EVERY:  # an interrupted run keeps its views
                            self._views.save()
                            saved = time.perf_counter()
                if batch:
                    self._views.add(bkeys, self.space.image_features(np.stack(batch))[0])
                    done += len(batch)
                prog.update(done)
                self._views.save()
        rows, found = self._views.get(keys)
        own = np.asarray(owners, np.int64)[found] if len(keys) else np.zeros(0, np.int64)
        return (rows if rows is not None else np.zeros((0, 0), np.float32)), own

    def texts(self, texts: Sequence[str], kind: str = "passage", batch_size: int = 32,
              chunk: int = 256) -> np.ndarray:
        """e5 vectors [n, 384] (unit length) for texts, as passages or as queries."""
        keys = [text_key(t, kind) for t in texts]
        _, found = self._txt.get(keys)
        todo = sorted({k: t for k, t, f in zip(keys, texts, found) if not f}.items())
        if todo:
            with Progress(self.log, f"encoding {kind} texts ({len(set(keys)) - len(todo)} cached)", len(todo),
                          "texts") as prog:
                saved = time.perf_counter()
                for s in range(0, len(todo), chunk):
                    part = todo[s:s + chunk]
                    vecs = self.space.encode_text([t for _, t in part], kind=kind, batch_size=batch_size)
                    self._txt.add([k for k, _ in part], vecs)
                    prog.update(s + len(part))
                    if time.perf_counter() - saved > _SAVE_EVERY:  # an interrupted run keeps its texts
                        self._txt.save()
                        saved = time.perf_counter()
                self._txt.save()
        rows, found = self._txt.get(keys)
        assert found.all()
        return rows
