"""Load one image from disk or memory as a validated, fully-decoded 8-bit RGB `PIL.Image`.

Every failure is a `DataError` with a one-line message that names the image and the fix.

Conversions:
- 8-bit greyscale ("L"), bilevel ("1"), palette ("P") and YCbCr images are converted to RGB.
- Images with transparency ("RGBA", "LA", "PA", palette with a transparent colour) are composited over a
  WHITE background, so transparent areas become white rather than whatever colour the hidden pixels had.
- EXIF orientation is applied (`ImageOps.exif_transpose`); a malformed EXIF block is logged and ignored.
- Animated images (GIF, WebP) yield their first frame.
- ICC profiles are ignored (no colour management).

Refused (with the fix in the message): CMYK images, more than 8 bits per channel ("I;16", "I", "F", 16-bit
PNG/TIFF), other colour spaces (LAB, HSV), and images whose header declares more than `max_pixels` pixels.
The pixel check reads the header only, before anything is decoded. PIL's own process-wide limit
(`Image.MAX_IMAGE_PIXELS`) is left untouched; it still refuses images above twice its value, so raising
`max_pixels` beyond that also needs that global raised by the caller.
"""

from __future__ import annotations

import io
import os
import logging
import re
import warnings
from pathlib import Path
from typing import IO, Union

from PIL import Image, ImageOps, UnidentifiedImageError

from compact.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 64_000_000

# Modes that convert losslessly (up to alpha) to 8-bit RGB.
_RGB_CONVERTIBLE = {"1", "L", "P", "RGB", "RGBX", "YCbCr"}
_WITH_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}
_HIGH_DEPTH_MODES = {"I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;32", "I;32B", "I;32L"}
# Raw decoder modes such as "RGB;16B" / "I;16B" / "RGBA;16L" mean more than 8 bits per channel.
_HIGH_DEPTH_RAW = re.compile(r";(16|32)([BLNS]|$)")
_HIGH_DEPTH_FORMATS = {"PNG", "TIFF"}  # in BMP, "BGR;16" means 16 bits per PIXEL, which is fine
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, MemoryError)

ImageInput = Union[str, Path, bytes]


def max_image_pixels() -> int:
    """The pixel limit: $COMPACT_MAX_IMAGE_PIXELS when set (to accept huge images you trust), else the default."""
    raw = os.environ.get("COMPACT_MAX_IMAGE_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    if not raw.isdigit() or int(raw) <= 0:
        raise DataError(f"COMPACT_MAX_IMAGE_PIXELS={raw!r} must be a positive integer number of pixels")
    return int(raw)


def load_image(source: ImageInput, *, name: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """Return `source` (a path or encoded bytes) as a fully-decoded RGB image, or raise DataError."""
    max_pixels = max_pixels or max_image_pixels()
    label = _one_line(name if name is not None else _default_name(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise DataError(f"image {label} is empty (zero-byte data); re-export or re-download it")
        return _decode(io.BytesIO(data), label, max_pixels)
    path = Path(source)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "not found"
        raise DataError(f"image {label} {what}; check the path")
    if path.stat().st_size == 0:
        raise DataError(f"image {label} is a zero-byte (empty) file; re-export or re-download it")
    try:
        with path.open("rb") as handle:
            return _decode(handle, label, max_pixels)
    except PermissionError as exc:
        raise DataError(f"image {label} cannot be read ({exc.strerror}); fix its file permissions") from exc


def _decode(handle: IO[bytes], label: str, max_pixels: int) -> Image.Image:
    """Open, validate the header, decode and convert to RGB."""
    with warnings.catch_warnings():
        # Our own `max_pixels` check below is authoritative; PIL's warning would only duplicate it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(handle)
        except Image.DecompressionBombError as exc:
            raise _bomb_error(label, None, max_pixels, exc) from exc
        except UnidentifiedImageError as exc:
            raise DataError(f"image {label} is not a recognised image format; check the file or re-encode it "
                            "as JPEG or PNG") from exc
        except _DECODE_ERRORS as exc:
            raise _unreadable(label, exc) from exc
        with image:
            _check_header(image, label, max_pixels)
            try:
                image.load()
            except Image.DecompressionBombError as exc:
                raise _bomb_error(label, image.size, max_pixels, exc) from exc
            except _DECODE_ERRORS as exc:
                raise _unreadable(label, exc) from exc
            return _to_rgb(_orient(image, label))


def _check_header(image: Image.Image, label: str, max_pixels: int) -> None:
    """Refuse oversized, CMYK and high-bit-depth images before decoding any pixels."""
    width, height = image.size
    if width <= 0 or height <= 0:
        raise DataError(f"image {label} declares an empty size {width}x{height}; re-export it")
    if width * height > max_pixels:
        raise _bomb_error(label, image.size, max_pixels, None)
    if image.mode == "CMYK":
        raise DataError(f"image {label} is CMYK, which is not supported; convert it to RGB (sRGB) first, "
                        "e.g. with ImageMagick: convert in.jpg -colorspace sRGB out.jpg")
    if image.mode in _HIGH_DEPTH_MODES or _has_high_depth_tile(image):
        raise DataError(f"image {label} has an unsupported bit depth (16-bit or 32-bit integer/float, mode "
                        f"{image.mode!r}); convert it to 8-bit RGB first")
    if image.mode not in _RGB_CONVERTIBLE and image.mode not in _WITH_ALPHA:
        raise DataError(f"image {label} uses the unsupported colour mode {image.mode!r}; convert it to 8-bit RGB")


def _has_high_depth_tile(image: Image.Image) -> bool:
    """True when a PNG/TIFF stores more than 8 bits per channel even though PIL reports an 8-bit mode."""
    if image.format not in _HIGH_DEPTH_FORMATS:
        return False
    for tile in getattr(image, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and _HIGH_DEPTH_RAW.search(rawmode):
            return True
    return False


def _orient(image: Image.Image, label: str) -> Image.Image:
    """Apply the EXIF orientation tag; log and ignore a malformed EXIF block."""
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception as exc:  # noqa: BLE001 - EXIF parsing raises many types; the pixels are still fine
        log.warning("image %s: ignoring unreadable EXIF orientation (%s)", label, _one_line(str(exc)))
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded 8-bit image to a new RGB image, compositing transparency over white."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _WITH_ALPHA:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # always a copy, detached from the file


def _bomb_error(label: str, size: tuple[int, int] | None, max_pixels: int, exc: Exception | None) -> DataError:
    """The one-line error for an image with too many pixels."""
    if size is not None:
        found = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels"
    else:
        found = f"too many pixels ({_one_line(str(exc))})"
    return DataError(f"image {label} is {found}, above the limit of max_pixels={max_pixels:,} (possible "
                     "decompression bomb); downscale the image, or raise COMPACT_MAX_IMAGE_PIXELS if you trust it")


def _unreadable(label: str, exc: BaseException) -> DataError:
    """The one-line error for a corrupt, truncated or undecodable image."""
    reason = _one_line(str(exc)) or type(exc).__name__
    return DataError(f"image {label} is unreadable, truncated or not an image ({reason}); re-export or "
                     "re-download it")


def _default_name(source: ImageInput) -> str:
    """A label for messages when the caller gave none."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes in memory>"
    return str(source)


def _one_line(text: str) -> str:
    """Collapse whitespace so that messages stay on one line."""
    return " ".join(text.split())
