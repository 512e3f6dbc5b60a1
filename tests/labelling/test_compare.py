"""The comparison page: regions where the candidates differ most, the LR region at the same scale, pixels untouched,
Left/Right as the task says, URLs relative to the workspace (no server)."""

import shutil
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest
from lsfixtures import make_lr_set
from PIL import Image

from labelling import compare
from labelling.taskdata import ImageCache, _store_png
from pipelines.store.workspace import Workspace


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_regions_are_where_the_candidates_differ_most_in_order_without_overlap_on_the_lr_grid():
    a = texture(512, 768)
    b = a.copy()
    b[400:440, 600:660] = 255 - b[400:440, 600:660]  # the strongest difference
    b[30:70, 40:100] //= 2  # weaker
    b[300:310, 200:230] = 0  # weakest
    boxes = compare.diff_regions(a, b, 128, 3, grid=4)
    spots = [(600, 400, 60, 40), (40, 30, 60, 40), (200, 300, 30, 10)]
    for box, (x, y, w, h) in zip(boxes, spots, strict=True):
        assert box.x <= x and box.y <= y and box.x + box.w >= x + w and box.y + box.h >= y + h, (box, x, y)
        assert (box.w, box.h) == (128, 128) and box.x % 4 == 0 and box.y % 4 == 0
    for i, p in enumerate(boxes):
        for q in boxes[i + 1 :]:
            assert p.x + p.w <= q.x or q.x + q.w <= p.x or p.y + p.h <= q.y or q.y + q.h <= p.y, (p, q)
    assert compare.diff_regions(b, a, 128, 3, grid=4) == boxes  # symmetric in the two candidates
    assert compare.diff_regions(a[:100, :90], b[:100, :90], 128, 3) == [compare.Box(0, 0, 90, 100)]  # shown whole
    with pytest.raises(ValueError, match="differ in size"):
        compare.diff_regions(a, b[:-4], 128, 3)


def test_lr_region_is_the_same_region_enlarged_by_nearest_neighbour():
    lr = texture(32, 48, seed=3)
    box = compare.Box(8, 12, 64, 40)
    got = compare.lr_region(lr, box, (192, 128))  # x4
    assert got.shape == (40, 64, 3)
    want = np.repeat(np.repeat(lr[3:13, 2:18], 4, axis=0), 4, axis=1)  # LR rows 12/4.., cols 8/4..
    np.testing.assert_array_equal(got, want)


class Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.figs: list[tuple[str, str, int, int]] = []
        self.alts: list[str] = []
        self._cls = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure":
            self._cls = a["class"]
        if tag == "img":
            self.figs.append((self._cls, a["src"], int(a.get("width", 0)), int(a.get("height", 0))))
            self.alts.append(a.get("alt", ""))


def _read(ws: Workspace, src: str) -> np.ndarray:
    rel = src.split("?d=", 1)[1]
    assert rel.startswith("images/") and ".." not in rel
    return np.asarray(Image.open(ws.root / rel).convert("RGB"))  # PIL: not the OpenCV that wrote it


