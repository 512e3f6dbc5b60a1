"""Photo-vs-graphic classifier (``pipelines.curate.photo``) on the labelled real set ``photo_labels.csv``.

The set: every raster wallpaper of Debian's mate-backgrounds, gnome-backgrounds, ukui-wallpapers and
lomiri-wallpapers, the largest size of each plasma-workspace-wallpapers picture (installed by ``.ci/bootstrap``),
plus the sample pictures bundled with scikit-image, scikit-learn and matplotlib, labelled photo|graphic by looking
(doubtful ones carry a note). A labelled file that is missing or changed fails the test (it does not skip), naming
the bootstrap line that installs it.

Features of all 142 pictures take minutes to compute on 2 cores, so they are stored in ``photo_features.csv``
(``benchmarks/photo_classifier.py --write-features``); the test recomputes them on a spread of pictures and fails
when the stored rows no longer match the code. Precision and recall are measured held out (leave-one-picture-group-
out), with the recipe that produced the shipped coefficients and its regularisation C.
Per-image table: ``benchmarks/results/photo_classifier.md``.
"""

from __future__ import annotations

import numpy as np
import pytest
from benchfixtures import load_benchmark

from pipelines.curate import photo
from pipelines.curate.filters import FilterSettings, judge, measure

bench = load_benchmark("photo_classifier")

THRESHOLD = FilterSettings().min_photo_score
# Held-out figures measured on this set (benchmarks/results/photo_classifier.md): precision 0.763, recall 0.951. The
# test fails when either falls below these floors. The goal is 0.95 for both; precision does not reach it.
MIN_PRECISION = 0.75
MIN_RECALL = 0.93


@pytest.fixture(scope="module")
def labelled() -> tuple[list, np.ndarray, np.ndarray]:
    items = bench.load_labels()
    bad = bench.missing_files(items)
    assert not bad, f"{len(bad)} labelled pictures unavailable, e.g. {bad[:2]}: {bench.BOOTSTRAP_HINT}"
    x = bench.read_features(items)
    y = np.array([it.label == "photo" for it in items], dtype=int)
    return items, x, y


def test_label_file_is_complete_and_balanced(labelled) -> None:
    items, _, y = labelled
    assert {it.label for it in items} == {"photo", "graphic"}
    assert len(items) >= 140 and 60 <= y.sum() <= len(items) - 60
    assert len({it.path for it in items}) == len(items)


def test_stored_features_are_what_the_code_computes(labelled) -> None:
    items, x, _ = labelled
    for i in range(0, len(items), 24):  # 6 pictures of every source package family
        got = photo.photo_features(bench.decode(items[i]))
        np.testing.assert_allclose([got[k] for k in photo.FEATURES], x[i], rtol=1e-4, atol=5e-3, err_msg=items[i].path)


def test_held_out_precision_and_recall(labelled) -> None:
    items, x, y = labelled
    # C fixed to the shipped one (the benchmark's nested choice of C per fold takes minutes; it picks C=1 in 87 of
    # 123 folds and reports precision 0.763, recall 0.951 held out).
    held = bench.held_out_scores(x, y, [it.group for it in items], c=photo.C)
    p, r = bench.precision_recall(held, y, THRESHOLD)
    assert p >= MIN_PRECISION and r >= MIN_RECALL, f"held-out precision {p:.3f}, recall {r:.3f}"
    # A flipped score would put photos below graphics: the ranking itself must separate the classes.
    photos, graphics = held[y == 1], held[y == 0]
    auc = float((photos[:, None] > graphics[None, :]).mean())
    assert auc >= 0.85, f"held-out AUC {auc:.3f}"


def test_shipped_coefficients_are_the_recipe_on_this_set(labelled) -> None:
    items, x, y = labelled
    mean, scale, coef, b, c = bench.fit(x, y, [it.group for it in items])
    assert c == photo.C
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
    big = [it for it in items if it.package not in bench.PY_ROOTS][::12]
    spreads = [bench.crop_spread(bench.decode(it)) for it in big]
    assert np.median(spreads) <= 0.15, spreads
    assert max(spreads) <= 0.7, spreads  # a half crop can be all sky where another holds the texture


def test_judge_rejects_graphics_as_not_a_photo(labelled) -> None:
    items, x, y = labelled
    s = bench.shipped_scores(x)
    i = int(np.argmin(np.where(y == 0, s, np.inf)))  # the most graphic-looking graphic
    rgb = bench.decode(items[i])
    scores = measure(rgb)
    assert scores.photo_score == pytest.approx(s[i], abs=1e-3)
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
