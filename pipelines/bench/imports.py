"""Imported benchmarks: real paired LR/HR sets (RealSR, DRealSR style name matching, modcrop, alignment rule) and
LR-only real sets (``pipelines.bench.sets`` module doc: matching, sizes, the alignment rule, report statuses)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.bench.metrics import lr_consistency_psnr
from pipelines.bench.sets import (
    ALIGN_GAP_DB,
    ALIGN_MIN_PSNR_DB,
    PNG_LEVEL,
    _building,
    _check_name,
    _check_scale,
    _existing_dir,
    _finish_import,
    _list_dir,
    _load,
    _Out,
    _sniff,
    _unique_key,
    _versions,
    match_stem,
    sanitize_key,
    sr_output_too_large,
)
from pipelines.curate.crop import choose_crops
from pipelines.curate.decode import ACCEPTED_FORMATS, Decoded
from pipelines.store import safety
from schemas.bench import BenchItem, ReportRow

# ----------------------------------------------------------------------------------------------------------------- #
# Paired real LR/HR
# ----------------------------------------------------------------------------------------------------------------- #


@dataclass(slots=True)
class _Pair:
    key: str
    hr: Path
    lr: Path
    hint: int | None  # scale named by the LR suffix (_LR4, _x4)


def _sides(hr_dir: Path, lr_dir: Path) -> tuple[list[Path], list[Path], list[ReportRow]]:
    """HR files, LR files and the rows of entries that are neither (skipped, or roleless in a shared folder)."""
    if hr_dir == lr_dir:
        listing = _list_dir(hr_dir, "hr_dir/lr_dir")
        hr, lr, rows = [], [], list(listing.rows)
        for p in listing.files:
            role = match_stem(p.stem)[1]
            if role is None:
                detail = "no role suffix (_HR, _x1 / _LR<n>, _x<n>) in a folder that holds both HR and LR"
                rows.append(ReportRow(str(p), *(_sniff(p) or ("unmatched", detail))))
            else:
                (hr if role == "hr" else lr).append(p)
        return hr, lr, rows
    hr_l, lr_l = _list_dir(hr_dir, "hr_dir"), _list_dir(lr_dir, "lr_dir")
    return hr_l.files, lr_l.files, hr_l.rows + lr_l.rows


def _match(hr_files: list[Path], lr_files: list[Path]) -> tuple[list[_Pair], list[ReportRow]]:
    """Pairs by match stem, and report rows for the files that are not pictures or have no unique partner."""
    groups: dict[str, tuple[list[Path], list[Path]]] = {}
    pairs, rows, taken = [], [], set()
    for side, files in ((0, hr_files), (1, lr_files)):
        for p in files:
            # Header-only check first, so a caption or metadata file beside a picture (0001.png + 0001.json) is
            # reported as what it is instead of making its picture's match ambiguous.
            bad = _sniff(p)
            if bad:
                rows.append(ReportRow(str(p), *bad))
            else:
                groups.setdefault(match_stem(p.stem)[0], ([], []))[side].append(p)
    for stem in sorted(groups):
        hrs, lrs = groups[stem]
        key = _unique_key(sanitize_key(stem), stem, taken)
        if len(hrs) == 1 and len(lrs) == 1:
            pairs.append(_Pair(key, hrs[0], lrs[0], match_stem(lrs[0].stem)[2]))
        elif len(hrs) > 1 or len(lrs) > 1:
            names = ", ".join(p.name for p in hrs + lrs)
            rows += [ReportRow(str(p), "ambiguous", f"match stem {stem!r} shared by {names}", key) for p in hrs + lrs]
        else:
            detail = f"no {'LR' if hrs else 'HR'} file with match stem {stem!r} (suffixes _HR/_LR<n>/_x<n>, any ext)"
            rows += [ReportRow(str(p), "unmatched", detail, key) for p in hrs + lrs]
    return pairs, rows


def import_paired(
    hr_dir: Path, lr_dir: Path, out_dir: Path, name: str, scale: int | None = None, *, check_alignment: bool = True
) -> dict[str, Any]:
    """Import a real paired LR/HR set (RealSR / DRealSR / plain names); see the module docstring for the rules.

    Returns a summary (count, scale, statuses); the benchmark's ``import_report.parquet`` has one row per entry of
    both folders. Raises ValueError for a missing or empty folder, BenchmarkError (a ValueError carrying the
    report) when no pair could be imported, and ValueError when the scale cannot be inferred.
    """
    _check_name(name)
    if scale is not None:
        scale = _check_scale(scale)
    hr_dir, lr_dir = _existing_dir(hr_dir, "hr_dir"), _existing_dir(lr_dir, "lr_dir")
    hr_files, lr_files, rows = _sides(hr_dir, lr_dir)
    pairs, match_rows = _match(hr_files, lr_files)
    with _building(out_dir, name, [hr_dir, lr_dir]) as out:
        job = _PairedImport(out, scale)
        for pair in pairs:
            job.add(pair)
        if check_alignment:
            job.flag_misaligned()
        settings = {
            "hr_dir": str(hr_dir),
            "lr_dir": str(lr_dir),
            "scale_given": scale,
            "check_alignment": check_alignment,
            "align_min_psnr_db": ALIGN_MIN_PSNR_DB,
            "align_gap_db": ALIGN_GAP_DB,
            "png_level": PNG_LEVEL,
            "versions": _versions(),
        }
        all_rows = rows + match_rows + list(job.rows.values())
        return _finish_import(out, "paired", name, hr_dir, settings, list(job.items.values()), all_rows)


class _PairedImport:
    """State of one paired import: the scale (given or inferred), items, PSNRs and report rows of matched files."""

    def __init__(self, out: _Out, scale: int | None):
        self.out, self.scale = out, scale
        self.items: dict[str, BenchItem] = {}
        self.pairs: dict[str, _Pair] = {}
        self.psnr: dict[str, float] = {}
        self.rows: dict[Path, ReportRow] = {}

    def _both(self, pair: _Pair, status: str, detail: str) -> None:
        for p in (pair.hr, pair.lr):
            self.rows[p] = ReportRow(str(p), status, detail, pair.key)

    def add(self, pair: _Pair) -> None:
        hr, lr = _load(pair.hr), _load(pair.lr)
        if isinstance(hr, tuple) or isinstance(lr, tuple):
            return self._rejected(pair, hr, lr)
        scale = self._scale(pair, hr.rgb, lr.rgb)
        fitted = _fit_hr(hr.rgb, lr.rgb, scale)
        if isinstance(fitted, str):
            return self._both(pair, "size_mismatch", fitted)
        hr_rgb, note = fitted
        psnr = lr_consistency_psnr(lr.rgb, hr_rgb)
        self.out.png(f"hr/{pair.key}.png", hr_rgb)
        self.out.png(f"lr/{pair.key}.png", lr.rgb)
        lh, lw = lr.rgb.shape[:2]
        self.items[pair.key] = BenchItem(
            pair.key,
            f"lr/{pair.key}.png",
            f"hr/{pair.key}.png",
            lw,
            lh,
            lw * scale,
            lh * scale,
            scale,
            None,
            None,
            str(pair.hr),
            hr.pixel_sha256[:24],
        )
        self.pairs[pair.key], self.psnr[pair.key] = pair, psnr
        self._both(pair, "imported", "; ".join(filter(None, [f"psnr_y {psnr:.2f} dB vs area-downscaled HR", note])))

    def _rejected(self, pair: _Pair, hr: Decoded | tuple[str, str], lr: Decoded | tuple[str, str]) -> None:
        """Rows of a pair where one side (or both) is not a usable picture: its own status, or partner_rejected."""
        for p, mine, other, label in ((pair.hr, hr, lr, "LR"), (pair.lr, lr, hr, "HR")):
            if isinstance(mine, tuple):
                self.rows[p] = ReportRow(str(p), *mine, pair.key)
            else:
                self.rows[p] = ReportRow(str(p), "partner_rejected", f"its {label} was rejected: {other[0]}", pair.key)

    def _scale(self, pair: _Pair, hr: np.ndarray, lr: np.ndarray) -> int:
        if self.scale is not None:
            return self.scale
        (hh, hw), (lh, lw) = hr.shape[:2], lr.shape[:2]
        s = hw // lw
        # The same tolerance as _fit_hr: up to s - 1 extra HR pixels per side (none at s = 1).
        if s < 1 or not 0 <= hw - lw * s < s or not 0 <= hh - lh * s < s:
            raise ValueError(
                f"cannot infer the scale from the first pair {pair.hr.name} ({hw}x{hh}) / {pair.lr.name} ({lw}x{lh}): "
                f"not an integer ratio; pass scale= (or are hr_dir and lr_dir swapped?)"
            )
        if s == 1 and (pair.hint or 1) > 1:
            raise ValueError(
                f"{pair.lr.name} is the size of its HR ({hw}x{hh}) although its name says x{pair.hint}: "
                f"this set stores LR upsampled to the HR size; downscale the LR images first, or pass "
                f"scale=1 to import them as they are"
            )
        self.scale = s
        return s

    def flag_misaligned(self) -> None:
        if not self.psnr:
            return
        median = statistics.median(self.psnr.values())
        for key, psnr in self.psnr.items():
            if psnr < ALIGN_MIN_PSNR_DB and psnr < median - ALIGN_GAP_DB:
                self.out.remove(f"hr/{key}.png")
                self.out.remove(f"lr/{key}.png")
                del self.items[key]
                detail = (
                    f"psnr_y {psnr:.2f} dB vs set median {median:.2f} dB (rule: < {ALIGN_MIN_PSNR_DB:g} dB and "
                    f"more than {ALIGN_GAP_DB:g} dB below the median)"
                )
                self._both(self.pairs[key], "misaligned", detail)


def _fit_hr(hr: np.ndarray, lr: np.ndarray, scale: int) -> tuple[np.ndarray, str] | str:
    """(HR cropped to LR * scale, note) when within the modcrop tolerance, else the size_mismatch detail."""
    (hh, hw), (lh, lw) = hr.shape[:2], lr.shape[:2]
    dw, dh = hw - lw * scale, hh - lh * scale
    if dw == 0 and dh == 0:
        return hr, ""
    if 0 <= dw < scale and 0 <= dh < scale:
        return hr[: lh * scale, : lw * scale], f"hr cropped from {hw}x{hh} to {lw * scale}x{lh * scale} (modcrop)"
    return f"hr {hw}x{hh} != lr {lw}x{lh} x {scale} = {lw * scale}x{lh * scale}"


# ----------------------------------------------------------------------------------------------------------------- #
# LR-only real images
# ----------------------------------------------------------------------------------------------------------------- #


def import_lr_only(
    lr_dir: Path, out_dir: Path, name: str, square: int | None = None, scale: int = 4
) -> dict[str, Any]:
    """Import LR-only real images (RealLQ style). ``square=None``: every image as decoded (varying sizes);
    ``square=N``: one detail-aware N x N crop per image, smaller images reported ``too_small``. ``scale`` is the
    SR factor the benchmark is meant for (recorded in the index). Exact pixel duplicates are reported, not imported.
    """
    _check_name(name)
    scale = _check_scale(scale)
    if square is not None:
        square = _check_scale(square, "square")
        if too_big := sr_output_too_large(square, square, scale):
            raise ValueError(f"--square {square}: {too_big}; pass a smaller --square or --scale")
    lr_dir = _existing_dir(lr_dir, "lr_dir")
    listing = _list_dir(lr_dir, "lr_dir")
    taken: set[str] = set()
    keyed = sorted((_unique_key(sanitize_key(p.stem), p.name, taken), p) for p in listing.files)
    rows, items = list(listing.rows), []
    seen: dict[str, str] = {}
    with _building(out_dir, name, [lr_dir]) as out:
        for key, path in keyed:
            row, item = _lr_only_item(path, key, out, square, scale, seen)
            rows.append(row)
            if item is not None:
                items.append(item)
        settings = {
            "mode": "varying" if square is None else "square",
            "square": square,
            "png_level": PNG_LEVEL,
            "versions": _versions(),
        }
        return _finish_import(out, "lr_only", name, lr_dir, settings, items, rows)


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the picture's header (no pixels decoded), or None when the header cannot tell."""
    try:
        with safety.open_regular(path, path.parent) as f, Image.open(f, formats=ACCEPTED_FORMATS) as im:
            return im.size
    except Exception:  # not a picture, unreadable, unsafe: _load reports it with its own reason
        return None


