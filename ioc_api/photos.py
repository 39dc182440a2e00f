"""Photos of citizens' reports, kept as a city must keep them.

A photo is accepted by what its bytes are (JPEG, PNG or WebP, read by Pillow), not by its name or
declared type, up to ``IOC_PHOTO_MAX_BYTES`` and ``MAX_PIXELS``. Before anything else its GPS
position is read, for a report that gave no place. Then it is turned upright (EXIF orientation)
and re-encoded as a JPEG from its pixels alone, so that no metadata survives (EXIF with its GPS
and camera serial, XMP, comments, colour profiles), with a thumbnail beside it. Each unit has a
storage quota (``IOC_PHOTO_QUOTA_MB``). Files are written under a fresh name and only then
recorded; a caller that fails afterwards removes them (``PhotoStore.remove``), so nothing is half
stored.
"""

from __future__ import annotations

import io
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
MAX_PIXELS = 40_000_000  # a 40-megapixel photo; more is a decompression bomb, not a report
LONG_EDGE = 2048
THUMB_EDGE = 320
_GPS_IFD = 0x8825


class PhotoRefused(ValueError):
    """Why a photo cannot be taken: said to the person who sent it."""


@dataclass(frozen=True, slots=True)
class Photo:
    """A photo ready to store: its clean JPEG and thumbnail, and the place it was taken, if it said."""

    jpeg: bytes
    thumbnail: bytes
    width: int
    height: int
    lat: float | None
    lon: float | None


def _degrees(values, ref: str) -> float:
    d, m, s = (float(v) for v in values)
    sign = -1 if ref in ("S", "W") else 1
    return sign * (d + m / 60 + s / 3600)


def gps_of(image: Image.Image) -> tuple[float, float] | None:
    """The position in the photo's EXIF, if any and valid."""
    try:
        gps = image.getexif().get_ifd(_GPS_IFD)
        lat = _degrees(gps[2], gps.get(1, "N"))
        lon = _degrees(gps[4], gps.get(3, "E"))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None
    return lat, lon


def clean(data: bytes, max_bytes: int) -> Photo:
    """Check, read and re-encode one photo; ``PhotoRefused`` says why not."""
    if len(data) > max_bytes:
        raise PhotoRefused(f"a photo may be {max_bytes // 1_000_000} MB at most; this one is {len(data):,} bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(ACCEPTED))
            if image.width * image.height > MAX_PIXELS:
                raise PhotoRefused(f"a photo may have {MAX_PIXELS:,} pixels at most")
            image.load()
        except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise PhotoRefused("not a JPEG, PNG or WebP photo") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise PhotoRefused(f"the photo cannot be read: {exc}") from exc
    place = gps_of(image)
    upright = ImageOps.exif_transpose(image).convert("RGB")
    upright.thumbnail((LONG_EDGE, LONG_EDGE))
    pixels = Image.new("RGB", upright.size)  # pixels only: nothing of the file comes along
    pixels.paste(upright)
    thumb = pixels.copy()
    thumb.thumbnail((THUMB_EDGE, THUMB_EDGE))
    return Photo(_jpeg(pixels, 85), _jpeg(thumb, 75), pixels.width, pixels.height, *(place or (None, None)))


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


class PhotoStore:
    """Files under one directory: ``{name}.jpg`` and ``{name}.thumb.jpg``."""

    def __init__(self, root: Path):
        self.root = root

    def save(self, photo: Photo) -> str:
        name = secrets.token_urlsafe(12)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"{name}.jpg").write_bytes(photo.jpeg)
        (self.root / f"{name}.thumb.jpg").write_bytes(photo.thumbnail)
        return name

    def path(self, name: str, thumbnail: bool = False) -> Path:
        return self.root / f"{name}{'.thumb' if thumbnail else ''}.jpg"

    def remove(self, names: list[str]) -> None:
        for name in names:
            for thumbnail in (False, True):
                self.path(name, thumbnail).unlink(missing_ok=True)
