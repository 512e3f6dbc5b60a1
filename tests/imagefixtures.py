"""Image files for tests: the bad and awkward inputs a decoder meets, and photo-like pixel content.

``write_bad_input_suite(dir)`` writes one small file per case (64x48 px unless the case needs size) and returns
``{case: path}``. The module-level constants say what each file holds where a test checks values, so tests do not
repeat magic numbers. Everything is deterministic (fixed seeds, no clocks), so the same bytes come out every time.

Import from a test with ``tests/`` on ``sys.path`` (``tests/`` has no ``__init__.py``).
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms

W, H = 64, 48  # default fixture size: small, and not square so a rotation shows in the shape
PHOTO_SEED = 7  # natural_image(H, W, PHOTO_SEED) is the content of the lossless photo fixtures

# 16-bit grey PNG: (row, col) -> stored uint16 value; decode rule round(v/257) gives GRAY16_EXPECTED.
GRAY16_PROBES = {(0, 0): 65535, (0, 1): 32896, (0, 2): 0, (0, 3): 128, (0, 4): 129, (0, 5): 32895}
GRAY16_EXPECTED = {(0, 0): 255, (0, 1): 128, (0, 2): 0, (0, 3): 0, (0, 4): 1, (0, 5): 128}
# 16-bit RGB PNG: pixel (0, 0) holds these R, G, B; Pillow keeps the high byte -> (255, 128, 0), not round -> 1 for B.
RGB16_PIXEL = (65535, 32896, 200)
# Palette PNG: index 0 is black and fully transparent (tRNS); it fills the top-left block.
TRANSPARENT_BLOCK = (slice(0, 8), slice(0, 8))
# RGBA PNG: black under alpha 0 in the top-left block, black under alpha 128 in the top-right block.
RGBA_CLEAR_BLOCK = (slice(0, 8), slice(0, 8))
RGBA_HALF_BLOCK = (slice(0, 8), slice(W - 8, W))
# EXIF JPEG: stored W x H with a red block in the stored top-left corner, orientation 6 (rotate 90° clockwise).
EXIF_ORIENTATION = 6
EXIF_MARK = 16  # side of the red block, px
# ICC JPEGs: the left half is flat grey 128. Through a linear-light profile it becomes sRGB ~188.
ICC_GRAY = 128
ICC_LINEAR_TO_SRGB = 188
# Decompression bombs: PIL's own guard fires above 2 * Image.MAX_IMAGE_PIXELS (179 MPx); 9000x9000 = 81 MPx is below
# even PIL's warning (89.5 MPx), so only the decoder's own max_pixels can stop it.
BOMB_SIZE = (30000, 30000)
HEADER_BOMB_SIZE = (9000, 9000)


def natural_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like HxWx3 uint8 picture: smooth multi-scale colour field, object edges, fine texture, mild noise.

    Not flat and not a graphic: colours vary smoothly with correlated channels (like real scenes), a few soft-edged
    regions give edges, a 3 px octave gives texture and sigma-2 noise stands in for sensor noise. Deterministic in
    ``seed``. About 0.3 s at 4K: the smooth octaves are summed at low resolution and upsampled once, and the texture
    and noise come from one seamless 510 px tile repeated across the picture (random noise for 45 M values would
    cost more than everything else together).
    """
    rng = np.random.default_rng(seed)
    short = min(h, w)

    def octave(cell: float, size: tuple[int, int]) -> np.ndarray:
        grid = rng.standard_normal((max(2, round(h / cell) + 1), max(2, round(w / cell) + 1), 3), dtype=np.float32)
        return cv2.resize(grid @ _MIX, size, interpolation=cv2.INTER_CUBIC)

    f = max(1, short // 128)  # the finest smooth octave still spans >= 4 px at 1/f resolution
    small = (max(2, w // f), max(2, h // f))
    low = rng.uniform(90, 160, 3).astype(np.float32)
    for cell, amp in ((short / 2, 40.0), (short / 8, 22.0), (max(short / 32, 3.0), 10.0)):
        low = low + amp * octave(cell, small)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    regions = cv2.resize(rng.standard_normal((4, 6), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    edge = cv2.GaussianBlur((regions > 0.3).astype(np.float32), (0, 0), 0.8)
    for k, shift in enumerate(rng.uniform(-50, 50, 3).astype(np.float32)):
        img[..., k] += shift * edge
    tile = _grain_tile(rng, min(h, 510), min(w, 510))
    th, tw = tile.shape[:2]
    for y in range(0, h, th):
        for x in range(0, w, tw):
            view = img[y : y + th, x : x + tw]
            view += tile[: view.shape[0], : view.shape[1]]
    np.maximum(img, 0, out=img)
    return cv2.convertScaleAbs(img)  # rounds and saturates at 255; values are >= 0 here, so abs() is a no-op


# Mostly a shared luminance component plus some chroma: channels of natural images are strongly correlated.
_MIX = np.array([[1.0, 1.0, 1.0], [0.35, 0.0, -0.35], [-0.2, 0.4, -0.2]], np.float32)


def _grain_tile(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Texture (3 px cells, amplitude 5) plus noise (sigma 2); periodic, so repeated tiles show no seams."""
    gh, gw = -(-h // 3), -(-w // 3)
    grid = np.pad(rng.standard_normal((gh, gw, 3), dtype=np.float32) @ _MIX, ((2, 2), (2, 2), (0, 0)), mode="wrap")
    tex = cv2.resize(grid, ((gw + 4) * 3, (gh + 4) * 3), interpolation=cv2.INTER_CUBIC)[6 : 6 + 3 * gh, 6 : 6 + 3 * gw]
    return 5.0 * tex + 2.0 * rng.standard_normal(tex.shape, dtype=np.float32)


def linear_rgb_icc(description: str = "sr4k linear-light RGB test profile") -> bytes:
    """A valid ICC v2 RGB matrix/TRC profile: sRGB's primaries and D50 white with gamma 1.0 curves.

    Pillow can only build sRGB, LAB and XYZ profiles, none of them a non-sRGB RGB space, so this writes the few
    tags lcms needs by hand. The description must not start with "sRGB" (the decoder would skip it as sRGB).
    """

    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    text = description.encode("ascii") + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8 + 2 + 1 + 67)
    linear = b"curv" + bytes(4) + struct.pack(">IH", 1, 256)  # one entry = a gamma in u8.8: 1.0
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.4360747, 0.2225045, 0.0139322)),
        (b"gXYZ", xyz(0.3850649, 0.7168786, 0.0971045)),
        (b"bXYZ", xyz(0.1430804, 0.0606169, 0.7141733)),
        (b"rTRC", linear),
        (b"gTRC", linear),
        (b"bTRC", linear),
    ]
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)  # tag data is 4-byte aligned
        table += struct.pack(">4sII", sig, start + len(data), len(body))
        data += body
    header = (
        struct.pack(">I4sI4s4s4s", start + len(data), b"lcms", 0x02100000, b"mntr", b"RGB ", b"XYZ ")
        + bytes(12)  # date
        + b"acsp"
        + bytes(24)  # platform, flags, manufacturer, model, attributes
        + bytes(4)  # rendering intent: perceptual
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)  # PCS illuminant D50
        + bytes(4 + 16 + 28)  # creator, profile id, reserved
    )
    return header + struct.pack(">I", len(tags)) + table + data


def srgb_icc() -> bytes:
    """Pillow's built-in sRGB profile as bytes (description "sRGB built-in")."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, CRC (for hand-built PNGs)."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@functools.cache
def bomb_png_bytes(width: int, height: int, complete: bool = True) -> bytes:
    """A 1-bit grey PNG whose header declares width x height, with all-zero pixels.

    ``complete``: the IDAT holds every row (30000x30000 compresses 112 MB of zeros to ~110 kB, about 0.6 s once per
    process, hence the cache); otherwise it holds the first row and the zlib stream is cut there (not finished: a
    finished short stream would load without error, Pillow zero-fills the missing rows), so the file is tiny and
    fails to load as truncated, which lets a test prove that the size guard ran before any pixel was decoded.
    """
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits
    co = zlib.compressobj(9)
    if complete:
        step = 1000
        parts = [co.compress(row * min(step, height - y)) for y in range(0, height, step)] + [co.flush()]
    else:
        parts = [co.compress(row), co.flush(zlib.Z_SYNC_FLUSH)]
    idat = b"".join(parts)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, grey, deflate, no filter, no interlace
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def _save(img: Image.Image, path: Path, fmt: str, **kw: object) -> Path:
    img.save(path, fmt, **kw)
    return path


def _jpeg_bytes(rgb: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def write_bad_input_suite(directory: Path | str) -> dict[str, Path]:
    """Write every bad-input case into ``directory`` (created if needed); return ``{case: path}``.

    Cases: truncated_jpeg, corrupt_png, zero_byte, text_as_jpg, wrong_extension (a PNG named .jpg), gray_png,
    cmyk_jpeg, sixteen_bit_png, sixteen_bit_rgb_png, palette_transparency_png, rgba_png, rgba_opaque_png,
    exif_rotated_jpeg, animated_gif, animated_webp, animated_png, decompression_bomb_png, header_bomb_png, icc_jpeg,
    icc_srgb_jpeg, icc_broken_jpeg.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    photo = natural_image(H, W, seed=PHOTO_SEED)
    out: dict[str, Path] = {}

    jpeg = _jpeg_bytes(photo)
    out["truncated_jpeg"] = d / "truncated.jpg"
    out["truncated_jpeg"].write_bytes(jpeg[: len(jpeg) * 2 // 3])  # headers intact, entropy data cut
    png = io.BytesIO()
    Image.fromarray(photo).save(png, "PNG")
    png_bytes = bytearray(png.getvalue())
    idat = png_bytes.index(b"IDAT")
    png_bytes[idat + 4 + 40] ^= 0xFF  # a flipped byte inside the compressed pixel data
    out["corrupt_png"] = d / "corrupt.png"
    out["corrupt_png"].write_bytes(bytes(png_bytes))
    out["zero_byte"] = d / "zero.jpg"
    out["zero_byte"].write_bytes(b"")
    out["text_as_jpg"] = d / "notes.jpg"
    out["text_as_jpg"].write_text("This is a text file with a .jpg name, not a picture.\n" * 4)
    out["wrong_extension"] = _save(Image.fromarray(photo), d / "really_a_png.jpg", "PNG")
    out["gray_png"] = _save(Image.fromarray(photo[..., 1]), d / "gray.png", "PNG")

    cmyk = np.zeros((H, W, 4), np.uint8)
    cmyk[:, : W // 2, 0] = 255  # left half pure cyan; right half no ink (white)
    out["cmyk_jpeg"] = _save(Image.fromarray(cmyk, "CMYK"), d / "cmyk.jpg", "JPEG", quality=95)

    out.update(_write_sixteen_bit(d))
    out.update(_write_alpha(d, photo))

    rotated = photo.copy()
    rotated[:EXIF_MARK, :EXIF_MARK] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = EXIF_ORIENTATION
    out["exif_rotated_jpeg"] = _save(Image.fromarray(rotated), d / "exif6.jpg", "JPEG", quality=95, exif=exif)

    out.update(_write_animated(d))

    out["decompression_bomb_png"] = d / "bomb.png"
    out["decompression_bomb_png"].write_bytes(bomb_png_bytes(*BOMB_SIZE))
    out["header_bomb_png"] = d / "header_bomb.png"
    out["header_bomb_png"].write_bytes(bomb_png_bytes(*HEADER_BOMB_SIZE, complete=False))

    icc_pixels = photo.copy()
    icc_pixels[:, : W // 2] = ICC_GRAY
    for key, profile in (
        ("icc_jpeg", linear_rgb_icc()),
        ("icc_srgb_jpeg", srgb_icc()),
        ("icc_broken_jpeg", b"not an ICC profile " * 8),
    ):
        out[key] = d / f"{key}.jpg"
        out[key].write_bytes(_jpeg_bytes(icc_pixels, icc_profile=profile))
    return out


def _write_sixteen_bit(d: Path) -> dict[str, Path]:
    gray = (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 28 % 65536).astype(np.uint16)
    for (r, c), v in GRAY16_PROBES.items():
        gray[r, c] = v
    rgb = np.stack([gray, 65535 - gray, gray // 2], axis=-1)
    rgb[0, 0] = RGB16_PIXEL
    paths = {"sixteen_bit_png": d / "gray16.png", "sixteen_bit_rgb_png": d / "rgb16.png"}
    # cv2 writes real 16-bit PNGs from uint16 arrays (and wants BGR order for colour).
    for key, pixels in (("sixteen_bit_png", gray), ("sixteen_bit_rgb_png", rgb[..., ::-1])):
        if not cv2.imwrite(str(paths[key]), pixels):
            raise OSError(f"cv2.imwrite failed to write {paths[key]}")
    return paths


def _write_alpha(d: Path, photo: np.ndarray) -> dict[str, Path]:
    index = (photo[..., 0] // 32 + 1).astype(np.uint8)  # indices 1..8; 0 is reserved for the transparent colour
    index[TRANSPARENT_BLOCK] = 0
    pal = Image.frombytes("P", (W, H), index.tobytes())
    pal.putpalette([0, 0, 0] + [v for i in range(1, 9) for v in (i * 28, 255 - i * 20, 60 + i * 10)])
    rgba = np.dstack([photo, np.full((H, W), 255, np.uint8)])
    rgba[RGBA_CLEAR_BLOCK] = (0, 0, 0, 0)
    rgba[RGBA_HALF_BLOCK] = (0, 0, 0, 128)
    opaque = np.dstack([photo, np.full((H, W), 255, np.uint8)])
    return {
        "palette_transparency_png": _save(pal, d / "palette_trns.png", "PNG", transparency=0),
        "rgba_png": _save(Image.fromarray(rgba, "RGBA"), d / "rgba.png", "PNG"),
        "rgba_opaque_png": _save(Image.fromarray(opaque, "RGBA"), d / "rgba_opaque.png", "PNG"),
    }


def animation_frames() -> list[np.ndarray]:
    """The frames of the animated fixtures: frame 0 red left half / blue right half, frame 1 all green."""
    first = np.zeros((H, W, 3), np.uint8)
    first[:, : W // 2] = (255, 0, 0)
    first[:, W // 2 :] = (0, 0, 255)
    second = np.zeros((H, W, 3), np.uint8)
    second[:] = (0, 255, 0)
    return [first, second]


def _write_animated(d: Path) -> dict[str, Path]:
    first, *rest = [Image.fromarray(f) for f in animation_frames()]
    common = {"save_all": True, "append_images": rest, "duration": 100, "loop": 0}
    return {
        "animated_gif": _save(first, d / "anim.gif", "GIF", **common),
        "animated_webp": _save(first, d / "anim.webp", "WEBP", lossless=True, **common),
        "animated_png": _save(first, d / "anim.png", "PNG", **common),
    }
