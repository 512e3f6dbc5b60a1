"""Prompts and the pixel-budget policy: global view size, aligned native crops, A/B order and label mapping."""

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from refreward_fixtures import TEST_BUDGET

from training.reward.data import load_preferences
from training.reward.examples import (
    PixelBudget,
    build_prompt,
    global_size,
    make_examples,
    order_for,
    render_views,
    to_candidate,
    to_screen,
)


@pytest.mark.parametrize(("h", "w"), [(2160, 3840), (4096, 4096), (3000, 2000), (100, 60)])
def test_global_size_fits_budget(h, w):
    gh, gw = global_size(h, w, 448 * 448)
    assert gh % 28 == 0 and gw % 28 == 0
    assert gh * gw <= 448 * 448
    assert gh <= max(h, 28) + 14 and gw <= max(w, 28) + 14  # never upscaled beyond rounding
    if h * w > 448 * 448:
        assert abs(gw / gh - w / h) / (w / h) < 0.1  # aspect kept
        assert gh * gw > 0.8 * 448 * 448  # and most of the budget used


def test_render_views_aligned_native_crops():
    rng = np.random.default_rng(0)
    lr = np.full((84, 112, 3), 128, np.uint8)  # flat LR except one textured block: where the detail policy must look
    lr[42:70, 70:98] = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    a = np.asarray(Image.fromarray(lr).resize((448, 336), Image.Resampling.NEAREST))
    b = 255 - a
    budget = PixelBudget(global_max_pixels=112 * 112, crop_size=56, n_crops=1)
    v = render_views(lr, a, b, budget)
    assert len(v.images) == 6 and len(v.captions) == 6
    gh, gw = v.global_size
    assert [im.size for im in v.images[:3]] == [(gw, gh)] * 3 and gh * gw <= 112 * 112
    (y, x, side) = v.crops[0]
    assert side == 56 and y % 4 == 0 and x % 4 == 0
    assert 168 <= y + side // 2 <= 280 and 280 <= x + side // 2 <= 392  # centre inside the textured block (x4)
    np.testing.assert_array_equal(np.asarray(v.images[4]), a[y : y + side, x : x + side])  # native pixels of A
    np.testing.assert_array_equal(np.asarray(v.images[5]), b[y : y + side, x : x + side])  # same place in B
    lr_crop = np.asarray(Image.fromarray(lr[y // 4 : (y + side) // 4, x // 4 : (x + side) // 4]).resize((56, 56)))
    np.testing.assert_array_equal(np.asarray(v.images[3]), lr_crop)


def test_small_candidates_need_no_crops():
    lr = np.zeros((14, 14, 3), np.uint8)
    v = render_views(lr, np.zeros((56, 56, 3), np.uint8), np.zeros((56, 56, 3), np.uint8), PixelBudget())
    assert len(v.images) == 3 and v.crops == [] and v.global_size == (56, 56)


def test_budget_validation_names_the_fix():
    with pytest.raises(ValidationError, match="set it to 56"):
        PixelBudget(crop_size=50)
    with pytest.raises(ValidationError, match="n_crops: 0"):
        PixelBudget(crop_size=0, n_crops=1)


def test_mirror_examples_swap_labels_and_votes(prefs_workspace):
    s = load_preferences(prefs_workspace)[0]  # consistency "a" with votes a=2 b=1; naturalness "b" unanimous
    ab, ba = make_examples(s, PixelBudget(**TEST_BUDGET), order="mirror")
    assert (ab.swap, ba.swap) == (False, True)
    assert ab.labels == {"consistency": "A", "naturalness": "B"}
    assert ba.labels == {"consistency": "B", "naturalness": "A"}
    assert ab.votes["consistency"] == {"A": 2, "B": 1, "tie": 0} and ba.votes["consistency"] == {
        "A": 1,
        "B": 2,
        "tie": 0,
    }
    # the candidate shown first is the first candidate image of the prompt
    np.testing.assert_array_equal(np.asarray(ab.images[1]), np.asarray(ba.images[2]))
    n_placeholders = sum(p["type"] == "image" for p in ab.prompt[0]["content"])
    assert n_placeholders == len(ab.images) == 6
    row = ab.row()
    assert row["label_consistency"] == "A" and row["votes_consistency_A"] == 2 and row["example_id"] == "pair000:ab"


def test_random_order_is_reproducible_and_balanced():
    swaps = [order_for(f"p{i}", seed=0) for i in range(400)]
    assert swaps == [order_for(f"p{i}", seed=0) for i in range(400)]
    assert 160 < sum(swaps) < 240


def test_label_mapping_round_trip():
    for label in ("a", "b", "tie"):
        for swap in (False, True):
            assert to_candidate(to_screen(label, swap), swap) == label
    assert to_screen("a", True) == "B" and to_screen("tie", True) == "tie"


def test_prompt_renders_with_the_tiny_processor(tiny_judge):
    from training.reward.judge import load_processor

    proc = load_processor(tiny_judge)
    lr = np.zeros((14, 14, 3), np.uint8)
    v = render_views(lr, np.zeros((56, 56, 3), np.uint8), np.ones((56, 56, 3), np.uint8), PixelBudget(**TEST_BUDGET))
    text = proc.apply_chat_template(build_prompt(v), add_generation_prompt=True, tokenize=False)
    assert text.count("<|vision_start|>") == len(v.images) == 6
    inputs = proc(text=[text], images=v.images, return_tensors="pt")
    assert inputs["image_grid_thw"].shape == (6, 3)
    assert "consistency: A|B|tie; naturalness: A|B|tie" in text


def test_to_pil_accepts_what_sr_models_output():
    import torch

    from training.reward.examples import to_pil

    u8 = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    chw = torch.from_numpy(u8).permute(2, 0, 1).float() / 255.0
    for x in (u8, Image.fromarray(u8), u8.astype(np.float32) / 255.0, chw, chw.numpy()):
        np.testing.assert_array_equal(np.asarray(to_pil(x)), u8)
    with pytest.raises(TypeError, match="float arrays in"):
        to_pil(u8.astype(np.int64))


def test_crop_side_fits_tokens_and_scale():
    lr = np.random.default_rng(1).integers(0, 256, (100, 200, 3), dtype=np.uint8)
    hr = np.asarray(Image.fromarray(lr).resize((600, 300)))
    v = render_views(lr, hr, hr, PixelBudget(global_max_pixels=112 * 112, crop_size=196, n_crops=2))
    assert len(v.crops) == 2
    for y, x, side in v.crops:
        assert side == 168 and side % 28 == 0 and side % 3 == 0 and y % 3 == 0 and x % 3 == 0  # lcm(28, 3) = 84
    assert abs(v.crops[0][0] - v.crops[1][0]) >= 168 or abs(v.crops[0][1] - v.crops[1][1]) >= 168  # no overlap
