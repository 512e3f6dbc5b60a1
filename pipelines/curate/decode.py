"""Safe decoding of one input file's bytes into 8-bit sRGB pixels, by a stated rule, or a ``Rejection``.

``decode_image(data, name, settings)`` never raises for bad input: every way a file can fail to be a usable picture
ends as ``Rejection(reason, detail)``. Exceptions are left for bugs (and for a process that switched on
``ImageFile.LOAD_TRUNCATED_IMAGES``, which would silently turn truncated files into grey-padded pictures).

Outcome table (``notes`` are appended in the order the steps run):

===============================================  ======================================================================
input                                            outcome
===============================================  ======================================================================
zero bytes                                       reject ``empty_file``
no accepted format recognises the header         reject ``not_an_image`` (accepted: ``settings.formats``, default
                                                 JPEG (incl. MPO), PNG (incl. APNG), WEBP, GIF, TIFF, BMP, AVIF; the
                                                 rest of Pillow's readers (EPS, PSD, TGA ...) are never tried)
header declares width or height 0                reject ``not_an_image``
width*height > ``max_pixels`` (header only)      reject ``decompression_bomb``, before any pixel is decoded; also
                                                 Pillow's own guard (see "Pillow's bomb guard" below)
header or pixel data cut / corrupt               reject ``truncated``, detail = the decoder's message (missing JPEG
                                                 EOI counts: Pillow does not fake one unless LOAD_TRUNCATED_IMAGES)
PNG whose zlib stream *ends cleanly* too early   NOT detected: Pillow 13 zero-fills the missing rows without an error
                                                 (libpng says "Not enough image data"); checking would cost a second
                                                 inflate of every PNG (~+35 %). Entropy-coded garbage inside a JPEG
                                                 likewise decodes as garbage.
animated GIF / APNG / WebP / AVIF                reject ``animated``; with ``animated="first_frame"``: frame 0, note
                                                 ``first_frame``
multi-page TIFF                                  page 0, note ``first_frame`` (pages are not animation)
MPO (camera JPEG with MP index)                  the primary image, no note; ``format`` stays ``MPO``
EXIF orientation 2..8                            transposed as ``ImageOps.exif_transpose`` would, note ``exif_rotate``;
                                                 an EXIF block Pillow cannot parse: orientation 1, note
                                                 ``exif_invalid``. TIFF: Pillow 13's reader transposes while loading
                                                 (and reports the rotated size); we only add the note
mode I;16 / I;16B / I;16L / I;16N                v8 = round(v / 257) = (v + 128) // 257 (Pillow's convert clips at
                                                 255), note ``sixteen_bit_to_8``; mode I (int32) is clipped to
                                                 [0, 65535] first
16-bit RGB / RGBA / LA PNG or TIFF               Pillow 13 already decodes them to 8 bits by keeping the high byte
                                                 (v >> 8, not round(v/257): at most 1 level lower); kept as is, note
                                                 ``sixteen_bit_to_8`` (a 16-bit grey+alpha PNG arrives as RGBA)
mode F (float) and any other mode (LAB, HSV)     reject ``unsupported_mode`` (no agreed scale for float data)
mode 1                                           0/255 grey, then as L
P / PA (palette, with or without tRNS)           expanded to RGBA, note ``palette_to_rgb``, then as RGBA
RGBA / LA / RGBa / La                            alpha min == 255: alpha dropped, no note; else ``alpha="white"``:
                                                 c' = (c*a + 255*(255-a) + 127) // 255, note ``alpha_over_white``;
                                                 ``alpha="reject"``: reject ``has_alpha``
CMYK                                             with a usable non-sRGB ICC profile: via the profile (below); else
                                                 Pillow's plain convert (R = 255 - min(255, C + K) ...); note
                                                 ``cmyk_to_rgb`` either way. Adobe's inverted CMYK JPEGs are
                                                 un-inverted by Pillow's JPEG reader.
L (and everything that became L)                 R = G = B = L (or via a grey ICC profile), note ``gray_to_rgb``
RGBX / YCbCr                                     Pillow's convert to RGB, no note
embedded ICC profile                             profileToProfile to ImageCms.createProfile("sRGB"), output RGB,
                                                 perceptual intent (Pillow's default), note ``icc_to_srgb``; skipped
                                                 when the profile's description starts with "sRGB" (any case, after
                                                 stripping) since those are sRGB; a profile lcms cannot read or that
                                                 does not fit the pixels (an RGB profile on a grey JPEG): plain
                                                 conversion, note ``icc_invalid``. Only the ICC profile is honoured:
                                                 PNG gAMA/cHRM/sRGB chunks and the EXIF ColorSpace tag are ignored.
``name``'s extension disagrees with the content  note ``ext_mismatch`` (.jpg/.jpeg=JPEG or MPO, .png=PNG, .webp=WEBP,
                                                 .tif/.tiff=TIFF, .gif=GIF, .bmp=BMP, .avif=AVIF); an unknown or
                                                 missing extension says nothing; the content always decides
===============================================  ======================================================================

Steps run in this order: open (header) -> size guard -> frame rule -> load -> EXIF orientation -> mode to L/RGB/CMYK
(16-bit, palette, alpha) -> ICC or plain conversion to RGB -> array and hash. Compositing happens in the source colour
space, before the ICC step; white is white in every RGB space.

Pillow's bomb guard: ``Image.open`` compares width*height with the process-global ``Image.MAX_IMAGE_PIXELS``
(89,478,485 by default): above twice that it raises ``DecompressionBombError`` (-> ``decompression_bomb``), between
1x and 2x it emits ``DecompressionBombWarning``. This module never changes the global (it would leak into every other
user of Pillow in the process and race between threads) nor the warning filters (``warnings.catch_warnings`` is not
thread-safe before Python 3.14). So with the default ``max_pixels`` a 90 to 134 MPx picture decodes and the warning is
printed once per process; where the process turns warnings into errors it becomes ``decompression_bomb``. The
effective limit is min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS).

Output: ``Decoded.rgb`` is HxWx3 uint8, C-contiguous and read-only (it wraps the bytes Pillow hands out, one copy
from the decoder's buffer; a read-only array also keeps ``pixel_sha256`` true): copy before writing to it.
``pixel_sha256`` = sha256(f"{h}x{w}x3:".encode() + rgb.tobytes()), computed without building that concatenation.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from schemas.records import Rejection

DECODE_VERSION = "decode/1"

# Plugins Pillow may try on our bytes. MPO is not listed: Pillow's JPEG reader returns an MpoImageFile itself, and
# naming "MPO" in Image.open(formats=...) raises KeyError (no opener is registered under that name).
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "AVIF")
# Containers where several frames mean animation; other multi-frame containers (TIFF pages, MPO) are not animated.
ANIMATED_FORMATS = frozenset({"GIF", "PNG", "WEBP", "AVIF"})

NOTES = (
    "first_frame",
    "exif_rotate",
    "exif_invalid",
    "sixteen_bit_to_8",
    "palette_to_rgb",
    "alpha_over_white",
    "icc_to_srgb",
    "icc_invalid",
    "cmyk_to_rgb",
    "gray_to_rgb",
    "ext_mismatch",
)
REASONS = (
    "empty_file",
    "not_an_image",
    "truncated",
    "decompression_bomb",
    "animated",
    "unsupported_mode",
    "has_alpha",
)

_EXT_FORMAT = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".avif": "AVIF",
}
_FAMILY = {"MPO": "JPEG"}  # a JPEG with a multi-picture index is still a .jpg

_ORIENTATION_TAG = 0x0112
# The same table ImageOps.exif_transpose uses. We transpose ourselves because exif_transpose also re-serialises the
# EXIF block of the result, which can raise on malformed EXIF, and that metadata is thrown away here anyway.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_GRAY16_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_SIXTEEN_RAW = re.compile(r";16[BLN]?$")  # PNG/TIFF rawmodes RGB;16B, RGBA;16N, LA;16B ... (BMP's BGR;16 is 5-6-5)

# What Pillow's readers raise on corrupt data (found by fuzzing truncations and byte flips of every accepted format:
# OSError incl. "image file is truncated", SyntaxError from PNG chunk checks and AVIF, IndexError and struct.error
# from header parsers, RuntimeError from libavif). Warning is here for processes that turn warnings into errors:
# then a Pillow warning ("Corrupt EXIF data", "Tag data larger than file") aborts the call it came from.
_PIL_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    RuntimeError,
    Warning,
)
_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)  # listed before _PIL_ERRORS wherever caught


@dataclass(slots=True)
class DecodeSettings:
    """The decode rule's knobs.

    ``max_pixels`` defaults to 128 MiPx (16384x8192): it admits 8K photos (8192x5464 = 44.8 MPx), 6K, 100 MPx
    medium format (11648x8736) and 16K x 8K panoramas, and bounds one decoded picture at 384 MiB of RGB8. Peak
    memory at the limit is about 0.9 GiB for a plain JPEG (Pillow holds 4 bytes per pixel, plus the output array)
    and about 2 GiB on the rotate, ICC or alpha paths (one more Pillow image each); an 8K photo needs a third.
    """

    max_pixels: int = 16384 * 16384 // 2
    animated: Literal["reject", "first_frame"] = "reject"
    alpha: Literal["white", "reject"] = "white"
    formats: tuple[str, ...] = ACCEPTED_FORMATS

    def __post_init__(self) -> None:
        # A typo here would otherwise silently pick the other branch of the rule.
        if self.animated not in ("reject", "first_frame"):
            raise ValueError(f"animated must be 'reject' or 'first_frame', not {self.animated!r}")
        if self.alpha not in ("white", "reject"):
            raise ValueError(f"alpha must be 'white' or 'reject', not {self.alpha!r}")
        if self.max_pixels <= 0:
            raise ValueError(f"max_pixels must be positive, not {self.max_pixels}")
        self.formats = tuple(self.formats)  # YAML and callers hand in lists
        Image.init()  # registers every plugin, so Image.OPEN lists every format Pillow can open
        unknown = [f for f in self.formats if f not in Image.OPEN]
        if unknown:
            # Image.open(formats=...) would raise KeyError on each decode; MPO files come from the JPEG reader.
            raise ValueError(f"formats {unknown} are not Pillow opener names (MPO is read by JPEG)")


@dataclass(slots=True)
class Decoded:
    """A decoded, normalised picture. ``rgb`` is read-only; ``notes`` come from ``NOTES``."""

    rgb: np.ndarray  # HxWx3 uint8, C-contiguous, sRGB
    format: str  # PIL format name (JPEG, MPO, PNG, WEBP, GIF, TIFF, BMP, AVIF)
    mode_in: str  # PIL mode before normalisation
    notes: list[str]  # normalisation steps applied, in order, from NOTES
    quantization: dict[int, list[int]] | None  # JPEG quantisation tables as PIL exposes them (im.quantization)
    pixel_sha256: str  # pixel_sha256(rgb)


def pixel_sha256(rgb: np.ndarray) -> str:
    """sha256 over ``f"{h}x{w}x3:"`` + the C-order bytes of an HxWx3 uint8 array (hashed in place, no copy)."""
    h, w = rgb.shape[:2]
    digest = hashlib.sha256(f"{h}x{w}x3:".encode())
    digest.update(np.ascontiguousarray(rgb, dtype=np.uint8).data)
    return digest.hexdigest()


def decode_image(data: bytes, name: str = "", settings: DecodeSettings | None = None) -> Decoded | Rejection:
    """Decode one file's bytes to 8-bit sRGB by the rule in the module docstring; ``name`` only feeds ext_mismatch."""
    settings = settings or DecodeSettings()
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone in this process switched it on; truncated files would then decode as grey-padded pictures.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; decode_image cannot detect truncated files")
    if not data:
        return Rejection("empty_file", "0 bytes")
    opened = _open(data, settings.formats)
    if isinstance(opened, Rejection):
        return opened
    with opened as im:
        return _decode_opened(im, name, settings)


