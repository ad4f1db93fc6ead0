"""Tests for compact.data.images.load_image: conversions, orientation and every refusal."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compact.data.images import DEFAULT_MAX_PIXELS, load_image
from compact.errors import DataError


def _png_bytes(width: int, height: int, depth: int = 8, colour_type: int = 2, raw: bytes = b"") -> bytes:
    """A hand-made PNG: the header declares any size, the IDAT holds `raw` (may be far too short)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _save(image: Image.Image, path: Path, **kw: object) -> Path:
    image.save(path, **kw)
    return path


def _error(source: object, **kw: object) -> str:
    with pytest.raises(DataError) as info:
        load_image(source, **kw)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


def test_rgb_png_from_path_str_and_bytes(tmp_path: Path) -> None:
    array = np.zeros((3, 5, 3), dtype=np.uint8)
    array[1, 2] = (10, 200, 30)
    path = _save(Image.fromarray(array), tmp_path / "a.png")
    for source in (path, str(path), path.read_bytes()):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (5, 3)
        assert image.getpixel((2, 1)) == (10, 200, 30) and image.getpixel((0, 0)) == (0, 0, 0)


def test_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (40, 30), (200, 100, 50)), tmp_path / "a.jpg", quality=95)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (40, 30)
    assert all(abs(a - b) <= 3 for a, b in zip(image.getpixel((20, 15)), (200, 100, 50)))


def test_greyscale_bilevel_and_palette_become_rgb(tmp_path: Path) -> None:
    grey = load_image(_save(Image.new("L", (4, 4), 77), tmp_path / "l.png"))
    assert grey.mode == "RGB" and grey.getpixel((1, 1)) == (77, 77, 77)
    bilevel = load_image(_save(Image.new("1", (4, 4), 1), tmp_path / "one.png"))
    assert bilevel.mode == "RGB" and bilevel.getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 12, 34, 56] + [0] * 762)
    loaded = load_image(_save(palette, tmp_path / "p.png"))
    assert loaded.mode == "RGB" and loaded.getpixel((2, 2)) == (12, 34, 56)


def test_transparency_is_composited_over_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 255))
    image = load_image(_save(rgba, tmp_path / "rgba.png"))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((1, 0)) == (255, 0, 0)
    la = load_image(_save(Image.new("LA", (2, 2), (0, 0)), tmp_path / "la.png"))
    assert la.getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 1), 1)
    loaded = load_image(_save(palette, tmp_path / "pt.png", transparency=0))
    assert loaded.getpixel((0, 0)) == (255, 255, 255) and loaded.getpixel((1, 1)) == (0, 0, 255)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (4, 2), (0, 0, 255))
    image.putpixel((0, 0), (255, 0, 0))
    image.putpixel((0, 1), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turned 90 degrees clockwise
    loaded = load_image(_save(image, tmp_path / "rot.png", exif=exif.tobytes()))
    assert loaded.size == (2, 4)
    assert loaded.getpixel((0, 0)) == (255, 0, 0) and loaded.getpixel((1, 0)) == (255, 0, 0)
    assert loaded.getpixel((0, 3)) == (0, 0, 255)


def test_missing_directory_and_empty_inputs(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nope.jpg")
    assert "directory" in _error(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    message = _error(tmp_path / "empty.jpg")
    assert "zero-byte" in message and "empty.jpg" in message
    assert "empty" in _error(b"")


def test_random_bytes_and_named_source(tmp_path: Path) -> None:
    junk = os.urandom(256)
    message = _error(junk, name="shard-0.tar:0001.jpg")
    assert "shard-0.tar:0001.jpg" in message and "not a recognised image" in message
    (tmp_path / "junk.png").write_bytes(junk)
    assert "junk.png" in _error(tmp_path / "junk.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path: Path, fmt: str) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, fmt)
    message = _error(buffer.getvalue()[: len(buffer.getvalue()) // 2], name="half")
    assert "unreadable" in message and "truncated" in message


def test_cmyk_is_refused(tmp_path: Path) -> None:
    path = _save(Image.new("CMYK", (8, 8), (0, 50, 100, 0)), tmp_path / "cmyk.jpg")
    assert Image.open(path).mode == "CMYK"
    message = _error(path)
    assert "CMYK" in message and "RGB" in message and "cmyk.jpg" in message


def test_16bit_greyscale_png_is_refused(tmp_path: Path) -> None:
    array = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    path = _save(Image.fromarray(array), tmp_path / "deep.png")
    with Image.open(path) as reopened:
        assert reopened.mode.startswith("I;16")  # really 16-bit on disk
    message = _error(path)
    assert "16-bit" in message and "bit depth" in message and "8-bit RGB" in message


def test_16bit_rgb_png_is_refused(tmp_path: Path) -> None:
    row = b"\x00" + b"\xff\xff\x00\x00\x12\x34" * 2
    path = tmp_path / "rgb48.png"
    path.write_bytes(_png_bytes(2, 2, depth=16, colour_type=2, raw=row * 2))
    with Image.open(path) as reopened:
        assert reopened.mode == "RGB"  # PIL would silently reduce it to 8 bits
    assert "16-bit" in _error(path)


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_float_and_32bit_images_are_refused(tmp_path: Path, dtype: type) -> None:
    path = _save(Image.fromarray(np.ones((4, 4), dtype=dtype)), tmp_path / "deep.tif")
    with Image.open(path) as reopened:
        assert reopened.mode in ("F", "I")
    assert "bit depth" in _error(path)


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (100, 50), (1, 2, 3)), tmp_path / "small.png")
    assert load_image(path, max_pixels=5000).size == (100, 50)
    message = _error(path, max_pixels=4999)
    assert "max_pixels=4,999" in message and "5,000 pixels" in message and "small.png" in message


def test_real_oversized_headers_are_refused_without_decoding(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not escape either
        # 9000x8000 = 72M: above our default limit, below PIL's own.
        message = _error(_png_bytes(9000, 8000), name="big")
        assert "9000x8000" in message and "max_pixels" in message
        # 10000x10000 = 100M: PIL would warn; we refuse.
        assert "max_pixels" in _error(_png_bytes(10000, 10000), name="bigger")
        # 20000x20000 = 400M: PIL refuses at open; still our one-line DataError.
        path = tmp_path / "bomb.png"
        path.write_bytes(_png_bytes(20000, 20000))
        assert "max_pixels" in _error(path)
        assert "pixels" in _error(path, max_pixels=10**12)  # PIL's global limit still protects
    assert Image.MAX_IMAGE_PIXELS == before and DEFAULT_MAX_PIXELS == 64_000_000
