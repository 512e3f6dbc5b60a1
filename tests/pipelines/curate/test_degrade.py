"""Tests of curate.degrade: shapes, determinism, parameter statistics, kernel maths, noise and sanity of the LR."""

from __future__ import annotations

import dataclasses
import json
import math

import cv2
import numpy as np
import pytest

from pipelines.curate.degrade import DEGRADE_VERSION, DegradeSettings, degrade, sample_params, seed_for
from pipelines.curate.degrade_kernels import build_kernel as _build_kernel
from pipelines.curate.degrade_noise import poisson_counts as _poisson_counts

DEFAULTS = DegradeSettings()
N_DRAWS = 4000


def _scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A small "real-ish" RGB image: flat regions, hard edges, thin lines."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = (90, 120, 150)
    for _ in range(40):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            x1, y1 = x0 + int(rng.integers(4, width // 3)), y0 + int(rng.integers(4, height // 3))
            cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
        else:
            cv2.circle(img, (x0, y0), int(rng.integers(3, width // 6)), colour, -1)
    for x in range(0, width, 8):
        cv2.line(img, (x, 0), (x, height // 4), (255, 255, 255), 1)
    return img


@pytest.fixture(scope="module")
def draws() -> list[dict]:
    return [sample_params(np.random.Generator(np.random.PCG64(i)), DEFAULTS) for i in range(N_DRAWS)]


def _check_freq(count: int, n: int, p: float, what: str) -> None:
    """Binomial frequency within 4 standard errors of ``p``."""
    if p in (0.0, 1.0):
        assert count == round(p * n), what
        return
    se = math.sqrt(p * (1 - p) / n)
    assert abs(count / n - p) <= 4 * se, f"{what}: {count}/{n} vs p={p}"


# ----------------------------------------------------------------------------------------------------------------- #
# Shapes, determinism, seeds, serialisation
# ----------------------------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("shape", [(64, 64), (64, 128), (96, 64)])
def test_lr_shape_and_dtype(scale: int, shape: tuple[int, int]) -> None:
    hr = _scene(*shape)
    for seed in range(6):  # several seeds so up/down/keep, both final orders and both noises all occur
        lr, params = degrade(hr, scale, seed)
        assert lr.shape == (shape[0] // scale, shape[1] // scale, 3)
        assert lr.dtype == np.uint8
        assert params["scale"] == scale and params["seed"] == seed and params["version"] == DEGRADE_VERSION


def test_same_seed_same_bytes_and_params() -> None:
    hr = _scene(64, 96)
    for seed in (0, 7, seed_for("some/key.png")):
        lr_a, params_a = degrade(hr, 4, seed)
        lr_b, params_b = degrade(hr.copy(), 4, seed)
        assert lr_a.tobytes() == lr_b.tobytes()
        assert params_a == params_b
    # A strided view (a crop of a larger image, mirrored) gives the same bytes as its contiguous copy.
    big = _scene(80, 120, seed=3)
    view = big[8:72, 100:4:-1]
    assert degrade(view, 4, 5)[0].tobytes() == degrade(np.ascontiguousarray(view), 4, 5)[0].tobytes()


def test_different_seed_different_lr() -> None:
    hr = _scene(64, 64)
    lrs = [degrade(hr, 2, seed)[0].tobytes() for seed in range(5)]
    assert len(set(lrs)) == len(lrs)


def test_lr_does_not_depend_on_opencv_thread_count() -> None:
    hr = _scene(96, 96)
    expected = [degrade(hr, 4, seed)[0] for seed in range(4)]
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        single = [degrade(hr, 4, seed)[0] for seed in range(4)]
    finally:
        cv2.setNumThreads(threads)
    assert all(np.array_equal(a, b) for a, b in zip(expected, single, strict=True))


def test_seed_for_is_stable_and_distinct() -> None:
    assert seed_for("img/0001.png#0") == seed_for("img/0001.png#0")
    assert seed_for("abc") == 6325760536001020463  # pinned: a change would silently re-seed every stored sample
    assert seed_for("abc") != seed_for("abd")
    assert seed_for("abc") != seed_for("abc", base_seed=1)
    seeds = [seed_for(f"key{i}") for i in range(1000)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)


def _plain(value: object) -> bool:
    """JSON-native Python values only (numpy scalars would fail json.dumps or lose their type)."""
    if isinstance(value, dict):
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_params_are_json_serialisable() -> None:
    hr = _scene(64, 64)
    for seed in range(8):
        _, params = degrade(hr, 4, seed)
        assert _plain(params)
        assert json.loads(json.dumps(params)) == params


def test_settings_defaults_and_validation() -> None:
    s = DegradeSettings()
    hash(s)  # frozen -> hashable
    # Spot-check against Real-ESRGAN options/train_realesrgan_x4plus.yml.
    assert s.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03) and s.sinc_prob == s.sinc_prob2 == 0.1
    assert s.blur_sigma == (0.2, 3.0) and s.blur_sigma2 == (0.2, 1.5) and s.final_sinc_prob == 0.8
    assert s.resize_prob == (0.2, 0.7, 0.1) and s.resize_range == (0.15, 1.5)
    assert s.resize_prob2 == (0.3, 0.4, 0.3) and s.resize_range2 == (0.3, 1.2)
    assert s.noise_range == (1.0, 30.0) and s.noise_range2 == (1.0, 25.0) and s.second_blur_prob == 0.8
    assert s.poisson_scale_range == (0.05, 3.0) and s.poisson_scale_range2 == (0.05, 2.5)
    assert s.jpeg_range == s.jpeg_range2 == (30, 95) and s.kernel_range == tuple(range(7, 22, 2))
    with pytest.raises(ValueError):
        DegradeSettings(kernel_range=(7, 8))
    with pytest.raises(ValueError):
        DegradeSettings(betag_range=(1.5, 4.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.sinc_prob = 0.5  # type: ignore[misc]


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        degrade(np.zeros((64, 66, 3), np.uint8), 4, 0)
    with pytest.raises(ValueError):
        degrade(np.zeros((64, 64, 3), np.float32), 4, 0)
    with pytest.raises(ValueError):
        degrade(np.zeros((64, 64), np.uint8), 2, 0)


# ----------------------------------------------------------------------------------------------------------------- #
# Statistics of sample_params
# ----------------------------------------------------------------------------------------------------------------- #


def _check_kernel_stats(kernels: list[dict], names, probs, sinc_prob, sigma, betag, betap, sizes) -> None:
    n = len(kernels)
    types = [k["type"] for k in kernels]
    _check_freq(types.count("sinc"), n, sinc_prob, "sinc")
    total = sum(probs)
    for name, p in zip(names, probs, strict=True):
        _check_freq(types.count(name), n, (1 - sinc_prob) * p / total, name)
    for size in sizes:
        _check_freq(sum(k["size"] == size for k in kernels), n, 1 / len(sizes), f"size {size}")
    for k in kernels:
        assert k["size"] in sizes and k["size"] % 2 == 1
        if k["type"] == "sinc":
            low = math.pi / 3 if k["size"] < 13 else math.pi / 5
            assert low <= k["omega_c"] <= math.pi
            continue
        assert sigma[0] <= k["sigma_x"] <= sigma[1] and sigma[0] <= k["sigma_y"] <= sigma[1]
        assert -math.pi <= k["theta"] <= math.pi
        if not k["type"].endswith("aniso"):
            assert k["sigma_y"] == k["sigma_x"] and k["theta"] == 0.0
        if k["type"].startswith("generalized"):
            assert betag[0] <= k["beta"] <= betag[1]
        elif k["type"].startswith("plateau"):
            assert betap[0] <= k["beta"] <= betap[1]
        else:
            assert "beta" not in k


def test_kernel_statistics(draws: list[dict]) -> None:
    s = DEFAULTS
    sizes = s.kernel_range
    first = [d["blur1"] for d in draws]
    _check_kernel_stats(
        first, s.kernel_list, s.kernel_prob, s.sinc_prob, s.blur_sigma, s.betag_range, s.betap_range, sizes
    )
    second = [d["blur2"] for d in draws if d["blur2"] is not None]
    _check_freq(len(second), N_DRAWS, s.second_blur_prob, "second blur")
    _check_kernel_stats(
        second, s.kernel_list2, s.kernel_prob2, s.sinc_prob2, s.blur_sigma2, s.betag_range2, s.betap_range2, sizes
    )
    # Generalized-Gaussian betas: half from [lo, 1], half from [1, hi] (BasicSR).
    betas = [d["blur1"]["beta"] for d in draws if d["blur1"]["type"].startswith("generalized")]
    _check_freq(sum(b < 1 for b in betas), len(betas), 0.5, "beta < 1")
    # Final sinc: probability, cutoff in [pi/3, pi] whatever the size.
    sincs = [d["final"]["sinc"] for d in draws if d["final"]["sinc"] is not None]
    _check_freq(len(sincs), N_DRAWS, s.final_sinc_prob, "final sinc")
    assert all(math.pi / 3 <= k["omega_c"] <= math.pi and k["size"] in sizes for k in sincs)
    for size in sizes:
        _check_freq(sum(k["size"] == size for k in sincs), len(sincs), 1 / len(sizes), f"final sinc size {size}")


@pytest.mark.parametrize("stage", [1, 2])
def test_resize_noise_jpeg_statistics(draws: list[dict], stage: int) -> None:
    s = DEFAULTS
    sfx = "" if stage == 1 else "2"
    resize_prob, (lo, hi) = getattr(s, f"resize_prob{sfx}"), getattr(s, f"resize_range{sfx}")
    resizes = [d[f"resize{stage}"] for d in draws]
    for updown, p in zip(("up", "down", "keep"), resize_prob, strict=True):
        _check_freq(sum(r["updown"] == updown for r in resizes), N_DRAWS, p / sum(resize_prob), updown)
    for mode in ("area", "bilinear", "bicubic"):
        _check_freq(sum(r["mode"] == mode for r in resizes), N_DRAWS, 1 / 3, mode)
    for r in resizes:
        bounds = {"up": (1.0, hi), "down": (lo, 1.0), "keep": (1.0, 1.0)}[r["updown"]]
        assert bounds[0] <= r["scale"] <= bounds[1]

    noises = [d[f"noise{stage}"] for d in draws]
    gauss = [n for n in noises if n["kind"] == "gaussian"]
    _check_freq(len(gauss), N_DRAWS, getattr(s, f"gaussian_noise_prob{sfx}"), "gaussian noise")
    _check_freq(sum(n["gray"] for n in noises), N_DRAWS, getattr(s, f"gray_noise_prob{sfx}"), "gray noise")
    sigma, pscale = getattr(s, f"noise_range{sfx}"), getattr(s, f"poisson_scale_range{sfx}")
    assert all(sigma[0] <= n["sigma"] <= sigma[1] for n in gauss)
    assert all(pscale[0] <= n["scale"] <= pscale[1] for n in noises if n["kind"] == "poisson")

    jpeg_lo, jpeg_hi = getattr(s, f"jpeg_range{sfx}")
    qualities = [d["jpeg1"]["quality"] if stage == 1 else d["final"]["quality"] for d in draws]
    assert all(type(q) is int and jpeg_lo <= q <= jpeg_hi for q in qualities)
    assert min(qualities) == jpeg_lo and max(qualities) == jpeg_hi  # inclusive integer range


def test_final_stage_statistics(draws: list[dict]) -> None:
    orders = [d["final"]["order"] for d in draws]
    assert set(orders) == {"resize_sinc_jpeg", "jpeg_resize_sinc"}
    _check_freq(orders.count("resize_sinc_jpeg"), N_DRAWS, 0.5, "final order")
    for mode in ("area", "bilinear", "bicubic"):
        _check_freq(sum(d["final"]["mode"] == mode for d in draws), N_DRAWS, 1 / 3, f"final {mode}")


# ----------------------------------------------------------------------------------------------------------------- #
# Kernels
# ----------------------------------------------------------------------------------------------------------------- #

KERNEL_SPECS = [
    {"type": "iso", "size": 7, "sigma_x": 1.3, "sigma_y": 1.3, "theta": 0.0},
    {"type": "aniso", "size": 21, "sigma_x": 3.0, "sigma_y": 0.7, "theta": 0.6},
    {"type": "generalized_iso", "size": 11, "sigma_x": 1.1, "sigma_y": 1.1, "theta": 0.0, "beta": 0.6},
    {"type": "generalized_aniso", "size": 15, "sigma_x": 2.0, "sigma_y": 0.9, "theta": -1.2, "beta": 3.5},
    {"type": "plateau_iso", "size": 9, "sigma_x": 1.5, "sigma_y": 1.5, "theta": 0.0, "beta": 1.0},
    {"type": "plateau_aniso", "size": 19, "sigma_x": 0.4, "sigma_y": 2.6, "theta": 2.9, "beta": 1.7},
    {"type": "sinc", "size": 13, "omega_c": 1.0},
    {"type": "sinc", "size": 7, "omega_c": 2.5},
]


@pytest.mark.parametrize("spec", KERNEL_SPECS, ids=lambda s: f"{s['type']}-{s['size']}")
def test_kernel_normalised_odd_and_symmetric(spec: dict) -> None:
    kernel = _build_kernel(spec)
    assert kernel.shape == (spec["size"], spec["size"])
    assert abs(kernel.sum() - 1.0) < 1e-12
    assert np.allclose(kernel, kernel[::-1, ::-1])  # point-symmetric, so correlation == convolution
    if spec["type"] != "sinc":
        assert kernel.min() >= 0  # exp(-q^beta / 2) can underflow to 0 in the corners for large beta
        assert kernel.argmax() == kernel.size // 2


@pytest.mark.parametrize(("size", "sigma"), [(7, 0.2), (13, 1.7), (21, 3.0)])
def test_iso_gaussian_matches_opencv(size: int, sigma: float) -> None:
    g = cv2.getGaussianKernel(size, sigma)
    kernel = _build_kernel({"type": "iso", "size": size, "sigma_x": sigma, "sigma_y": sigma, "theta": 0.0})
    np.testing.assert_allclose(kernel, g @ g.T, atol=1e-6, rtol=0)


def test_aniso_axes_and_rotation() -> None:
    # theta = 0: sigma_x acts along columns (x), sigma_y along rows (y), so the kernel is separable.
    spec = {"type": "aniso", "size": 15, "sigma_x": 2.5, "sigma_y": 0.8, "theta": 0.0}
    gx, gy = cv2.getGaussianKernel(15, 2.5), cv2.getGaussianKernel(15, 0.8)
    np.testing.assert_allclose(_build_kernel(spec), gy @ gx.T, atol=1e-6, rtol=0)
    # Rotating by pi/2 swaps the axes: Sigma = R diag(sx^2, sy^2) R^T.
    rotated = _build_kernel({**spec, "theta": math.pi / 2})
    np.testing.assert_allclose(rotated, _build_kernel(spec).T, atol=1e-12)


def test_generalized_and_plateau_formulas() -> None:
    base = {"size": 9, "sigma_x": 1.4, "sigma_y": 1.4, "theta": 0.0}
    gauss = _build_kernel({**base, "type": "iso"})
    np.testing.assert_allclose(_build_kernel({**base, "type": "generalized_iso", "beta": 1.0}), gauss, atol=1e-12)
    # One pixel right of the centre q = 1 / sigma^2: generalized exp(-q^b / 2), plateau 1 / (1 + q^b).
    q, beta, c = 1 / 1.4**2, 1.8, 4
    gen = _build_kernel({**base, "type": "generalized_iso", "beta": beta})
    assert gen[c, c + 1] / gen[c, c] == pytest.approx(math.exp(-0.5 * q**beta))
    plateau = _build_kernel({**base, "type": "plateau_iso", "beta": beta})
    assert plateau[c, c + 1] / plateau[c, c] == pytest.approx(1 / (1 + q**beta))  # centre value 1 / (1 + 0)


def test_aniso_matches_explicit_covariance() -> None:
    # Independent evaluation of exp(-p^T Sigma^-1 p / 2) with Sigma = U diag(sx^2, sy^2) U^T, U = [[c, -s], [s, c]]
    # and p = (x, y), x along columns (BasicSR sigma_matrix2 / mesh_grid / pdf2).
    size, sx, sy, theta = 13, 2.2, 0.9, 0.6
    u = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    inv = np.linalg.inv(u @ np.diag([sx**2, sy**2]) @ u.T)
    expected = np.empty((size, size))
    for row in range(size):
        for col in range(size):
            p = np.array([col - size // 2, row - size // 2], dtype=np.float64)
            expected[row, col] = math.exp(-0.5 * p @ inv @ p)
    expected /= expected.sum()
    kernel = _build_kernel({"type": "aniso", "size": size, "sigma_x": sx, "sigma_y": sy, "theta": theta})
    np.testing.assert_allclose(kernel, expected, atol=1e-12)


@pytest.mark.parametrize(
    ("size", "omega_c"), [(7, math.pi / 3), (11, math.pi / 2), (13, math.pi / 5), (21, math.pi / 5), (21, 2.0)]
)
def test_sinc_is_low_pass(size: int, omega_c: float) -> None:
    kernel = _build_kernel({"type": "sinc", "size": size, "omega_c": omega_c})
    n = 256
    freqs = np.fft.fftfreq(n) * 2 * np.pi
    wx, wy = np.meshgrid(freqs, freqs)
    radius = np.hypot(wx, wy)
    power = np.abs(np.fft.fft2(kernel, (n, n))) ** 2
    below = power[radius <= omega_c].sum()
    assert power[0, 0] == pytest.approx(1.0)  # unit DC gain
    assert power[radius > omega_c].sum() < 0.1 * below
    assert power[radius >= 1.25 * omega_c].sum() < 0.05 * below


# ----------------------------------------------------------------------------------------------------------------- #
# Noise and image-level sanity
# ----------------------------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("vals", [1, 32, 256])
def test_poisson_sampler_matches_poisson(vals: int) -> None:
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, size=400_000).astype(np.uint8)
    counts = _poisson_counts(levels, vals, np.random.Generator(np.random.PCG64(1)))
    for level in (0, 1, 40, 128, 255):
        k = counts[levels == level]
        lam = level * vals / 255
        se = math.sqrt(lam / k.size) if lam else 0.0
        assert abs(k.mean() - lam) <= 4 * se + 1e-12, (level, k.mean(), lam)
        if lam >= 1:
            assert k.var() == pytest.approx(lam, rel=0.1)
    # Full distribution at one rate: empirical pmf vs the Poisson pmf.
    k = counts[levels == 200]
    lam = 200 * vals / 255
    pmf = np.bincount(k, minlength=k.max() + 1) / k.size
    expected = np.array([math.exp(-lam + j * math.log(lam) - math.lgamma(j + 1)) for j in range(pmf.size)])
    assert np.abs(pmf - expected).max() < 0.02


def _uniforms_u32(seed: int, n: int) -> np.ndarray:
    """The 32-bit uniforms poisson_counts draws: the two halves of each 64-bit PCG64 output, in order."""
    return np.random.Generator(np.random.PCG64(seed)).bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n]


@pytest.mark.parametrize("vals", [1, 4, 32, 256])
def test_poisson_counts_are_the_slow_inversion(vals: int) -> None:
    """The reference: k = min{k : F(k) >= U}, U = (u + 0.5) / 2**32, with F from scipy's Poisson CDF and a plain
    search per draw, on the same uniforms. Equal draws for every level: the guide table and the bisection change
    the cost, not a single count (an off-by-one bin or a '<' for '<=' would show here)."""
    from scipy import stats

    levels = np.random.default_rng(vals).integers(0, 256, size=30_000).astype(np.uint8)
    levels[:256] = np.arange(256)  # every level at least once
    counts = _poisson_counts(levels, vals, np.random.Generator(np.random.PCG64(11)))
    uniforms = (_uniforms_u32(11, levels.size).astype(np.float64) + 0.5) / 2**32
    support = np.arange(vals + 12 * math.isqrt(vals) + 40)
    cdf = stats.poisson.cdf(support[None, :], (np.arange(256) * vals / 255)[:, None])
    expected = [int(np.searchsorted(cdf[lev], u, side="left")) for lev, u in zip(levels, uniforms, strict=True)]
    assert counts.tolist() == expected


@pytest.mark.parametrize(("level", "vals"), [(255, 1), (40, 32), (3, 256), (200, 256)])
def test_poisson_counts_match_numpy_poisson(level: int, vals: int) -> None:
    """Distribution check against the field's sampler: 200k draws vs 200k of ``Generator.poisson`` at the same
    rate, chi-square test of homogeneity over the bins with enough mass (a rate off by one level, i.e. lam off by
    vals/255, or a shifted count fails it by far); and a goodness-of-fit against the Poisson pmf itself."""
    from scipy import stats

    lam = level * vals / 255
    ours = _poisson_counts(np.full(200_000, level, np.uint8), vals, np.random.Generator(np.random.PCG64(3)))
    theirs = np.random.Generator(np.random.PCG64(4)).poisson(lam, 200_000)
    top = int(stats.poisson.ppf(1 - 1e-4, lam))
    bins = np.arange(top + 2)
    a, b = np.histogram(np.minimum(ours, top), bins)[0], np.histogram(np.minimum(theirs, top), bins)[0]
    keep = (a + b) >= 20
    assert stats.chi2_contingency(np.stack([a[keep], b[keep]]))[1] > 1e-3
    pmf = stats.poisson.pmf(bins[:-1], lam)
    pmf[-1] = stats.poisson.sf(top - 1, lam)  # the last bin holds the tail
    keep = pmf * ours.size >= 10
    observed, expected = a[keep], pmf[keep] * ours.size
    expected *= observed.sum() / expected.sum()
    assert stats.chisquare(observed, expected)[1] > 1e-3


@pytest.mark.parametrize("gray", [False, True])
@pytest.mark.parametrize("n_levels", [None, 128])
def test_poisson_noise_is_basicsr_formula(gray: bool, n_levels: int | None) -> None:
    """add_poisson_noise == generate_poisson_noise_pt written out: 8-bit levels of the image (or its luma), vals =
    2**ceil(log2(#levels)), noise = (Poisson(l * vals / 255) / vals - l / 255) * scale on the unrounded image, then
    clamp; the counts drawn with the same generator in one call (rows of even element count, so block-wise draws
    consume the same 64-bit words). ``n_levels=128``: a grey image of exactly 128 levels, where vals is 128 (a count
    off by one would give 256)."""
    from pipelines.curate.degrade_noise import add_poisson_noise

    rng = np.random.default_rng(8)
    if n_levels is None:
        img = rng.random((1500, 64, 3), dtype=np.float32) * 0.6 + 0.2  # 3 blocks of rows
    else:  # even levels 2..254 (+ level 0 from the overshoot below), off the rounding boundaries, R = G = B
        lv = rng.integers(1, n_levels, (1500, 64, 1)) * 2 + rng.uniform(-0.3, 0.3, (1500, 64, 1))
        img = (lv / 255).astype(np.float32).repeat(3, axis=2)
    img[::97, ::5] = -0.004  # a bicubic overshoot below 0: level 0, not a mirrored level 1
    ours = img.copy()
    add_poisson_noise(ours, 1.7, gray, np.random.Generator(np.random.PCG64(9)))
    src = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None] if gray else img
    levels = np.clip(np.rint(src * np.float32(255)), 0, 255).astype(np.uint8)  # float32, as torch's (img * 255)
    vals = 2 ** math.ceil(math.log2(len(np.unique(levels))))
    assert n_levels is None or (len(np.unique(levels)) == n_levels and vals == n_levels)
    k = _poisson_counts(levels.ravel(), vals, np.random.Generator(np.random.PCG64(9))).reshape(levels.shape)
    ref = np.clip(img + (k / vals - levels / 255) * 1.7, 0, 1)
    np.testing.assert_allclose(ours, ref, atol=2e-6)
    assert np.abs(ours - img).mean() > 1e-3  # the noise is there


def test_gaussian_noise_equals_version_3() -> None:
    """Clamping per block instead of once at the end changes nothing: same bytes as degrade version 3."""
    from pipelines.curate.degrade_noise import add_gaussian_noise

    img = np.random.default_rng(10).random((700, 500, 3), dtype=np.float32)
    for gray in (False, True):
        ours, ref = img.copy(), img.copy()
        add_gaussian_noise(ours, 12.0, gray, np.random.Generator(np.random.PCG64(1)))
        rng = np.random.Generator(np.random.PCG64(1))
        step = max(1, (1 << 16) // (500 * (1 if gray else 3)))  # version 3's block rows
        for top in range(0, 700, step):
            block = ref[top : top + step]
            noise = rng.standard_normal((block.shape[0], 500, 1 if gray else 3), dtype=np.float32)
            noise *= np.float32(12.0 / 255.0)
            block += noise
        np.clip(ref, 0.0, 1.0, out=ref)
        assert np.array_equal(ours, ref)


def test_flat_grey_keeps_mean() -> None:
    # Exactly flat input, Gaussian noise only: blur, resize, noise and JPEG must not move the brightness.
    # (Real-ESRGAN's Poisson noise uses vals = 2**ceil(log2(#levels)) = 1 on a one-level image, i.e. Poisson(x)
    # itself, which is then clipped and does shift a flat image; that is the reference's behaviour, kept.)
    gaussian_only = DegradeSettings(gaussian_noise_prob=1.0, gaussian_noise_prob2=1.0)
    for value in (60, 128, 200):
        flat = np.full((64, 64, 3), value, np.uint8)
        shifts = [degrade(flat, 4, seed, gaussian_only)[0].mean() - value for seed in range(6)]
        assert np.mean(np.abs(shifts)) < 8, (value, shifts)
    # Grey with a little texture (so Poisson sees many levels), default settings.
    rng = np.random.default_rng(0)
    grey = np.clip(128 + rng.integers(-20, 21, (64, 64, 1)), 0, 255).repeat(3, axis=2).astype(np.uint8)
    shifts = [degrade(grey, 4, seed)[0].mean() - grey.mean() for seed in range(8)]
    assert np.mean(np.abs(shifts)) < 8, shifts


def _laplacian_variance(img: np.ndarray) -> float:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@pytest.mark.parametrize("scale", [2, 4])
def test_lr_is_blurrier_than_area_downscale(scale: int) -> None:
    hr = _scene(128, 128)
    reference = _laplacian_variance(cv2.resize(hr, (128 // scale, 128 // scale), interpolation=cv2.INTER_AREA))
    sharpness = np.array([_laplacian_variance(degrade(hr, scale, seed)[0]) for seed in range(16)])
    assert np.mean(sharpness < reference) >= 0.75
    assert np.median(sharpness) < 0.6 * reference


# --- fidelity to Real-ESRGAN's torch operations (issue 16) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst"),
    [((64, 96), (21, 50)), ((100, 37), (40, 37)), ((30, 45), (47, 90)), ((64, 64), (16, 32)), ((257, 129), (86, 43))],
)
def test_area_resize_matches_torch_adaptive_avg_pool(src, dst) -> None:
    torch = pytest.importorskip("torch")
    from pipelines.curate.degrade import area_resize

    img = np.random.default_rng(1).random((*src, 3), dtype=np.float32)
    ours = area_resize(img, *dst)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    ref = torch.nn.functional.interpolate(t, size=dst, mode="area")[0].permute(1, 2, 0).numpy()
    assert ours.shape == (*dst, 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=2e-6)
    # OpenCV's INTER_AREA is a different filter on non-integer factors: the test would catch a fallback to it
    if src[0] % dst[0] or src[1] % dst[1]:
        assert np.abs(cv2.resize(img, dst[::-1], interpolation=cv2.INTER_AREA) - ref).max() > 1e-3


def test_area_resize_removes_as_much_noise_as_torch() -> None:
    """The issue's measurement: at Real-ESRGAN's down-scales INTER_AREA kept ~17 % more noise than torch."""
    from pipelines.curate.degrade import area_resize

    noise = np.random.default_rng(2).standard_normal((600, 600, 3)).astype(np.float32)
    ours = area_resize(noise, 257, 257).std()
    cv = cv2.resize(noise, (257, 257), interpolation=cv2.INTER_AREA).std()
    assert cv > 1.1 * ours  # torch's overlapping whole-pixel bins average more samples


def _torch_usm(img: np.ndarray, radius: int = 50, weight: float = 0.5, threshold: float = 10) -> np.ndarray:
    """BasicSR USMSharp.forward and filter2D, transcribed (basicsr/utils/img_process_util.py)."""
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    radius += 1 - radius % 2
    k1 = cv2.getGaussianKernel(radius, 0)
    kernel = torch.FloatTensor(np.dot(k1, k1.T))[None]

    def filter2d(x):
        b, c, h, w = x.size()
        k = kernel.size(-1)
        x = f.pad(x, (k // 2, k // 2, k // 2, k // 2), mode="reflect")
        ph, pw = x.size()[-2:]
        x = x.view(b * c, 1, ph, pw)
        return f.conv2d(x, kernel.view(1, 1, k, k), padding=0).view(b, c, h, w)

    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    blur = filter2d(t)
    residual = t - blur
    mask = (torch.abs(residual) * 255 > threshold).float()
    soft = filter2d(mask)
    sharp = torch.clip(t + weight * residual, 0, 1)
    return (soft * sharp + (1 - soft) * t)[0].permute(1, 2, 0).numpy()


def test_usm_sharp_matches_basicsr() -> None:
    from pipelines.curate.degrade import usm_sharp

    img = cv2.GaussianBlur(np.random.default_rng(3).random((96, 80, 3), dtype=np.float32), (0, 0), 2.0)
    ours = usm_sharp(img)
    np.testing.assert_allclose(ours, _torch_usm(img), atol=1e-5)
    assert np.abs(ours - img).max() > 0.01  # it did sharpen


def test_usm_setting_degrades_the_sharpened_hr_and_is_off_by_default() -> None:
    from pipelines.curate.degrade import usm_sharp

    hr = (cv2.GaussianBlur(np.random.default_rng(4).random((128, 128, 3)), (0, 0), 1.5) * 255).astype(np.uint8)
    assert DegradeSettings().usm_sharpen is False
    plain, p1 = degrade(hr, 4, 11)
    sharp, p2 = degrade(hr, 4, 11, DegradeSettings(usm_sharpen=True))
    assert p1 == p2  # same parameters drawn: USM uses no randomness
    assert not np.array_equal(plain, sharp)
    # the sharpened HR, degraded with USM off, is the same LR up to the 8-bit rounding of the sharpened HR
    pre = np.clip(np.rint(usm_sharp(hr.astype(np.float32) / 255) * 255), 0, 255).astype(np.uint8)
    via, _ = degrade(pre, 4, 11)
    assert np.abs(via.astype(int) - sharp.astype(int)).mean() < np.abs(plain.astype(int) - sharp.astype(int)).mean()


# --- fast routes with the same maths (issue 16: speed) --------------------------------------------------------------

_ROUTE_SPECS = [
    {
        "type": kind,
        "size": size,
        "sigma_x": 2.2,
        "sigma_y": 0.8 if "aniso" in kind else 2.2,
        "theta": 0.7 if "aniso" in kind else 0.0,
        "beta": 1.6,
        "omega_c": 1.1,
    }
    for kind in ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc")
    for size in (7, 11, 13, 21)
]


def _direct_correlation(img: np.ndarray, kernel: np.ndarray, gain: float) -> np.ndarray:
    """The definition: reflect-101 padding (numpy's "reflect") and a float64 sum over every tap."""
    p = kernel.shape[0] // 2
    x = np.pad(img.astype(np.float64), ((p, p), (p, p), (0, 0)), mode="reflect")
    win = np.lib.stride_tricks.sliding_window_view(x, kernel.shape, axis=(0, 1))  # (h, w, c, k, k)
    return np.einsum("ijckl,kl->ijc", win, kernel * gain)


@pytest.mark.parametrize("spec", _ROUTE_SPECS, ids=lambda s: f"{s['type']}-{s['size']}")
def test_filter_routes_equal_direct_correlation(spec: dict) -> None:
    """Separable, direct and FFT routes all equal the direct float64 correlation to float32 rounding (< 1e-3 grey
    level), on the uint8 HR (gain 1/255) and on float32 images; a shifted, flipped or circularly padded result would
    be off by whole grey levels."""
    from pipelines.curate.degrade_kernels import filter_image as _filter

    rng = np.random.default_rng(spec["size"])
    kernel = _build_kernel(spec)
    for img, gain in ((_scene(40, 57, seed=2), 1 / 255), (rng.random((45, 38, 3), dtype=np.float32), 1.0)):
        out = _filter(img, spec, gain)
        assert out.shape == img.shape and out.dtype == np.float32
        assert np.abs(out - _direct_correlation(img, kernel, gain)).max() * 255 < 1e-3


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 5, 3), (9, 30, 3), (30, 9)])
def test_fft_filter_on_images_smaller_than_the_kernel(shape: tuple[int, ...]) -> None:
    """Reflect-101 padding wider than the image (OpenCV reflects repeatedly), and a single-channel image."""
    from pipelines.curate.degrade_kernels import fft_filter as _fft_filter

    img = np.random.default_rng(5).random(shape, dtype=np.float32)
    kernel = _build_kernel(_ROUTE_SPECS[-1])  # sinc 21x21
    ref = cv2.filter2D(img.astype(np.float64), cv2.CV_64F, kernel, borderType=cv2.BORDER_REFLECT_101)
    out = _fft_filter(img, kernel)
    assert out.shape == img.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=2e-6)


@pytest.mark.parametrize("size", [13, 21])
def test_fft_filter_tiles_a_large_image(size: int) -> None:
    """Images larger than two tiles go through overlap-save tiles (here 3 x 2 tiles, partial at the right and the
    bottom): the result must match OpenCV's float64 correlation everywhere, tile seams included."""
    from pipelines.curate.degrade_kernels import FFT_TILE as _FFT_TILE
    from pipelines.curate.degrade_kernels import fft_filter as _fft_filter

    img = cv2.GaussianBlur(np.random.default_rng(7).random((700, 1200, 3), dtype=np.float32), (0, 0), 1.0)
    assert 1200 + size > 2 * _FFT_TILE  # the tiled branch
    kernel = _build_kernel({"type": "aniso", "size": size, "sigma_x": 3.0, "sigma_y": 1.0, "theta": 0.4})
    ref = cv2.filter2D(img.astype(np.float64), cv2.CV_64F, kernel, borderType=cv2.BORDER_REFLECT_101)
    out = _fft_filter(img, kernel)
    assert out.shape == img.shape and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, ref, atol=2e-6)
    # against degrade version 3's scipy.fft tiles (the implementation this one replaced): float32 rounding apart
    np.testing.assert_allclose(out, _fft_filter_v3(img, kernel), atol=2e-6)
    # the HR route: uint8 input, the 1/255 gain folded into the kernel
    hr = (img * 255).round().astype(np.uint8)
    ref = cv2.filter2D(hr.astype(np.float64), cv2.CV_64F, kernel / 255, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(_fft_filter(hr, kernel / 255), ref, atol=2e-6)


def _fft_filter_v3(img: np.ndarray, kernel: np.ndarray, tile: int = 512) -> np.ndarray:
    """Degrade version 3's overlap-save filter (scipy.fft rfft2/irfft2 of 512-px tiles), kept as the reference."""
    from scipy import fft as sp_fft

    h, w, channels = img.shape
    p = kernel.shape[0] // 2
    step = tile - 2 * p
    ny, nx = -(-h // step), -(-w // step)
    wrapped = np.zeros((tile, tile), np.float32)
    idx = (np.arange(kernel.shape[0]) - p) % tile
    wrapped[np.ix_(idx, idx)] = kernel
    spectrum = sp_fft.rfft2(wrapped)
    padded = np.zeros((ny * step + 2 * p, nx * step + 2 * p, channels), np.float32)
    padded[: h + 2 * p, : w + 2 * p] = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_REFLECT_101)
    out = np.empty((ny * step, nx * step, channels), np.float32)
    for c in range(channels):
        for ty in range(ny):
            for tx in range(nx):
                t = padded[ty * step : ty * step + tile, tx * step : tx * step + tile, c]
                y = sp_fft.irfft2(sp_fft.rfft2(t) * spectrum, s=(tile, tile))
                out[ty * step : (ty + 1) * step, tx * step : (tx + 1) * step, c] = y[p : p + step, p : p + step]
    return out[:h, :w]


def _area_prefix_sum(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Degrade version 2's area resize: float64 prefix sums per axis (adaptive_avg_pool2d's bins)."""

    def axis_pool(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
        n_in = a.shape[axis]
        i = np.arange(n_out)
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        pad = [(0, 0)] * a.ndim
        pad[axis] = (1, 0)
        csum = np.pad(np.cumsum(a, axis=axis, dtype=np.float64), pad)
        shape = [1] * a.ndim
        shape[axis] = n_out
        out = (np.take(csum, end, axis=axis) - np.take(csum, start, axis=axis)) / (end - start).reshape(shape)
        return out.astype(np.float32)

    return axis_pool(axis_pool(img, height, 0), width, 1)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((64, 96), (21, 50)),
        ((100, 37), (40, 37)),
        ((30, 45), (47, 90)),
        ((64, 64), (16, 32)),
        ((257, 129), (86, 43)),
        ((7, 9), (1, 1)),
    ],
)
def test_area_resize_equals_the_prefix_sum_reference(src, dst) -> None:
    """The blocked shifted-sum pooling gives the very float32 values of the prefix-sum version (both sum exactly in
    float64 for 8-bit-like values); a bin off by one would change them."""
    from pipelines.curate.degrade import area_resize

    img = np.random.default_rng(6).random((*src, 3), dtype=np.float32)
    out = area_resize(img, *dst)
    assert out.shape == (*dst, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    assert np.array_equal(out, _area_prefix_sum(img, *dst))


@pytest.mark.parametrize(("src", "dst"), [((257, 129), (86, 43)), ((100, 37), (40, 37)), ((30, 45), (47, 90))])
def test_area_resize_by_bands_of_output_rows(src, dst, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4K image is resized in many ~2 MB bands of output rows; the small images above fit in one. With the band
    shrunk to a few rows (an uneven last band included) every band boundary must give the same values: a row lost,
    repeated or left unwritten between two bands would show."""
    import pipelines.curate.degrade as mod

    img = np.random.default_rng(7).random((*src, 3), dtype=np.float32)
    monkeypatch.setattr(mod, "_AREA_BAND", 7 * img[0].size)  # 7 input rows' worth: bands of 7 output rows
    assert -(-dst[0] // 7) >= 6 and dst[0] % 7  # several bands, the last one partial
    assert np.array_equal(mod.area_resize(img, *dst), _area_prefix_sum(img, *dst))


def test_fast_routes_keep_the_seeded_lr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded LRs of the fast routes vs degrade version 2's routes (OpenCV filter2D on the input as given, prefix-sum
    area): same parameters; the pixels differ only where float32 rounding flips an 8-bit rounding before a JPEG or
    Poisson step (a JPEG block then changes a little). Seeds with non-separable kernels of 13-21 taps (FFT route)."""
    import pipelines.curate.degrade as mod

    hr = _scene(128, 192, seed=4)
    seeds = [s for s in range(200) if _large_nonsep(sample_params(np.random.Generator(np.random.PCG64(s)), DEFAULTS))]
    seeds = seeds[:6]
    fast = [degrade(hr, 4, s) for s in seeds]

    def v2_filter(img, spec, gain=1.0):
        kernel = _build_kernel(spec)
        return cv2.filter2D(img, cv2.CV_32F, (kernel * gain).astype(np.float32), borderType=cv2.BORDER_REFLECT_101)

    monkeypatch.setattr(mod, "_filter", v2_filter)
    monkeypatch.setattr(mod, "area_resize", _area_prefix_sum)
    for s, (lr, params) in zip(seeds, fast, strict=True):
        ref, ref_params = degrade(hr, 4, s)
        assert params == ref_params
        diff = np.abs(lr.astype(int) - ref.astype(int))
        assert np.count_nonzero(diff) <= 0.02 * diff.size and diff.mean() < 0.1, (s, np.count_nonzero(diff))


def _large_nonsep(params: dict) -> bool:
    return params["blur1"]["type"] != "iso" and params["blur1"]["size"] >= 13
