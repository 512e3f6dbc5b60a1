import numpy as np
import pytest

from pipelines.curate.crop import choose_crops


def textured_patch_image(h=512, w=768, at=(300, 500)):
    """Flat grey except one 128x128 block of noise: the detail-aware rule must put the crop over it."""
    img = np.full((h, w, 3), 128, np.uint8)
    y, x = at
    img[y : y + 128, x : x + 128] = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    return img


def test_best_crop_covers_the_detailed_region_not_the_centre():
    (box,) = choose_crops(textured_patch_image(), (192, 192), align=32)
    assert box.x <= 500 and box.x + 192 >= 628 and box.y <= 300 and box.y + 192 >= 428
    assert box.x % 32 == 0 and box.y % 32 == 0


def test_several_crops_respect_the_overlap_limit_and_are_ranked():
    img = np.random.default_rng(1).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    boxes = choose_crops(img, (256, 256), count=3, max_overlap=0.1)
    assert len(boxes) == 3
    assert all(a.iou(b) <= 0.1 for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)


def test_image_smaller_than_the_crop_gives_no_crop_and_exact_fit_gives_one():
    img = np.zeros((100, 200, 3), np.uint8)
    assert choose_crops(img, (256, 64)) == []
    (box,) = choose_crops(img, (200, 100), count=4)
    assert (box.x, box.y, box.w, box.h) == (0, 0, 200, 100)


@pytest.mark.parametrize("size", [(96, 64), (64, 96)])
def test_rectangular_crops_stay_inside(size):
    img = np.random.default_rng(2).integers(0, 255, (130, 170, 3), dtype=np.uint8)
    for b in choose_crops(img, size, count=4, max_overlap=0.5, align=8):
        assert b.x >= 0 and b.x + b.w <= 170 and b.y >= 0 and b.y + b.h <= 130 and (b.w, b.h) == size


def test_choice_is_deterministic():
    img = textured_patch_image()
    first = [(b.x, b.y) for b in choose_crops(img, (128, 128), count=2)]
    assert first == [(b.x, b.y) for b in choose_crops(img.copy(), (128, 128), count=2)]
