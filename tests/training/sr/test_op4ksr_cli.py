"""`sr4k upscale` and `sr4k train-sr` through typer: an image in, an image out with time and memory printed;
a bad crop fails before any model loads, with the fix in the message."""

import cv2
import typer
from op4ksr_fixtures import natural, saved_checkpoint
from typer.testing import CliRunner

from flows import sr_cli


def _app() -> typer.Typer:
    app = typer.Typer()
    sr_cli.register(app)
    return app


def test_upscale_cli(tiny_backbone, tmp_path):
    saved_checkpoint(tiny_backbone, tmp_path / "ck")
    cv2.imwrite(str(tmp_path / "in.png"), natural(24, 40, 1)[..., ::-1])
    res = CliRunner().invoke(
        _app(),
        ["upscale", str(tmp_path / "in.png"), "--checkpoint", str(tmp_path / "ck"), "-o", str(tmp_path / "out.png")],
    )
    assert res.exit_code == 0, res.output
    assert "160x96" in res.output and " s, " in res.output and "peak" in res.output
    assert cv2.imread(str(tmp_path / "out.png")).shape == (96, 160, 3)
    bad = CliRunner().invoke(
        _app(), ["upscale", str(tmp_path / "in.png"), "--checkpoint", str(tmp_path / "ck"), "--scale", "2"]
    )
    assert bad.exit_code == 2 and "--scale 4" in bad.output
    assert "dtype: float32" in res.output  # auto = float32 on the CPU (bfloat16 on CUDA: test_dtype_auto)
    f16 = CliRunner().invoke(
        _app(),
        [
            "upscale",
            str(tmp_path / "in.png"),
            "--checkpoint",
            str(tmp_path / "ck"),
            "-o",
            str(tmp_path / "o16.png"),
            "--dtype",
            "bfloat16",
        ],
    )
    assert f16.exit_code == 0 and "dtype: bfloat16" in f16.output, f16.output
    wrong = CliRunner().invoke(
        _app(), ["upscale", str(tmp_path / "in.png"), "--checkpoint", str(tmp_path / "ck"), "--dtype", "fp8"]
    )
    assert wrong.exit_code == 2 and "choose auto, bfloat16" in wrong.output


def test_dtype_auto():
    import torch

    from training.sr.model import resolve_dtype

    assert resolve_dtype("auto", "cuda") == torch.bfloat16 and resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float32", "cuda") == torch.float32


def test_memory_errors_become_one_line_hints():
    import torch

    oom = sr_cli.memory_hint(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 48.00 GiB"))
    assert "--vae-tiling" in oom and "--dtype bfloat16" in oom and "\n" not in oom
    idx = sr_cli.memory_hint(RuntimeError("input tensor must fit into 32-bit index math"))
    assert "--vae-tiling" in idx and "2^31" in idx
    assert sr_cli.memory_hint(RuntimeError("shape mismatch")) is None


def test_train_sr_cli_rejects_bad_crop(tmp_path):
    res = CliRunner().invoke(
        _app(), ["train-sr", "--shards", str(tmp_path), "--transformer", "t", "--vae", "v", "--crop", "100"]
    )
    assert res.exit_code == 2
    assert "multiple of 32" in res.output and "data.crop=128" in res.output
