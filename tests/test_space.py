"""The one space: photos reach the same vector through ingest and through a query; identity; heads registry.

The parity tests run the real image encoder (skipped until `cmsearch models build` has run): the
ingest path is the pipeline's own image job (fetch, decode, preprocess) followed by
``embed_products``; the query path is ``query_builder.query_vectors.encode`` on the photo's bytes.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from models.heads_registry import HeadsNotFound, register_heads, resolve_heads
from models.identity import SpaceIdentity, mismatch_message
from models.space import Space, SpaceError, fuse

HERE_SIZE = 320


def _scene(w: int = HERE_SIZE, h: int = 240) -> np.ndarray:
    """A picture with structure (so a rotation or a wrong background changes the feature)."""
    y, x = np.mgrid[0:h, 0:w]
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = (x * 255 // w).astype(np.uint8)
    arr[..., 1] = (y * 255 // h).astype(np.uint8)
    arr[..., 2] = ((x // 40 + y // 40) % 2 * 200).astype(np.uint8)
    arr[h // 4: h // 2, w // 5: w // 2] = (250, 30, 30)
    return arr


def _jpeg_exif6() -> bytes:
    """A sideways-stored JPEG whose EXIF says 'rotate 90° clockwise to view' (orientation 6)."""
    img = Image.fromarray(_scene()).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    return buf.getvalue()


def _rgba_png() -> bytes:
    arr = _scene()
    alpha = np.zeros(arr.shape[:2], np.uint8)
    alpha[40:200, 60:260] = 255                       # the product; the rest is transparent
    rgba = np.dstack([arr, alpha])
    rgba[alpha == 0, :3] = 0                          # transparent pixels hold black, as cut-outs often do
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def _palette_png() -> bytes:
    img = Image.fromarray(_scene()).quantize(colors=64)
    pal = np.asarray(img).copy()
    pal[:, :80] = 63                                  # a transparent strip
    out = Image.fromarray(pal, "P")
    out.putpalette(img.getpalette())
    buf = io.BytesIO()
    out.save(buf, "PNG", transparency=63)
    return buf.getvalue()


def _cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_scene()).convert("CMYK").save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _png16() -> bytes:
    gray = (_scene()[..., 0].astype(np.uint16) * 257)
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "PNG")                 # mode I;16, 16 bits per pixel
    return buf.getvalue()


def _huge_jpeg() -> bytes:
    img = Image.fromarray(_scene()).resize((6000, 4000), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


PHOTOS = {"exif-orientation-6.jpg": _jpeg_exif6, "rgba-transparent.png": _rgba_png,
          "palette-transparent.png": _palette_png, "cmyk.jpg": _cmyk_jpeg, "gray16.png": _png16,
          "6000x4000.jpg": _huge_jpeg}


@pytest.fixture(scope="module")
def space():
    try:
        sp = Space.load(strict=True)
        sp.open_all()
    except SpaceError as exc:
        pytest.skip(f"models not built (run `cmsearch models build`): {exc}")
    return sp


def _ingest_feature(space, tmp_path, name: str, data: bytes) -> np.ndarray:
    """The photo through ingest's own image job (fetch + decode + preprocess) and embed_products."""
    from plugin_ingest.ingestor import IngestOptions, Ingestor

    (tmp_path / name).write_bytes(data)
    cat = tmp_path / "c.jsonl"
    cat.write_text(json.dumps({"id": "p", "title": "t", "images": [name]}) + "\n", encoding="utf-8")
    ing = Ingestor(cat, IngestOptions(index="unused", dry_run=True, progress=False), encoders=space)
    res = ing._image_job(name)
    assert res.error is None, res.error
    return space.embed_products(["t"], [[res.pixels]]).features[0][0]


def _query_feature(space, name: str, data: bytes) -> np.ndarray:
    from query_builder import QueryImage, SearchRequest, encode

    out = encode(SearchRequest(images=(QueryImage(data, name),)), space)
    return np.asarray(out.vectors.image_feature, np.float32)


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_a_photo_gets_the_same_vector_through_ingest_and_through_a_query(space, tmp_path, name):
    data = PHOTOS[name]()
    a, b = _ingest_feature(space, tmp_path, name, data), _query_feature(space, name, data)
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cos >= 0.9999, f"{name}: cosine {cos:.6f}"


def test_transparency_is_white_and_exif_is_upright_for_query_photos(space):
    """What the old query decoder (open + convert('RGB')) got wrong: transparency seen on black."""
    rgba = Image.open(io.BytesIO(_rgba_png()))
    on_white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    on_white.alpha_composite(rgba.convert("RGBA"))
    buf = io.BytesIO()
    on_white.convert("RGB").save(buf, "PNG")
    white = _query_feature(space, "white.png", buf.getvalue())
    assert float(white @ _query_feature(space, "cut-out.png", _rgba_png())) > 0.9999
    old_way = io.BytesIO()
    rgba.convert("RGB").save(old_way, "PNG")                     # what decode_image used to hand over
    assert float(white @ _query_feature(space, "old.png", old_way.getvalue())) < 0.99
    upright = io.BytesIO()
    Image.fromarray(_scene()).save(upright, "JPEG", quality=92)
    assert float(_query_feature(space, "up.jpg", upright.getvalue()) @ _query_feature(space, "r.jpg", _jpeg_exif6())) > 0.99


