"""Photo-vs-graphic classifier (``pipelines.curate.photo``) on the labelled real set: per-image table, precision and
recall held out by picture group, and the spread of the score across crops of one picture.

    .venv/bin/python benchmarks/photo_classifier.py                 # table + P/R (held out and shipped)
    .venv/bin/python benchmarks/photo_classifier.py --fit           # also print the coefficients to paste in photo.py
    .venv/bin/python benchmarks/photo_classifier.py --write-features  # refresh tests/.../photo_features.csv
    .venv/bin/python benchmarks/photo_classifier.py --md benchmarks/results/photo_classifier.md
    .venv/bin/python benchmarks/photo_classifier.py --curate /tmp/wallpapers   # sr4k curate over every Debian
        # wallpaper of the set (defaults), then the label of every kept source (~10 min on 2 loaded cores)

The labelled set is ``tests/pipelines/curate/photo_labels.csv``: every raster wallpaper of the Debian packages
mate-backgrounds, gnome-backgrounds, ukui-wallpapers and lomiri-wallpapers, the largest size of each picture of
plasma-workspace-wallpapers (installed by ``.ci/bootstrap``), and the sample pictures bundled with scikit-image,
scikit-learn and matplotlib, each labelled photo|graphic by looking at it (never by a classifier's output).
Pictures are decoded as the curation decodes them (``decode_image``: alpha over white, ICC to sRGB).

Held out: leave-one-group-out cross-validation, where a group is one picture in all its forms (the three Elephants
sizes, a light/dark pair, a stereo pair), so no copy of a test picture is in its training fold. The regression is
scikit-learn's LogisticRegression (L2, balanced classes) on standardised features, its C chosen from C_GRID by
5-fold group cross-validation on the training fold only (nested), so the held-out figures include that choice.
The features of every labelled picture are stored in ``tests/pipelines/curate/photo_features.csv`` (written by
``--write-features``) so the test needs no decoding of 142 pictures; the test recomputes a few and compares.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipelines.curate import photo  # noqa: E402
from pipelines.curate.decode import decode_image  # noqa: E402

LABELS = ROOT / "tests" / "pipelines" / "curate" / "photo_labels.csv"
FEATURES_CSV = LABELS.with_name("photo_features.csv")
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
BOOTSTRAP_HINT = (
    "run `bash .ci/bootstrap` as root (its apt_packages line installs mate-backgrounds gnome-backgrounds "
    "ukui-wallpapers lomiri-wallpapers plasma-workspace-wallpapers) and install the dev extras "
    "(pip install -e '.[dev]')"
)
PY_ROOTS = {"scikit-image": "skimage", "scikit-learn": "sklearn", "matplotlib": "matplotlib"}


@dataclass(slots=True)
class Labelled:
    package: str
    path: str  # relative to / for a Debian package, to site-packages for a Python one
    sha256: str
    label: str  # photo | graphic
    group: str  # one picture in all its forms
    note: str

    def display_name(self) -> str:
        """The file name; a Plasma wallpaper's (``<Name>/contents/images/<size>.jpg``) with its picture's name."""
        parts = self.path.split("/")
        return f"{parts[-4]}/{parts[-2]}/{parts[-1]}" if "contents" in parts else parts[-1]

    def location(self) -> Path:
        if self.package in PY_ROOTS:
            spec = find_spec(PY_ROOTS[self.package])
            if spec is None or not spec.submodule_search_locations:
                return Path("/nonexistent") / self.path
            return Path(next(iter(spec.submodule_search_locations))).parent / self.path
        return Path("/") / self.path


def load_labels(path: Path = LABELS) -> list[Labelled]:
    with path.open(newline="") as fh:
        return [Labelled(**row) for row in csv.DictReader(fh)]


def missing_files(items: list[Labelled]) -> list[str]:
    """Labelled files that are absent or differ from the labelled bytes (sha256)."""
    bad = []
    for it in items:
        p = it.location()
        if not p.is_file():
            bad.append(f"{it.package}: {p} missing")
        elif hashlib.sha256(p.read_bytes()).hexdigest() != it.sha256:
            bad.append(f"{it.package}: {p} differs from the labelled file (sha256)")
    return bad


def decode(it: Labelled) -> np.ndarray:
    p = it.location()
    dec = decode_image(p.read_bytes(), p.name)
    if not hasattr(dec, "rgb"):
        raise RuntimeError(f"{p}: the curation's decoder rejects it ({dec})")
    return dec.rgb


def feature_matrix(items: list[Labelled]) -> np.ndarray:
    rows = []
    for it in items:
        f = photo.photo_features(decode(it))
        rows.append([f[k] for k in photo.FEATURES])
    return np.asarray(rows, dtype=np.float64)


def standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(x - mean) / scale, NaN (no evidence) read as the mean, as Regression.score reads it."""
    return np.nan_to_num((x - mean) / scale, nan=0.0)