def _open(data: bytes, formats: tuple[str, ...]) -> ImageFile.ImageFile | Rejection:
    """Parse the header only (Image.open decodes no pixels); map every failure to a reason."""
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except _BOMB as e:
        return Rejection("decompression_bomb", _message(e))
    except UnidentifiedImageError:
        # Pillow's own message names the BytesIO object's address; the first bytes are deterministic and more useful.
        return Rejection("not_an_image", f"not {'/'.join(formats)}; starts {data[:8]!r}")
    except _PIL_ERRORS as e:
        # A reader accepted the signature, then failed on the rest of the header.
        return Rejection("truncated", _message(e))


def _decode_opened(im: ImageFile.ImageFile, name: str, settings: DecodeSettings) -> Decoded | Rejection:
    fmt, mode_in = im.format or "", im.mode
    w, h = im.size
    if w <= 0 or h <= 0:
        return Rejection("not_an_image", f"header declares an empty {w}x{h} image")
    if w * h > settings.max_pixels:
        return Rejection("decompression_bomb", f"{w}x{h} = {w * h} pixels > max_pixels {settings.max_pixels}")
    notes = _frame_rule(im, fmt, settings)
    if isinstance(notes, Rejection):
        return notes
    rawmode = _rawmode(im)  # read before load(), which empties im.tile
    quantization = getattr(im, "quantization", None)
    # Pillow 13's TIFF reader applies the orientation tag itself inside load() and then deletes the tag.
    tiff_orientation = getattr(im, "tag_v2", {}).get(_ORIENTATION_TAG, 1) if fmt == "TIFF" else 1
    try:
        im.load()
    except _BOMB as e:  # TIFF checks its tile size again in load(); only reachable when max_pixels > Pillow's limit
        return Rejection("decompression_bomb", _message(e))
    except _PIL_ERRORS as e:
        return Rejection("truncated", _message(e))
    icc = im.info.get("icc_profile")  # read after load: some readers fill info while decoding

    img: Image.Image = im
    # Read after load: a PNG's eXIf chunk may follow the pixel data (and PNG's getexif() would load to find it).
    orientation, exif_notes = _orientation(im)
    notes += exif_notes
    if orientation in _TRANSPOSE:
        img = img.transpose(_TRANSPOSE[orientation])
        notes.append("exif_rotate")
    elif tiff_orientation in _TRANSPOSE:
        notes.append("exif_rotate")  # the tag was there before load() and is gone: the reader transposed
    base = _to_base_mode(img, fmt, rawmode, settings, notes)
    if isinstance(base, Rejection):
        return base
    rgb = _rgb_array(_to_srgb(base, icc, notes))
    # Every branch above ends in mode RGB; a different shape here is a bug in this module, not bad input.
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, (rgb.dtype, rgb.shape)

    expected = _EXT_FORMAT.get(os.path.splitext(name)[1].lower())
    if expected and expected != _FAMILY.get(fmt, fmt):
        notes.append("ext_mismatch")
    return Decoded(
        rgb=rgb,
        format=fmt,
        mode_in=mode_in,
        notes=notes,
        quantization={int(k): [int(q) for q in v] for k, v in quantization.items()} if quantization else None,
        pixel_sha256=pixel_sha256(rgb),
    )