def test_a_text_query_opens_only_the_text_encoder():
    try:
        sp = Space.load(strict=False)
    except SpaceError as exc:
        pytest.skip(str(exc))
    q = sp.embed_query(text="连衣裙")
    assert q.text is not None and q.image is None and sp.loaded() == ("text",)
    sp.embed_query(images=[_png16()])
    assert set(sp.loaded()) == {"text", "image"}


def test_an_undecodable_query_photo_is_a_clear_error_and_given_vectors_are_kept(space):
    from query_builder import QueryImage, QueryImageError, QueryVectors, SearchRequest, encode

    with pytest.raises(QueryImageError, match="upload.jpg could not be decoded"):
        encode(SearchRequest(images=(QueryImage(b"this is not a picture", "upload.jpg"),)), space)
    given = (1.0,) + (0.0,) * 383
    out = encode(SearchRequest(text="椅子", vectors=QueryVectors(text=given)), space)
    assert out.vectors.text == given


def test_several_query_photos_are_one_mean_vector(space):
    one, two = _cmyk_jpeg(), _png16()
    q = space.embed_query(images=[one, two])
    a, b = space.embed_query(images=[one]).image_feature, space.embed_query(images=[two]).image_feature
    mean = (a + b) / np.linalg.norm(a + b)
    assert np.allclose(q.image_feature, mean, atol=1e-5)


# --- pure parts: no models needed ---------------------------------------------------------------
def test_fuse_is_the_normalized_weighted_sum():
    v = fuse([[0.0, 2.0]], [[1.0, 0.0]], 0.5, 0.5)[0]
    assert np.allclose(v, [2 ** -0.5, 2 ** -0.5])
    assert np.allclose(fuse([[0.0, 0.0]], [[3.0, 4.0]], 0.5, 0.5)[0], [0.6, 0.8])   # no image: the text


def _ident(**kw) -> SpaceIdentity:
    base = dict(text_model="e5:int8", text_sha256="a" * 64, image_model="mnv2:fp32", image_sha256="b" * 64,
                heads=None, shared_dim=384, image_feature_dim=1280, shared_space_type="cosinesimil",
                image_space_type="cosinesimil", w_img=0.5, w_txt=0.5, passage="passage-1:title")
    return SpaceIdentity(**{**base, **kw})


def test_identity_roundtrips_through_meta_and_names_both_sides_when_it_differs():
    a, b = _ident(), _ident(heads="1234abcd")
    assert SpaceIdentity.from_meta(json.loads(json.dumps(a.to_meta()))) == a and a.id != b.id
    msg = mismatch_message("shop", a, b, "hint")
    assert a.id in msg and b.id in msg and "heads" in msg
    assert mismatch_message("shop", a, _ident(), "hint") is None
    assert "records no vector space" in mismatch_message("shop", None, b, "re-ingest with --recreate")
    assert SpaceIdentity.from_mapping({"properties": {}}) is None


def _fake_heads(d, seed: int):
    d.mkdir(parents=True)
    (d / "image_head.onnx").write_bytes(bytes([seed]) * 10)
    (d / "manifest.json").write_text(json.dumps({
        "format": "cmsearch-heads", "files": {"image_head.onnx": f"{seed:064x}"},
        "image_head": {"kind": "linear"}, "text_head": {"kind": "identity"}}))
    return d


def test_heads_are_registered_by_identity_and_found_from_the_index(tmp_path):
    models = tmp_path / "models"
    src = _fake_heads(tmp_path / "trained", 1)
    reg = register_heads(models, src)
    digest = reg.name
    assert (reg / "image_head.onnx").read_bytes() == (src / "image_head.onnx").read_bytes()
    assert resolve_heads(models, None, _ident(heads=digest)) == reg
    assert resolve_heads(models, None, _ident(heads=None)) is None           # index made without heads
    for none in ("none", "None", "NONE"):
        assert resolve_heads(models, none, _ident(heads=digest)) is None
    assert resolve_heads(models, str(src), None) == src
    with pytest.raises(HeadsNotFound, match="ffff"):
        resolve_heads(models, None, _ident(heads="ffff"))
    assert resolve_heads(models, None) is None                               # no <models>/heads manifest


def test_the_failure_policy_is_a_parameter(tmp_path):
    with pytest.raises(SpaceError, match="manifest"):
        Space.load(tmp_path, strict=False)                                   # no models at all: nothing to use
    try:
        strict_ok = Space.load(None, None, strict=True)
    except SpaceError as exc:
        pytest.skip(str(exc))
    with pytest.raises(SpaceError, match="no heads"):
        Space.load(strict_ok.models_dir, tmp_path / "missing", strict=True)
    lenient = Space.load(strict_ok.models_dir, tmp_path / "missing", strict=False)
    assert not lenient.has_heads and any("no heads" in p for p in lenient.problems)


@pytest.mark.parametrize("data, name", [(b"not a picture", "upload.jpg"), (b"not a picture", None),
                                        (b"\x89PNG\r\n\x1a\n" + b"0" * 50, None)])
def test_a_bad_query_photo_is_named_never_shown_as_a_python_object(space, data, name):
    """Issue 15 #9: PIL's own message names its file object (``<_io.BytesIO object at 0x…>``)."""
    from query_builder import QueryImage, QueryImageError, SearchRequest, encode

    with pytest.raises(QueryImageError) as info:
        encode(SearchRequest(images=(QueryImage(data, name),)), space)
    msg = str(info.value)
    assert msg.startswith(f"{name or 'query image'} could not be decoded"), msg
    assert "object at 0x" not in msg and "BytesIO" not in msg, msg
