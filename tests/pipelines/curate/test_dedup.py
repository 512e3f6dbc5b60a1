import io
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pytest
import skimage.data
from PIL import Image

from pipelines.curate.decode import decode_image
from pipelines.curate.dedup import DedupItem, MatchView, _candidate_pairs, crop_match, find_duplicates, small_gray


def item(key, phash, pixels=100, sharp=1.0, q=90.0, pix=None):
    return DedupItem(key, f"/{key}.jpg", pix or f"sha-{key}", phash, pixels, sharp, q)


def test_exact_duplicates_keep_the_first_uri_and_point_to_it():
    items = [item("b", "ff00ff00ff00ff00", pix="same"), item("a", "ff00ff00ff00ff00", pix="same")]
    (d,) = find_duplicates(items)
    assert (d.key, d.reason, d.duplicate_of, d.distance) == ("b", "exact_duplicate", "a", 0)


def test_near_duplicates_keep_the_largest():
    base = 0x0123456789ABCDEF
    items = [
        item("small", f"{base ^ 0b101:016x}", pixels=10),
        item("large", f"{base:016x}", pixels=1000),
        item("mid", f"{base ^ 0b1:016x}", pixels=100),
        item("other", f"{~base & (2**64 - 1):016x}", pixels=5),
    ]
    dups = {d.key: d for d in find_duplicates(items, max_distance=6)}
    assert set(dups) == {"small", "mid"}
    assert all(d.duplicate_of == "large" and d.reason == "near_duplicate" for d in dups.values())
    assert dups["small"].distance == 2


def test_distance_threshold_is_inclusive_and_can_be_disabled():
    a, b = item("a", "0" * 16, pixels=2), item("b", f"{0b111111:016x}")  # 6 bits apart
    assert len(find_duplicates([a, b], max_distance=6)) == 1
    assert find_duplicates([a, b], max_distance=5) == []
    assert find_duplicates([a, b], max_distance=-1) == []


def test_banded_candidates_find_every_pair_within_distance():
    """Multi-index hashing must not miss pairs: compare against brute force on random hashes."""
    rng = np.random.default_rng(1)
    base = [int(rng.integers(0, 2**63)) for _ in range(40)]
    hashes = base + [h ^ (1 << int(rng.integers(0, 64))) ^ (1 << int(rng.integers(0, 64))) for h in base]
    for dist in (2, 4, 6):
        cand = _candidate_pairs(hashes, dist)
        for i in range(len(hashes)):
            for j in range(i + 1, len(hashes)):
                if (hashes[i] ^ hashes[j]).bit_count() <= dist:
                    assert (i, j) in cand


# --- crop-aware matching on real pictures ---------------------------------------------------------------------------

MATE = Path("/usr/share/backgrounds/mate/nature")
SKIMAGE = Path(skimage.data.__file__).parent


def _load(path: Path, width: int = 768) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, **kw)
    return buf.getvalue()