def fit(
    x: np.ndarray, y: np.ndarray, groups: list[str] | np.ndarray, c: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(mean, scale, coef, intercept, C) of the recipe photo.py's coefficients come from; C (None: chosen from
    C_GRID by 5-fold group cross-validation on the log-loss, on these rows only)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, GroupKFold

    mean, scale = np.nanmean(x, axis=0), np.nanstd(x, axis=0) + 1e-12
    z = standardise(x, mean, scale)
    model = LogisticRegression(class_weight="balanced", max_iter=5000)
    if c is None:
        n_splits = min(5, len(set(groups)))
        search = GridSearchCV(model, {"C": list(C_GRID)}, cv=GroupKFold(n_splits), scoring="neg_log_loss")
        c = float(search.fit(z, y, groups=np.asarray(groups)).best_params_["C"])
    model.set_params(C=c).fit(z, y)
    return mean, scale, model.coef_[0], float(model.intercept_[0]), c


def held_out_scores(x: np.ndarray, y: np.ndarray, groups: list[str], c: float | None = None) -> np.ndarray:
    """Leave-one-group-out: each picture group is scored by a model fitted without it, C chosen inside the training
    fold (nested; minutes on 2 cores) or fixed to ``c``."""
    g = np.asarray(groups)
    out = np.zeros(len(y))
    for grp in np.unique(g):
        te = g == grp
        mean, scale, coef, b, _ = fit(x[~te], y[~te], g[~te], c)
        out[te] = 1.0 / (1.0 + np.exp(-(standardise(x[te], mean, scale) @ coef + b)))
    return out


def write_features(items: list[Labelled], x: np.ndarray, path: Path = FEATURES_CSV) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["sha256", *photo.FEATURES])
        for it, row in zip(items, x, strict=True):
            w.writerow([it.sha256, *(repr(float(v)) for v in row)])


def read_features(items: list[Labelled], path: Path = FEATURES_CSV) -> np.ndarray:
    """The stored feature rows of ``items`` (KeyError names a picture whose features were not written)."""
    with path.open(newline="") as fh:
        rd = csv.reader(fh)
        header = next(rd)
        if tuple(header[1:]) != photo.FEATURES:
            raise ValueError(f"{path}: columns {header[1:]} are not photo.FEATURES; rerun with --write-features")
        rows = {r[0]: [float(v) for v in r[1:]] for r in rd}
    return np.asarray([rows[it.sha256] for it in items], dtype=np.float64)


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Share of (photo, graphic) pairs the score ranks right (ties count half)."""
    p, g = scores[y == 1][:, None], scores[y == 0][None, :]
    return float((p > g).mean() + 0.5 * (p == g).mean())


def shipped_scores(x: np.ndarray) -> np.ndarray:
    return np.array([photo.photo_score(dict(zip(photo.FEATURES, row, strict=True))) for row in x])


def precision_recall(scores: np.ndarray, y: np.ndarray, threshold: float) -> tuple[float, float]:
    d = scores >= threshold
    tp = int((d & (y == 1)).sum())
    return tp / max(int(d.sum()), 1), tp / max(int((y == 1).sum()), 1)


def crop_spread(rgb: np.ndarray) -> float:
    """max - min of the shipped score over the four corner crops of half the width and height and the centre one."""
    h, w = rgb.shape[:2]
    ch, cw = h // 2, w // 2
    corners = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
    s = [
        photo.photo_score(photo.photo_features(np.ascontiguousarray(rgb[y : y + ch, x : x + cw]))) for y, x in corners
    ]
    return float(max(s) - min(s))


def curate_wallpapers(folder: Path) -> None:
    """Copy every labelled Debian wallpaper to ``folder/in/<package>/``, run ``sr4k curate`` on it with the default
    settings into ``folder/ws``, and print what was kept, with its label."""
    import shutil
    import subprocess

    import duckdb

    items = [it for it in load_labels() if it.package not in PY_ROOTS]
    src, ws = folder / "in", folder / "ws"
    for it in items:
        (src / it.package).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(it.location(), src / it.package / f"{it.group}-{Path(it.path).name}")
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "flows.cli", "curate", "-i", str(src), "-o", str(ws), "--quiet"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    label = {it.sha256: it for it in items}
    con = duckdb.connect()
    kept = con.execute(f"select distinct source_sha256 from read_parquet('{ws}/tables/samples/*.parquet')").fetchall()
    rows = con.execute(
        f"select reason, count(*) from read_parquet('{ws}/tables/rejects/*.parquet') group by 1 order by 2 desc"
    ).fetchall()
    print(f"curated {len(items)} wallpapers in {time.perf_counter() - t0:.0f} s: kept {len(kept)}; rejected {rows}")
    for (sha,) in kept:
        it = label[sha]
        print(f"  kept {it.path}: labelled {it.label}")
    graphics = [label[sha] for (sha,) in kept if label[sha].label != "photo"]
    print(f"kept graphics: {len(graphics)}")


MD_HEAD = """# Photo-vs-graphic classifier on the labelled real set