def _lr_only_item(
    path: Path, key: str, out: _Out, square: int | None, scale: int, seen: dict[str, str]
) -> tuple[ReportRow, BenchItem | None]:
    size = None if square is not None else _header_size(path)
    if size is not None and (too_big := sr_output_too_large(*size, scale)):
        return ReportRow(str(path), "too_large", f"{too_big}: import with --square N or downscale it", key), None
    dec = _load(path)
    if isinstance(dec, tuple):
        return ReportRow(str(path), *dec, key), None
    if dec.pixel_sha256 in seen:
        return ReportRow(str(path), "duplicate", f"same pixels as {seen[dec.pixel_sha256]}", key), None
    rgb, detail = dec.rgb, ""
    if square is None and (too_big := sr_output_too_large(rgb.shape[1], rgb.shape[0], scale)):
        return ReportRow(str(path), "too_large", f"{too_big}: import with --square N or downscale it", key), None
    if square is not None:
        boxes = choose_crops(rgb, (square, square), 1)
        if not boxes:
            h, w = rgb.shape[:2]
            return ReportRow(str(path), "too_small", f"{w}x{h} < square {square}x{square}", key), None
        b = boxes[0]
        rgb, detail = rgb[b.y : b.y + b.h, b.x : b.x + b.w], f"crop {b.w}x{b.h} at ({b.x}, {b.y})"
    seen[dec.pixel_sha256] = path.name
    out.png(f"lr/{key}.png", rgb)
    h, w = rgb.shape[:2]
    item = BenchItem(key, f"lr/{key}.png", None, w, h, None, None, scale, None, None, str(path), dec.pixel_sha256[:24])
    return ReportRow(str(path), "imported", detail, key), item