def _message(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _frame_rule(im: ImageFile.ImageFile, fmt: str, settings: DecodeSettings) -> list[str] | Rejection:
    """Frame 0 is what gets decoded; decide whether that is allowed and worth a note."""
    try:
        # is_animated looks for a second frame only (GIF: skips frame 0's data); n_frames would scan them all.
        multi = bool(getattr(im, "is_animated", False))
    except _PIL_ERRORS as e:
        return Rejection("truncated", _message(e))
    if not multi or fmt == "MPO":
        return []  # MPO's extra frames are previews or the other eye; frame 0 is the photo
    if fmt in ANIMATED_FORMATS and settings.animated == "reject":
        return Rejection("animated", f"animated {fmt} (more than one frame)")
    return ["first_frame"]


def _rawmode(im: ImageFile.ImageFile) -> str:
    """The decoder's raw mode of the first tile ("RGB;16B" for a 48-bit PNG), or "" when not told."""
    if not im.tile:
        return ""
    args = im.tile[0].args
    if isinstance(args, tuple):  # TIFF: (rawmode, ...)
        args = args[0] if args else ""
    return args if isinstance(args, str) else ""


def _orientation(im: Image.Image) -> tuple[int, list[str]]:
    """EXIF orientation (1 when absent or not 2..8) and the note for an EXIF block Pillow cannot parse."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except (*_PIL_ERRORS, KeyError, TypeError):  # Pillow's EXIF parser fails in many ways on malformed blocks
        return 1, ["exif_invalid"]
    return (value if isinstance(value, int) and value in _TRANSPOSE else 1), []


def _to_base_mode(
    img: Image.Image, fmt: str, rawmode: str, settings: DecodeSettings, notes: list[str]
) -> Image.Image | Rejection:
    """Bring any accepted mode to 8-bit L, RGB or CMYK: the modes an ICC profile can describe."""
    mode = img.mode
    if mode in _GRAY16_MODES:
        notes.append("sixteen_bit_to_8")
        return _gray16_to_l(img)
    if fmt in ("PNG", "TIFF") and _SIXTEEN_RAW.search(rawmode):
        notes.append("sixteen_bit_to_8")  # Pillow's reader already kept the high byte; nothing left to do here
    if mode in ("L", "RGB", "CMYK"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("RGBX", "YCbCr"):
        return img.convert("RGB")
    if mode in ("P", "PA"):
        # Always via RGBA: the tRNS chunk or an RGBA palette may hide transparency, and the alpha check decides.
        notes.append("palette_to_rgb")
        return _alpha(img.convert("RGBA"), settings, notes)
    if mode in ("RGBA", "RGBa", "LA", "La"):
        return _alpha(img.convert(mode.upper()) if mode in ("RGBa", "La") else img, settings, notes)
    return Rejection("unsupported_mode", f"PIL mode {mode}")


def _gray16_to_l(img: Image.Image) -> Image.Image:
    """round(v / 257) with v clipped to 0..65535; Pillow's convert("L") would clip everything above 255 to white."""
    v = np.asarray(img)
    if img.mode == "I":
        v = np.clip(v, 0, 65535)
    return Image.fromarray(((v.astype(np.uint32) + 128) // 257).astype(np.uint8))


def _alpha(img: Image.Image, settings: DecodeSettings, notes: list[str]) -> Image.Image | Rejection:
    """RGBA/LA to RGB/L: drop an all-opaque alpha, else composite over white or reject by ``settings.alpha``."""
    base = img.mode[:-1]
    lowest = img.getextrema()[-1][0]  # C-side min of the alpha band; no array copy on the common opaque path
    if lowest == 255:
        return img.convert(base)
    if settings.alpha == "reject":
        return Rejection("has_alpha", f"{img.mode} with alpha down to {lowest}")
    px = np.asarray(img)
    out = np.empty((*px.shape[:2], px.shape[2] - 1), np.uint8)
    for y in range(0, px.shape[0], 256):  # in strips: uint16 temporaries of a whole 100 MPx picture would be GiBs
        strip = px[y : y + 256].astype(np.uint16)
        a = strip[..., -1:]
        # Exact rounding of c*a/255 + 255*(1 - a/255); the sum is at most 255*255 + 127, so uint16 cannot overflow.
        out[y : y + 256] = (strip[..., :-1] * a + 255 * (255 - a) + 127) // 255
    notes.append("alpha_over_white")
    return Image.fromarray(out[..., 0] if base == "L" else out)


def _to_srgb(img: Image.Image, icc: bytes | None, notes: list[str]) -> Image.Image:
    """L/RGB/CMYK to sRGB RGB: through the embedded ICC profile when there is a usable non-sRGB one, else plainly."""
    plain_note = {"L": "gray_to_rgb", "CMYK": "cmyk_to_rgb"}.get(img.mode)
    if icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            is_srgb = ImageCms.getProfileDescription(profile).strip().lower().startswith("srgb")
            out = None if is_srgb else ImageCms.profileToProfile(img, profile, _srgb(), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            notes.append("icc_invalid")
        else:
            if out is not None:
                notes.append("icc_to_srgb")
                if plain_note:
                    notes.append(plain_note)
                return out
    if plain_note:
        notes.append(plain_note)
    return img if img.mode == "RGB" else img.convert("RGB")


def _srgb() -> ImageCms.ImageCmsProfile:
    # A fresh profile per call (about 0.1 ms): lcms profile handles are not meant to be shared between threads.
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _rgb_array(img: Image.Image) -> np.ndarray:
    """The HxWx3 uint8 pixels of an RGB image, read-only, with one copy out of Pillow's 4-bytes-per-pixel storage.

    ``np.asarray(img)`` goes through ``img.tobytes()``, which runs the same raw encoder in 64 KiB pieces and joins
    them: a second copy, and 75 ms instead of 45 ms for 15 MPx on the 2-core box. One call with a buffer for the
    whole picture avoids it. ``Image._getencoder`` is private, so a Pillow without it gets the public path.
    """
    w, h = img.size
    try:
        encoder = Image._getencoder("RGB", "raw", "RGB")
        encoder.setimage(img.im, (0, 0, w, h))
    except (AttributeError, TypeError):
        return np.ascontiguousarray(np.asarray(img))
    chunks = []
    status = 0
    while not status:  # one round for any size: the buffer holds the whole picture (RawEncode wants >= a row)
        _, status, chunk = encoder.encode(max(w * h * 3, w * 4, 65536))
        chunks.append(chunk)
    if status < 0:
        raise RuntimeError(f"Pillow's raw encoder failed with {status} on a loaded {w}x{h} RGB image")
    return np.frombuffer(chunks[0] if len(chunks) == 1 else b"".join(chunks), np.uint8).reshape(h, w, 3)