Output of `benchmarks/photo_classifier.py --md` (pipelines/curate/photo.py, {version}). "held-out score": the score
from a regression fitted without the picture's group (its C chosen by 5-fold group cross-validation inside that
training fold); "shipped score": the coefficients in photo.py (fitted on all); "decision" uses the shipped score at
`filters.min_photo_score` = {threshold} (✗ = disagrees with the label); "crop spread": max - min of the shipped score
over the four corner crops of half the width and height and the centre one. The held-out line is the one to quote;
the shipped line is optimistic (fitted on the pictures it scores). The sections after the table are written by hand
and kept by `--md`.
"""


def write_md(path: Path, summary: list[str], lines: list[str]) -> None:
    """The generated head, summary and table, then the hand-written ``## `` sections of the file already there."""
    from pipelines.curate.filters import FilterSettings

    kept = ""
    if path.is_file():
        old = path.read_text()
        at = old.find("\n## ")
        kept = old[at:] if at >= 0 else ""
    head = MD_HEAD.format(version=photo.PHOTO_VERSION, threshold=FilterSettings().min_photo_score)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "\n" + "\n".join(f"- {s}" for s in summary) + "\n\n" + "\n".join(lines) + "\n" + kept)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", action="store_true", help="print coefficients fitted on the whole set for photo.py")
    ap.add_argument("--md", type=Path, help="also write the table as markdown here")
    ap.add_argument("--no-crops", action="store_true", help="skip the crop-spread measurement")
    ap.add_argument("--curate", type=Path, help="curate every Debian wallpaper of the set in this (new) folder")
    ap.add_argument("--write-features", action="store_true", help=f"store the features in {FEATURES_CSV.name}")
    args = ap.parse_args()
    if args.curate:
        curate_wallpapers(args.curate)
        return
    from pipelines.curate.filters import FilterSettings

    threshold = FilterSettings().min_photo_score
    items = load_labels()
    bad = missing_files(items)
    if bad:
        sys.exit("error: " + "; ".join(bad[:3]) + f" ({len(bad)} in all); {BOOTSTRAP_HINT}")
    t0 = time.perf_counter()
    x = feature_matrix(items)
    t_feat = time.perf_counter() - t0
    y = np.array([it.label == "photo" for it in items], dtype=int)
    groups = [it.group for it in items]
    if args.write_features:
        write_features(items, x)
    held = held_out_scores(x, y, groups)
    held2 = held_out_scores(x[:, : len(photo.BASE_FEATURES)], y, groups)  # photo/2: without the learned prior
    shipped = shipped_scores(x)
    spreads = [None] * len(items)
    if not args.no_crops:
        spreads = [crop_spread(decode(it)) for it in items]
    lines = [
        "| file | package | label | held-out score | shipped score | decision | crop spread |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, it in enumerate(items):
        dec = "photo" if shipped[i] >= threshold else "graphic"
        mark = "" if dec == it.label else " ✗"
        sp = "" if spreads[i] is None else f"{spreads[i]:.2f}"
        lines.append(
            f"| {it.display_name()} | {it.package} | {it.label} | {held[i]:.2f} | {shipped[i]:.2f} "
            f"| {dec}{mark} | {sp} |"
        )
    ph, rh = precision_recall(held, y, threshold)
    ph2, rh2 = precision_recall(held2, y, threshold)
    ps, rs = precision_recall(shipped, y, threshold)
    summary = [
        f"{len(items)} pictures ({int(y.sum())} photo, {int(len(y) - y.sum())} graphic), "
        f"{len(set(it.group for it in items))} groups; threshold {threshold}",
        f"held out (leave-one-group-out), {photo.PHOTO3.version}: precision {ph:.3f}, recall {rh:.3f}, "
        f"AUC {auc(held, y):.3f}",
        f"held out, {photo.PHOTO2.version} (photo_prior: false): precision {ph2:.3f}, recall {rh2:.3f}, "
        f"AUC {auc(held2, y):.3f}",
        f"shipped coefficients (fitted on all): precision {ps:.3f}, recall {rs:.3f}",
        f"features: {t_feat / len(items) * 1e3:.0f} ms per picture",
    ]
    if not args.no_crops:
        sp = np.array(spreads)
        summary.append(
            f"crop spread (max-min over 5 half-size crops): median {np.median(sp):.3f}, p90 "
            f"{np.percentile(sp, 90):.3f}, max {sp.max():.3f}"
        )
    print("\n".join(lines))
    print("\n".join(summary))
    if args.fit:
        r = lambda v: "(" + ", ".join(f"{float(a):.6g}" for a in v) + ")"  # noqa: E731
        for reg in (photo.PHOTO3, photo.PHOTO2):
            mean, scale, coef, b, c = fit(x[:, : len(reg.features)], y, groups)
            print(f"{reg.version}: c={c}, mean={r(mean)}, scale={r(scale)}, coef={r(coef)}, intercept={b:.6g}")
    if args.md:
        write_md(args.md, summary, lines)


if __name__ == "__main__":
    main()