def _variants(rgb: np.ndarray) -> dict[str, bytes]:
    """One picture as a data team finds it: a portrait re-crop, a 0.6x rescale, colour-mode copies, an EXIF-rotated
    copy (pixels stored turned, tag 6) and a pillarboxed re-layout."""
    h, w = rgb.shape[:2]
    pw = round(h * 9 / 16)
    exif = Image.Exif()
    exif[0x0112] = 6
    canvas = np.zeros((h, round(h * 21 / 9), 3), np.uint8)
    canvas[:, (canvas.shape[1] - w) // 2 :][:, :w] = rgb
    return {
        "orig.png": _png(Image.fromarray(rgb), format="PNG"),
        "portrait.jpg": _png(Image.fromarray(rgb[:, w // 3 : w // 3 + pw]), format="JPEG", quality=90),
        "x0.6.jpg": _png(
            Image.fromarray(cv2.resize(rgb, (w * 3 // 5, h * 3 // 5), interpolation=cv2.INTER_AREA)),
            format="JPEG",
            quality=90,
        ),
        "cmyk.jpg": _png(Image.fromarray(rgb).convert("CMYK"), format="JPEG", quality=90),
        "16bit.png": cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)[1].tobytes(),
        "palette.png": _png(Image.fromarray(rgb).quantize(256), format="PNG"),
        "exif.jpg": _png(
            Image.fromarray(np.ascontiguousarray(np.rot90(rgb))), format="JPEG", quality=90, exif=exif.tobytes()
        ),
        "relayout.jpg": _png(Image.fromarray(canvas), format="JPEG", quality=90),
    }


def _as_curated(name: str, data: bytes) -> tuple[DedupItem, MatchView]:
    """What the curation keeps of a source for dedup: decode, the pHash of the 128-px view, the 256-px JPEG thumb."""
    dec = decode_image(data, name)
    h, w = dec.rgb.shape[:2]
    ph = str(imagehash.phash(Image.fromarray(cv2.resize(dec.rgb, (128, 128), interpolation=cv2.INTER_AREA))))
    f = 256 / max(h, w)
    thumb = cv2.resize(dec.rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    thumb = cv2.imdecode(cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 85])[1], cv2.IMREAD_GRAYSCALE)
    return DedupItem(name, name, dec.pixel_sha256, ph, w * h, 1.0, None), MatchView(small_gray(thumb))


@pytest.mark.skipif(not MATE.exists(), reason="needs the mate-backgrounds Debian package")
def test_one_picture_in_many_forms_is_one_source_and_other_photos_stay_apart():
    sources = {f"storm/{k}": v for k, v in _variants(_load(MATE / "Storm.jpg")).items()}
    others = [
        MATE / "GreenMeadow.jpg",
        MATE / "Garden.jpg",
        MATE / "Dune.jpg",
        MATE / "TwoWings.jpg",
        SKIMAGE / "chelsea.png",
        SKIMAGE / "coffee.png",
        SKIMAGE / "astronaut.png",
    ]
    sources |= {p.name: _png(Image.fromarray(_load(p, 512)), format="PNG") for p in others}
    items, views = [], {}
    for name, data in sources.items():
        it, views[name] = _as_curated(name, data)
        items.append(it)
    dups = {d.key: d for d in find_duplicates(items, 6, views, 0.96)}
    storm = {k for k in sources if k.startswith("storm/")}
    # the kept copy is the one with the most pixels: here the pillarboxed canvas (in a curation its black bars are
    # rejected clip_low by the filters before dedup, and the original wins)
    best = max(storm, key=lambda k: next(it.pixels for it in items if it.key == k))
    assert best == "storm/relayout.jpg"
    assert set(dups) == storm - {best}  # every other form found, no other photo merged
    assert all(d.duplicate_of == best for d in dups.values())
    assert dups["storm/portrait.jpg"].reason == "crop_duplicate" and dups["storm/portrait.jpg"].ncc is not None
    assert crop_match(views["storm/portrait.jpg"], views["storm/orig.png"])[0] >= 0.96  # the link that joined it
    # without crop matching the hashes alone miss the crop and the re-layout (what the issue saw)
    hash_only_kept = storm - {d.key for d in find_duplicates(items, 6)}
    assert "storm/portrait.jpg" in hash_only_kept and len(hash_only_kept) >= 2


def test_a_stereo_pair_is_not_a_crop_match():
    """Two photos of one scene from viewpoints 18 cm apart (scikit-image's motorcycle stereo pair): different
    pictures, so the crop matcher must score them below the threshold. (Their pHashes are 4 bits apart, so the
    hash stage with the default max distance 6 does merge them: a pHash limitation, kept as configured.)"""
    left, right = (
        _as_curated(n, (SKIMAGE / f"{n}.png").read_bytes())[1] for n in ("motorcycle_left", "motorcycle_right")
    )
    assert crop_match(left, right)[0] < 0.96


def test_crop_match_scores_a_crop_high_and_a_different_picture_low():
    astro, coffee = skimage.data.astronaut(), skimage.data.coffee()
    view = lambda rgb: MatchView(small_gray(rgb))  # noqa: E731
    score, frac = crop_match(view(astro), view(astro[100:400, 150:350]))
    assert score > 0.97 and abs(frac - 200 / 512) < 0.03  # the crop's width is 200/512 of the picture's
    assert crop_match(view(astro), view(coffee))[0] < 0.9


def test_direct_ncc_equals_opencv_matchtemplate():
    """_ncc_max's direct path (few positions) must give OpenCV's TM_CCOEFF_NORMED maximum."""
    from pipelines.curate.dedup import _ncc_max

    rng = np.random.default_rng(3)
    big = cv2.GaussianBlur((rng.random((48, 64)) * 255).astype(np.float32), (5, 5), 0)
    for th, tw, y, x in [(44, 60, 2, 3), (40, 52, 5, 9), (48, 64, 0, 0)]:
        tpl = big[y : y + th, x : x + tw] * 0.7 + 20 + rng.normal(0, 3, (th, tw)).astype(np.float32)
        want = float(cv2.matchTemplate(big, tpl, cv2.TM_CCOEFF_NORMED).max())
        assert abs(_ncc_max(big, tpl) - want) < 1e-4


# --- prefilter of crop matching (issue 16: thousands of sources) ----------------------------------------------------


def _brute_gate_scores(views: list[MatchView]) -> np.ndarray:
    """crop_candidates' score by definition: best cv2.matchTemplate TM_CCOEFF_NORMED over both directions, whole and
    centre parts, the gate's scale grid, on the 32-px views."""
    from pipelines.curate.dedup import GATE_GRID

    n = len(views)
    score = np.full((n, n), -1.0)
    for i, j in ((i, j) for i in range(n) for j in range(n) if i != j):
        big = views[i].big["t"]
        for f in (f for f in GATE_GRID if f >= 0.3 * GATE_GRID[1]):
            tw = round(f * big.shape[1])
            for which in ("whole", "centre"):
                tpl = views[j].template("t", which, tw) if tw >= 8 else None
                if tpl is not None and tpl.shape[0] <= big.shape[0] and tw <= big.shape[1]:
                    s = float(cv2.matchTemplate(big, tpl, cv2.TM_CCOEFF_NORMED).max())
                    score[i, j] = score[j, i] = max(score[i, j], s)
    return score


def test_crop_candidates_equal_the_brute_force_gate():
    """The batched correlation (windows x templates as one product) gives OpenCV's matchTemplate scores, so the
    kept pairs are exactly those at or above the gate, whatever the gate; and the crops of one picture are kept."""
    from pipelines.curate.dedup import crop_candidates

    astro, coffee, cat = skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()
    pictures = [astro, astro[100:400, 150:350], coffee, coffee[50:350, 100:500], cat, cat[:, 100:300]]
    views = [MatchView(small_gray(p)) for p in pictures]
    score = _brute_gate_scores(views)
    for gate in (0.5, 0.8, 0.95):
        want = sorted((a, b) for a in range(6) for b in range(a + 1, 6) if score[a, b] >= gate + 1e-4)
        got = crop_candidates(views, gate=gate)
        near = {(a, b) for a in range(6) for b in range(a + 1, 6) if abs(score[a, b] - gate) < 1e-4}
        assert set(want) - near <= set(got) <= set(want) | near
    kept = set(crop_candidates(views))
    assert {(0, 1), (2, 3), (4, 5)} <= kept


# --- the batched coarse pass (issue 16: dedup at 1,000+ sources) ----------------------------------------------------


def _forms_corpus() -> tuple[list[DedupItem], dict[str, MatchView]]:
    """Storm in its 8 forms (crop, rescale, colour modes, EXIF turn, re-layout) among 7 other real pictures."""
    sources = {f"storm/{k}": v for k, v in _variants(_load(MATE / "Storm.jpg")).items()}
    others = [MATE / "GreenMeadow.jpg", MATE / "Dune.jpg", SKIMAGE / "chelsea.png", SKIMAGE / "coffee.png"]
    sources |= {p.name: _png(Image.fromarray(_load(p, 512)), format="PNG") for p in others}
    astro = skimage.data.astronaut()
    sources["astro-crop.png"] = _png(Image.fromarray(astro[100:400, 150:350]), format="PNG")
    sources["astro.png"] = _png(Image.fromarray(astro), format="PNG")
    items, views = [], {}
    for name, data in sources.items():
        it, views[name] = _as_curated(name, data)
        items.append(it)
    return items, views


@pytest.mark.skipif(not MATE.exists(), reason="needs the mate-backgrounds Debian package")
def test_screened_crop_match_gives_the_same_answer_for_every_pair():
    """crop_match with the batched coarse pass (coarse_screen) returns exactly what crop_match alone returns, for
    every pair of a corpus with crops, rescales and re-layouts; and the batched scores are matchTemplate's up to
    float rounding, far inside SCREEN_EPS."""
    from pipelines.curate.dedup import _GRID, SCREEN_EPS, WHICH, _ncc_max, coarse_screen

    _, by_name = _forms_corpus()
    views = list(by_name.values())
    pairs = [(a, b) for a in range(len(views)) for b in range(a + 1, len(views))]
    screen = coarse_screen(views, pairs)
    for a, b in pairs:
        coarse = np.stack((screen[a, b], screen[b, a]))
        assert crop_match(views[a], views[b], stop=0.96, coarse=coarse) == crop_match(views[a], views[b], stop=0.96)
    grid = [f for f in _GRID if f >= 0.3]
    worst, scored = 0.0, 0
    for (c, p), scores in list(screen.items())[:40]:
        big = views[c].big["c"]
        for w, which in enumerate(WHICH):
            for k, f in enumerate(grid):
                tpl = views[p].template("c", which, round(f * big.shape[1]))
                if tpl is None or tpl.shape[0] > big.shape[0]:
                    assert scores[w, k] == -np.inf
                else:
                    worst, scored = max(worst, abs(scores[w, k] - _ncc_max(big, tpl))), scored + 1
    assert scored > 1000 and worst < SCREEN_EPS / 20


@pytest.mark.skipif(not MATE.exists(), reason="needs the mate-backgrounds Debian package")
def test_fast_dedup_equals_brute_force_on_planted_copies():
    """Prefilter + screen against every pair compared by crop_match: the same duplicates, reasons and duplicate_of
    on real pictures with planted crops, rescales, colour-mode copies and a re-layout."""
    items, views = _forms_corpus()
    fast = [(d.key, d.reason, d.duplicate_of) for d in find_duplicates(items, 6, views, 0.96)]
    brute = [(d.key, d.reason, d.duplicate_of) for d in find_duplicates(items, 6, views, 0.96, brute_force=True)]
    assert fast == brute
    found = {k for k, _, _ in fast}
    assert "astro-crop.png" in found and "storm/portrait.jpg" in found and len(found) >= 8


class _Templates:
    """A part whose template at each width is given (``_best_over`` only asks ``template(level, which, width)``)."""

    def __init__(self, tpls: dict[int, np.ndarray]):
        self.tpls = tpls

    def template(self, level: str, which: str, tw: int) -> np.ndarray | None:
        return self.tpls.get(tw)


@pytest.mark.parametrize(
    "noise",
    [
        (0.02, 0.035, 0.012, 0.03, 0.025, 0.04, 0.016, 0.028),  # exact scores 1e-4 to 1e-3 apart: close calls
        (0.09, 0.12, 0.012, 0.1, 0.08, 0.11, 0.095, 0.085),  # one width stands out, the others > SCREEN_EPS below
    ],
    ids=["close", "one-clear"],
)
def test_screen_estimates_within_half_eps_never_change_the_answer(noise):
    """_best_over's contract with coarse_screen: estimates off by up to SCREEN_EPS / 2 from the exact scores give the
    width the exact search gives, and the same pass/fail against ``floor``. Real pictures rarely have two widths
    within SCREEN_EPS of each other, so here the part at 8 widths is the container's corner plus noise of a chosen
    level per width (NCC about 1 - level^2 / 2): rescoring only the best estimate, trusting an estimate just below
    ``floor``, or a lone estimate just above it, would give another answer."""
    from pipelines.curate.dedup import _GRID, SCREEN_EPS, _best_over, _ncc_max

    rng = np.random.default_rng(3)
    big = cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 2.0)
    fracs = _GRID[:8]
    tpls = {}
    for f, level in zip(fracs, noise, strict=True):
        tw = round(f * 64)
        tpls[tw] = big[:tw, :tw] + np.float32(level * big.std()) * rng.standard_normal((tw, tw), dtype=np.float32)
    part = _Templates(tpls)
    exact = np.array([_ncc_max(big, tpls[round(f * 64)]) for f in fracs])
    order = np.argsort(-exact)
    assert order[0] == 2  # the least noise
    if max(noise) < 0.05:
        assert exact[order[0]] - exact[order[1]] < SCREEN_EPS / 2 and np.ptp(exact) < SCREEN_EPS
    else:
        assert exact[order[0]] - exact[order[1]] > 2 * SCREEN_EPS
    score, frac = _best_over(big, part, "c", "whole", fracs, 2.0)
    assert frac == fracs[order[0]] and score == exact[order[0]]
    half = 0.49 * SCREEN_EPS
    for j in range(len(fracs)):  # estimates that put width j on top (or keep the best there)
        approx = np.where(np.arange(len(fracs)) == j, exact + half, exact - half)
        got = _best_over(big, part, "c", "whole", fracs, 2.0, approx)
        assert got[1] == frac and abs(got[0] - score) <= SCREEN_EPS / 2, (j, got, frac)
    for floor in (score - 0.2 * SCREEN_EPS, score + 0.2 * SCREEN_EPS):  # the exact best just above / below floor
        for shift in (-half, half):
            got = _best_over(big, part, "c", "whole", fracs, 2.0, exact + shift, floor)
            assert (got[0] >= floor) == (score >= floor), (floor - score, shift, got)
            if score >= floor:
                assert got[1] == frac
    for _ in range(200):  # and any estimates within the bound
        approx = exact + rng.uniform(-half, half, exact.size)
        floor = score + rng.uniform(-2, 2) * SCREEN_EPS
        got = _best_over(big, part, "c", "whole", fracs, 2.0, approx, floor)
        assert (got[0] >= floor) == (score >= floor)
        if score >= floor:
            assert got[1] == frac
