"""`models.images.load_image`: every odd file a catalog or a shopper can hand us becomes RGB, or a named error.

All fixtures are generated with PIL in a temp folder, so these tests need neither models nor data.
"""
from __future__ import annotations

import io
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, features

from models.images import ImageDecodeError, load_image

RED, BLUE, WHITE = (220, 20, 20), (20, 20, 220), (255, 255, 255)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _close(px, want, tol=12):
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(px, want))


# ----------------------------------------------------------------------- colour modes
def test_rgba_png_is_composited_on_white():
    img = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    img.paste(Image.new("RGBA", (10, 10), RED + (255,)), (0, 0))
    out = load_image(_save(img, "PNG"))
    assert out.mode == "RGB" and out.size == (20, 10)
    assert out.getpixel((2, 2)) == RED
    assert out.getpixel((15, 5)) == WHITE  # fully transparent -> white, not black


def test_half_transparent_pixels_blend_with_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    px = load_image(_save(img, "PNG")).getpixel((1, 1))
    assert _close(px, (127, 127, 127), tol=2)


def test_la_grayscale_with_alpha():
    img = Image.new("LA", (8, 8), (0, 0))
    img.paste(Image.new("LA", (4, 8), (50, 255)), (0, 0))
    out = load_image(_save(img, "PNG"))
    assert out.getpixel((1, 1)) == (50, 50, 50) and out.getpixel((6, 1)) == WHITE


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparent_index(fmt):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0] + list(BLUE) + [0] * (256 * 3 - 6))
    img.paste(1, (0, 0, 5, 10))
    data = _save(img, fmt, transparency=0)
    out = load_image(data)
    assert out.mode == "RGB"
    assert out.getpixel((2, 2)) == BLUE and out.getpixel((8, 8)) == WHITE


def test_palette_without_transparency_keeps_colours():
    img = Image.new("RGB", (16, 16), BLUE).convert("P", palette=Image.Palette.ADAPTIVE)
    assert load_image(_save(img, "PNG")).getpixel((3, 3)) == BLUE


@pytest.mark.parametrize("mode,fmt", [("L", "JPEG"), ("L", "PNG"), ("1", "PNG"), ("1", "BMP")])
def test_grayscale_and_bilevel(mode, fmt):
    img = Image.new(mode, (12, 12), 0)
    img.paste(255 if mode == "1" else 200, (6, 0, 12, 12))
    out = load_image(_save(img, fmt))
    assert out.mode == "RGB"
    assert out.getpixel((1, 1))[0] < 20 and out.getpixel((10, 5))[0] > 180
    assert len(set(out.getpixel((10, 5)))) == 1  # still grey


def test_cmyk_jpeg_becomes_rgb():
    img = Image.new("CMYK", (16, 16), (255, 0, 0, 0))  # pure cyan ink
    out = load_image(_save(img, "JPEG", quality=95))
    r, g, b = out.getpixel((8, 8))
    assert out.mode == "RGB" and r < 40 and g > 200 and b > 200


def test_sixteen_bit_grayscale_is_rescaled_not_clipped():
    ramp = np.linspace(0, 65535, 256, dtype=np.uint16).reshape(16, 16)
    img = Image.fromarray(ramp)  # mode I;16
    assert img.mode.startswith("I")
    out = np.asarray(load_image(_save(img, "PNG")))[..., 0]
    assert out.min() == 0 and out.max() == 255
    assert 100 < out[8, 0] < 160  # the middle of the ramp is mid-grey, not clipped white