def test_task_data_shows_the_candidates_untouched_left_as_the_task_says_and_preloads_the_next(tmp_path):
    ws = Workspace(tmp_path / "ws")
    make_lr_set(ws, "cmp", 2, lr_side=192, seed=2)  # 768 x 768 candidates: room for two 224-px regions or more
    import pyarrow.parquet as pq

    cands = pq.read_table(ws.part("candidates", "cmp-unit")).to_pylist()
    by = {(c["lr_key"], c["model"]): c["output_path"] for c in cands}
    pairs = [
        {
            "pair_id": f"pr-{k}",
            "lr_key": k,
            "lr_set": "cmp",
            "path_a": by[(k, "m_good")],
            "path_b": by[(k, "m_poor")],
            "left": left,
        }
        for k, left in (("cmp00000", "b"), ("cmp00001", "a"))
    ]
    cache = ImageCache(ws, compare.SIDE, order=pairs)
    data = cache.task_data(pairs[0])
    assert data["sr4k_left"] == "b" and str(tmp_path) not in str(data)
    p = Imgs()
    p.feed(data["view"])
    classes = [c for c, *_ in p.figs]
    assert classes == ["sr4k-lr", "sr4k-left", "sr4k-right"] * (len(classes) // 3) and len(classes) >= 6
    assert all(a.endswith(compare.NOT_LOADED) for a in p.alts)  # what a failed panel says, in plain words
    a = np.asarray(Image.open(ws.root / pairs[0]["path_a"]).convert("RGB"))
    b = np.asarray(Image.open(ws.root / pairs[0]["path_b"]).convert("RGB"))
    lr = np.asarray(Image.open(ws.root / "benchmarks" / "cmp" / "lr" / "cmp00000.png").convert("RGB"))
    boxes = compare.diff_regions(b, a, compare.SIDE, compare.REGIONS, grid=4)
    for r, box in enumerate(boxes):
        (_, lr_src, w, h), (_, left_src, *_), (_, right_src, *_) = p.figs[3 * r : 3 * r + 3]
        assert (w, h) == (box.w, box.h) == (compare.SIDE, compare.SIDE)
        crop = (slice(box.y, box.y + box.h), slice(box.x, box.x + box.w))
        np.testing.assert_array_equal(_read(ws, left_src), b[crop])  # left = candidate b, as the task says
        np.testing.assert_array_equal(_read(ws, right_src), a[crop])
        nearest = cv2.resize(lr, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(_read(ws, lr_src), nearest[crop])
    nxt = Imgs()
    nxt.feed(cache.task_data(pairs[1])["view"])
    pre = Imgs()
    pre.feed(data["preload"])
    assert [s for _, s, *_ in pre.figs] == [s for _, s, *_ in nxt.figs]  # this task fetches the next one's images
    last = Imgs()
    last.feed(cache.task_data(pairs[1])["preload"])
    assert pre.figs and not last.figs  # the last task has nothing to preload


def test_a_moved_workspace_gives_the_same_tasks(tmp_path):
    ws = Workspace(tmp_path / "a")
    make_lr_set(ws, "mv", 1, lr_side=64, seed=4)
    import pyarrow.parquet as pq

    c = pq.read_table(ws.part("candidates", "mv-unit")).to_pylist()
    pair = {
        "pair_id": "pr-x",
        "lr_key": c[0]["lr_key"],
        "lr_set": "mv",
        "path_a": c[0]["output_path"],
        "path_b": c[1]["output_path"],
        "left": "a",
    }
    before = ImageCache(ws, 96).task_data(pair)
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = Workspace(tmp_path / "b")
    assert ImageCache(moved, 96).task_data(pair) == before
    p = Imgs()
    p.feed(before["view"])
    assert all((moved.root / s.split("?d=", 1)[1]).is_file() for _, s, *_ in p.figs)


def test_store_png_is_lossless_and_content_addressed(tmp_path):
    ws = Workspace(tmp_path)
    img = texture(20, 30, seed=9)
    rel = _store_png(ws, img)
    assert rel == _store_png(ws, img) and rel.startswith("images/") and rel.endswith(".png")
    np.testing.assert_array_equal(np.asarray(Image.open(ws.root / rel).convert("RGB")), img)


def test_lr_images_are_reloaded_after_eviction_with_the_same_task_data(tmp_path, monkeypatch):
    from labelling import taskdata

    ws = Workspace(tmp_path)
    make_lr_set(ws, "ev", 3, lr_side=32, seed=6)
    import pyarrow.parquet as pq

    c = pq.read_table(ws.part("candidates", "ev-unit")).to_pylist()
    pairs = [
        {
            "pair_id": f"pr-{k}",
            "lr_key": k,
            "lr_set": "ev",
            "left": "a",
            "path_a": next(r["output_path"] for r in c if r["lr_key"] == k and r["model"] == "m_good"),
            "path_b": next(r["output_path"] for r in c if r["lr_key"] == k and r["model"] == "m_okay"),
        }
        for k in ("ev00000", "ev00001", "ev00002")
    ]
    want = [ImageCache(ws, 64).task_data(p) for p in pairs]
    monkeypatch.setattr(taskdata, "LR_CACHE", 1)
    cache = ImageCache(ws, 64)
    assert [cache.task_data(p) for p in [*pairs, pairs[0]]] == [*want, want[0]] and len(cache.lr) == 1


def test_views_recorded_at_pairs_build_give_the_same_task_data_and_bytes_as_rendering_at_push(tmp_path):
    """`sr4k pairs build` renders each pair's comparison once (a process pool); the push assembles task data from the
    recorded rows. Same HTML, same files, byte for byte, for both sides, in any worker count, after a move."""
    import pyarrow.parquet as pq
    from lsfixtures import make_pairs

    from labelling.push import select_pairs

    ws = Workspace(tmp_path / "ws")
    make_lr_set(ws, "rv", 3, lr_side=96, seed=5)  # 384-px candidates: two or more 224-px regions
    make_pairs(ws, "rv", 9, "pairs")
    pairs = select_pairs(ws, "all")
    assert {p["left"] for p in pairs} == {"a", "b"}
    shutil.copytree(ws.root, tmp_path / "ref")
    ref = ImageCache(Workspace(tmp_path / "ref"), compare.SIDE, order=pairs)  # rendered at push, as before
    want = [ref.task_data(p) for p in pairs]
    assert len(ref.rendered) == len(pairs)

    assert compare.record_views(ws, "pairs", workers=2)["views"] == len(pairs)
    views = compare.read_views(ws)
    got = pq.read_table(ws.part("pair_views", "pairs")).to_pylist()  # an independent read of the part
    assert sorted(views) == [r["pair_id"] for r in got] == sorted(p["pair_id"] for p in pairs)
    assert compare.render_views(ws, pairs, workers=1) == got  # the pool changes nothing
    cache = ImageCache(ws, compare.SIDE, order=pairs, views=views)
    assert [cache.task_data(p) for p in pairs] == want and not cache.rendered and not cache.lr
    made = sorted(p.relative_to(ws.root) for p in (ws.root / "images").rglob("*.png"))
    assert made == sorted(p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref" / "images").rglob("*.png"))
    assert all((ws.root / p).read_bytes() == (tmp_path / "ref" / p).read_bytes() for p in made)
    assert compare.record_views(ws, "round2")["views"] == 0  # recorded once: nothing left to render

    # another region side than recorded, or no record: rendered at push and counted
    assert not ImageCache(ws, 96, views=views).views
    shutil.move(ws.root, tmp_path / "moved")
    moved = Workspace(tmp_path / "moved")
    assert [
        ImageCache(moved, compare.SIDE, order=pairs, views=compare.read_views(moved)).task_data(p) for p in pairs
    ] == want
