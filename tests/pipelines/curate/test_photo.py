"""Photo-vs-graphic classifier (``pipelines.curate.photo``) on the labelled real set ``photo_labels.csv``.

The set: every raster wallpaper of Debian's mate-backgrounds, gnome-backgrounds, ukui-wallpapers and
lomiri-wallpapers (installed by ``.ci/bootstrap``) plus the sample pictures bundled with scikit-image, scikit-learn
and matplotlib, labelled photo|graphic by looking (doubtful ones carry a note). A labelled file that is missing or
changed fails the test (it does not skip), naming the bootstrap line that installs it.

Precision and recall are measured held out (leave-one-picture-group-out: the regression that scores a picture never
saw it or its other sizes/variants), with the same recipe that produced the shipped coefficients
(``benchmarks/photo_classifier.py``). Per-image table: ``benchmarks/results/photo_classifier.md``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.curate import photo
from pipelines.curate.filters import FilterSettings, judge, measure

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("photo_classifier", ROOT / "benchmarks" / "photo_classifier.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["photo_classifier"] = bench
_spec.loader.exec_module(bench)

THRESHOLD = FilterSettings().min_photo_score
# Held-out figures measured on this set (see the module docstring of benchmarks/photo_classifier.py); the test fails
# when either falls below them. The goal is 0.95 for both; this classifier does not reach it.
MIN_PRECISION = 0.80
MIN_RECALL = 0.80


@pytest.fixture(scope="module")
def labelled() -> tuple[list, np.ndarray, np.ndarray]:
    items = bench.load_labels()
    bad = bench.missing_files(items)
    assert not bad, f"{len(bad)} labelled pictures unavailable, e.g. {bad[:2]}: {bench.BOOTSTRAP_HINT}"
    x = bench.feature_matrix(items)
    y = np.array([it.label == "photo" for it in items], dtype=int)
    return items, x, y


def test_label_file_is_complete_and_balanced(labelled) -> None:
    items, _, y = labelled
    assert {it.label for it in items} == {"photo", "graphic"}
    assert len(items) >= 100 and 40 <= y.sum() <= len(items) - 40
    assert len({it.path for it in items}) == len(items)


def test_held_out_precision_and_recall(labelled) -> None:
    items, x, y = labelled
    held = bench.held_out_scores(x, y, [it.group for it in items])
    p, r = bench.precision_recall(held, y, THRESHOLD)
    assert p >= MIN_PRECISION and r >= MIN_RECALL, f"held-out precision {p:.3f}, recall {r:.3f}"
    # A flipped score would put photos below graphics: the ranking itself must separate the classes.
    photos, graphics = held[y == 1], held[y == 0]
    auc = float((photos[:, None] > graphics[None, :]).mean())
    assert auc >= 0.85, f"held-out AUC {auc:.3f}"


def test_shipped_coefficients_are_the_recipe_on_this_set(labelled) -> None:
    _, x, y = labelled
    mean, scale, coef, b = bench.fit(x, y)
    np.testing.assert_allclose(photo.MEAN, mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(photo.SCALE, scale, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(photo.COEF, coef, rtol=2e-2, atol=2e-2)
    assert abs(photo.INTERCEPT - b) < 2e-2


def test_score_is_continuous_and_in_range(labelled) -> None:
    _, x, _ = labelled
    s = bench.shipped_scores(x)
    assert ((s >= 0) & (s <= 1)).all()
    assert ((s > 0.05) & (s < 0.95)).mean() >= 0.2  # not a 0/1 switch
    assert len(np.unique(np.round(s, 3))) >= len(s) // 2


def test_score_is_consistent_across_crops(labelled) -> None:
    items, _, _ = labelled
    big = [it for it in items if it.package != "scikit-image" and it.package != "matplotlib"][::6]
    spreads = [bench.crop_spread(bench.decode(it)) for it in big]
    assert np.median(spreads) <= 0.15, spreads
    assert max(spreads) <= 0.6, spreads


def test_judge_rejects_graphics_as_not_a_photo(labelled) -> None:
    items, x, y = labelled
    s = bench.shipped_scores(x)
    i = int(np.argmin(np.where(y == 0, s, np.inf)))  # the most graphic-looking graphic
    rgb = bench.decode(items[i])
    scores = measure(rgb)
    assert scores.photo_score == pytest.approx(s[i])
    settings = FilterSettings(
        min_short_side=1,
        min_sharpness=0,
        max_flat_fraction=1,
        min_mean_luma=0,
        max_mean_luma=255,
        max_clip_low=1,
        max_clip_high=1,
        max_effective_scale=1e9,
    )
    rejection = judge(rgb.shape[1], rgb.shape[0], scores, settings)
    assert rejection is not None and rejection.reason == "not_a_photo", rejection
    settings.photos_only = False
    assert judge(rgb.shape[1], rgb.shape[0], scores, settings) is None
