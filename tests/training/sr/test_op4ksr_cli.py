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
    res = CliRunner().invoke(_app(), ["upscale", str(tmp_path / "in.png"), "--checkpoint", str(tmp_path / "ck"),
                                      "-o", str(tmp_path / "out.png")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "160x96" in res.output and " s, " in res.output and "peak" in res.output
    assert cv2.imread(str(tmp_path / "out.png")).shape == (96, 160, 3)
    bad = CliRunner().invoke(_app(), ["upscale", str(tmp_path / "in.png"), "--checkpoint", str(tmp_path / "ck"),
                                      "--scale", "2"])  # fmt: skip
    assert bad.exit_code == 2 and "--scale 4" in bad.output


def test_train_sr_cli_rejects_bad_crop(tmp_path):
    res = CliRunner().invoke(_app(), ["train-sr", "--shards", str(tmp_path), "--transformer", "t", "--vae", "v",
                                      "--crop", "100"])  # fmt: skip
    assert res.exit_code == 2
    assert "multiple of 32" in res.output and "data.crop=128" in res.output
