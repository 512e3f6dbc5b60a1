"""Labeling config, result validation and side mapping, gold degradation, the comparison page (no server)."""

import json
import os
import stat
from xml.etree import ElementTree as ET

import cv2
import numpy as np
import pytest

from labelling import gold, interface
from labelling.pull import parse_result, to_candidate
from labelling.server import LabelStudioError, credentials, label_studio_bin
from pipelines.store.workspace import Workspace
from schemas.labels import CRITERIA


def res(**choices):
    return [
        {"from_name": k, "to_name": "left_crop", "type": "choices", "value": {"choices": v}}
        for k, v in choices.items()
    ]


def test_config_has_both_questions_with_unique_hotkeys_the_comparison_and_the_flip():
    cfg = interface.label_config()
    root = ET.fromstring(cfg)
    names = {c.get("name") for c in root.iter("Choices")}
    assert names == {*CRITERIA, interface.UNUSABLE, interface.FLIP}
    assert sorted(h.get("value") for h in root.iter("HyperText")) == ["$preload", "$view", "$view"]
    assert not list(root.iter("Image"))  # canvases scale to their column; the comparison is plain <img> at 1:1
    keys = interface.hotkeys(cfg)
    assert keys == {
        "1": ("consistency", "left"),
        "2": ("consistency", "right"),
        "3": ("consistency", "tie"),
        "4": ("naturalness", "left"),
        "5": ("naturalness", "right"),
        "6": ("naturalness", "tie"),
        "0": ("unusable", "both_unusable"),
        "f": ("flip", "swapped"),
    }
    questions = [c for c in root.iter("Choices") if c.get("name") in CRITERIA]
    assert all(c.get("required") == "true" for c in questions)
    for c in questions:  # the annotator's words: the question and its keys, not the control's name
        msg = c.get("requiredMessage")
        assert c.get("name") not in msg and "Left, Right or Tie" in msg, msg
        assert all(k in msg for k, (name, _) in keys.items() if name == c.get("name"))
    assert all(c.get("toName") == interface.TO_NAME for c in root.iter("Choices"))
    assert {h.get("name") for h in root.iter("HyperText")} >= {interface.TO_NAME}
    assert cfg == interface.label_config()  # deterministic: the push compares it with the project's
    with pytest.raises(ValueError, match="hotkey '1' bound twice"):
        interface.hotkeys(cfg.replace('hotkey="2"', 'hotkey="1"'))


def test_flip_shows_one_of_two_renderings_and_the_flipped_one_swaps_left_and_right():
    root = ET.fromstring(interface.label_config())
    views = {v.get("className"): v for v in root.iter("View") if v.get("visibleWhen")}
    assert set(views) == {"sr4k-normal", "sr4k-flipped"}
    assert views["sr4k-normal"].get("visibleWhen") == "choice-unselected"
    assert views["sr4k-flipped"].get("visibleWhen") == "choice-selected"
    assert {v.get("whenTagName") for v in views.values()} == {interface.FLIP}
    style = next(root.iter("Style")).text
    assert ".sr4k-flipped .sr4k-left { order: 3; }" in style and ".sr4k-flipped .sr4k-right { order: 2; }" in style
    assert ">" not in style  # Label Studio keeps an XML-escaped '>' as '&gt;', which breaks the rule
    assert interface.VIEW_SETTINGS["show_instruction"] is False  # no popup to dismiss per session


@pytest.mark.parametrize(
    ("screen", "left", "want"),
    [("left", "a", "a"), ("right", "a", "b"), ("left", "b", "b"), ("right", "b", "a"), ("tie", "b", "tie")],
)
def test_screen_answers_map_to_candidates(screen, left, want):
    assert to_candidate(screen, left) == want


def test_parse_result_valid_and_every_kind_of_invalid():
    ans, unusable, reasons = parse_result(
        res(consistency=["left"], naturalness=["right"], unusable=["both_unusable"]), left="b"
    )
    assert (ans, unusable, reasons) == ({"consistency": "b", "naturalness": "a"}, True, [])
    cases = {
        "unknown_choice:naturalness=C": res(consistency=["tie"], naturalness=["C"]),
        "missing:naturalness": res(consistency=["tie"]),
        "multiple:consistency": res(consistency=["left", "right"], naturalness=["tie"]),
        "unknown_control:colour": res(consistency=["tie"], naturalness=["tie"], colour=["red"]),
    }
    for want, result in cases.items():
        ans, _, reasons = parse_result(result, left="a")
        assert want in reasons and ans == {"consistency": None, "naturalness": None}, (want, reasons)
    _, _, reasons = parse_result([], left="a")
    assert reasons == ["missing:consistency", "missing:naturalness"]
    flipped = res(consistency=["right"], naturalness=["tie"], flip=[interface.FLIP_VALUE])  # the view toggle was on
    assert parse_result(flipped, left="a") == ({"consistency": "b", "naturalness": "tie"}, False, [])


def test_gold_degradation_is_obvious():
    rng = np.random.default_rng(0)
    img = cv2.resize((rng.random((32, 32, 3)) * 255).astype(np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST)
    bad = gold.degrade(img)
    sharp = lambda x: cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert bad.shape == img.shape and sharp(bad) < 0.1 * sharp(img)
    assert bad[..., 0].mean() > img[..., 0].mean() + 10 and bad[..., 2].mean() < img[..., 2].mean() - 10
    assert gold.gold_pair_id("k", "m", "v", 0).startswith("pr-") and len(gold.gold_pair_id("k", "m", "v", 0)) == 23


def test_credentials_are_generated_once_private_and_missing_binary_names_the_fix(tmp_path, monkeypatch):
    ws = Workspace(tmp_path)
    c1 = credentials(ws)
    path = tmp_path / "labelstudio" / "credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert credentials(ws) == c1 and len(c1["token"]) == 40 and len(c1["admin_password"]) >= 20
    assert json.loads(path.read_text())["token"] == c1["token"]
    monkeypatch.setenv("SR4K_LABEL_STUDIO_BIN", str(tmp_path / "nope"))
    with pytest.raises(LabelStudioError, match=r"bash \.ci/bootstrap"):
        label_studio_bin()


def test_admin_preset_from_settings_is_used_once_and_never_shown(tmp_path, monkeypatch):
    from labelling.server import LabelSettings

    monkeypatch.setenv("SR4K_LABEL_ADMIN_PASSWORD", "s3cret-pass-word")
    monkeypatch.setenv("SR4K_LABEL_TOKEN", "a" * 40)
    s = LabelSettings()
    assert "s3cret" not in repr(s) and "a" * 40 not in str(s.model_dump())
    creds = credentials(Workspace(tmp_path), s)
    assert (creds["admin_password"], creds["token"]) == ("s3cret-pass-word", "a" * 40)
    monkeypatch.setenv("SR4K_LABEL_TOKEN", "b" * 40)  # later changes do not rewrite an existing server's admin
    assert credentials(Workspace(tmp_path), LabelSettings())["token"] == "a" * 40