def test_thirty_two_bit_int_and_float_tiffs():
    ints = Image.fromarray(np.linspace(0, 40000, 64, dtype=np.int32).reshape(8, 8), "I")
    out = np.asarray(load_image(_save(ints, "TIFF")))
    assert out[0, 0, 0] == 0 and 140 < out[-1, -1, 0] < 170  # 40000 / 65535 * 255 ~ 156
    floats = Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "F")
    out = np.asarray(load_image(_save(floats, "TIFF")))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (40, 20), RED)
    img.paste(Image.new("RGB", (20, 20), BLUE), (20, 0))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_image(_save(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.size == (20, 40)
    assert _close(out.getpixel((10, 5)), RED, 40) and _close(out.getpixel((10, 35)), BLUE, 40)


def test_broken_exif_does_not_lose_the_photo():
    data = _save(Image.new("RGB", (8, 8), RED), "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff")
    assert load_image(data).size == (8, 8)


@pytest.mark.skipif(not features.check("webp"), reason="this Pillow has no WebP support")
def test_webp_with_alpha():
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    out = load_image(_save(img, "WEBP", lossless=True))
    assert out.getpixel((5, 5)) == WHITE


def test_animated_gif_gives_the_first_frame():
    frames = [Image.new("RGB", (8, 8), c).convert("P") for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    assert load_image(buf.getvalue()).getpixel((4, 4)) == (255, 0, 0)


# ----------------------------------------------------------------------------- sizes
def test_tiny_image_loads():
    assert load_image(_save(Image.new("RGB", (1, 1), RED), "PNG")).size == (1, 1)


def test_huge_jpeg_is_reduced_while_decoding(tmp_path):
    """3000x2000 = 6 Mpx with a 1 Mpx budget: fine as a JPEG (libjpeg decodes at 1/8), refused as PNG."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (25, 38, 3), dtype=np.uint8)).resize((3000, 2000))
    jpg = tmp_path / "big.jpg"
    img.save(jpg, quality=80)
    out = load_image(jpg, max_pixels=1_000_000, reduce_to=200)
    assert out.size == (300, 200)
    with pytest.raises(ImageDecodeError, match="decompression-bomb"):
        load_image(_save(img, "PNG", compress_level=1), max_pixels=1_000_000, reduce_to=200)
    # And the default keeps a bounded but useful resolution.
    assert min(load_image(jpg).size) == 1024


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [30_000, 100_000])
def test_decompression_bomb_header_is_refused_before_decoding(side):
    with pytest.raises(ImageDecodeError) as info:
        load_image(_png_header_only(side, side), name="bomb.png")
    assert "bomb" in info.value.reason and info.value.item == "bomb.png"


def test_too_many_bytes(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(_save(Image.new("RGB", (64, 64)), "PNG"))
    with pytest.raises(ImageDecodeError, match="bytes"):
        load_image(p, max_bytes=10)


# ------------------------------------------------------------------------ bad input
def test_truncated_jpeg_raises_a_named_error(tmp_path):
    rng = np.random.default_rng(1)
    data = _save(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError) as info:
        load_image(p)
    assert info.value.item == str(p) and "truncated" in info.value.reason
    assert str(p) in str(info.value)


def test_truncated_png():
    data = _save(Image.new("RGB", (64, 64), RED), "PNG")
    with pytest.raises(ImageDecodeError):
        load_image(data[:60], name="sku-1/front")


@pytest.mark.parametrize("data,reason", [(b"not an image at all", "not a recognised image format"),
                                          (b"", "empty")])
def test_garbage_and_empty_bytes(data, reason):
    with pytest.raises(ImageDecodeError, match=reason) as info:
        load_image(data, name="sku-42/front")
    assert info.value.item == "sku-42/front" and "sku-42/front" in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageDecodeError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageDecodeError, match="directory"):
        load_image(tmp_path)


def test_unsupported_source_type():
    with pytest.raises(ImageDecodeError, match="unsupported image source"):
        load_image(12345)


def test_error_is_a_value_error_and_pickles():
    err = ImageDecodeError("a.jpg", "truncated")
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.item, back.reason, str(back)) == ("a.jpg", "truncated", str(err))


# --------------------------------------------------------------------------- sources
def test_decoded_by_content_not_by_name(tmp_path):
    p = tmp_path / "really_a_png.jpg"
    p.write_bytes(_save(Image.new("RGBA", (6, 6), (0, 0, 0, 0)), "PNG"))
    assert load_image(p).getpixel((3, 3)) == WHITE


def test_path_bytes_bytearray_and_pil_agree(tmp_path):
    img = Image.new("RGBA", (9, 7), RED + (255,))
    img.putpixel((0, 0), (0, 0, 0, 0))
    data = _save(img, "PNG")
    p = tmp_path / "a.png"
    p.write_bytes(data)
    outs = [load_image(s) for s in (p, str(p), data, bytearray(data), memoryview(data), img)]
    arrays = [np.asarray(o) for o in outs]
    assert all(np.array_equal(arrays[0], a) for a in arrays[1:])


def test_pil_input_is_not_modified_or_returned():
    img = Image.new("RGB", (5, 5), RED)
    out = load_image(img)
    assert out is not img
    out.putpixel((0, 0), BLUE)
    assert img.getpixel((0, 0)) == RED
