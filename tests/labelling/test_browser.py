"""A newly added annotator labels, in a real browser, the workspace that sr4k's own commands built — then again after
the workspace folder has been moved.

The workspace is made the way a user makes it: demo photographs (``flows.demo.prepare_demo_input``), ``sr4k bench
build synthetic``, ``sr4k candidates run`` (two OpenCV interpolations and Real-ESRGAN animevideov3 on ncnn), ``sr4k
pairs build``, ``sr4k label serve``, ``sr4k label add-annotator --show-password`` (its ``url:`` / ``password:`` lines
are what the annotator is handed), ``sr4k label push``. The annotator (Debian Chromium driven by Playwright, a
1440 x 900 laptop viewport) logs in at the printed URL and lands on the labelling stream. For every task shown:

- every image on the page (both renderings of the comparison and the hidden preload of the next task) decodes
  (``naturalWidth > 0``), every visible one is drawn at >= 1:1 and inside the viewport (no scrolling);
- the flip works: the screenshot of the first region's Left panel is, pixel for pixel, a region of the candidate the
  task puts on the left; after pressing F the same spot is the same region of the other candidate;
- three keys label the pair (a consistency digit, a naturalness digit, Ctrl+Enter) and the answer is stored;
- (first task) submitting unanswered is refused with the question in the annotator's words, not a field name.

``sr4k label pull`` must then give every answer back in candidate terms, and so the models that won. Then Label
Studio is stopped, the workspace folder moved, served again from its new place, and the annotator labels the rest the
same way. The seconds from Ctrl+Enter to the next pair's images are printed (speed is a benchmark's job, not an
assertion here).
"""

import json
import os
import re
import shutil
import time
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from lsfixtures import free_port
from PIL import Image
from typer.testing import CliRunner

from labelling import gold as goldmod
from labelling import push
from labelling.pull import latest_annotations, to_candidate
from pipelines.store.workspace import Workspace

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 900}
KEYS = {"consistency": {"left": "1", "right": "2", "tie": "3"}, "naturalness": {"left": "4", "right": "5", "tie": "6"}}
# what the annotator answers on the i-th task (screen terms), varied so that a constant or swapped mapping shows
ANSWERS = [("left", "right"), ("right", "left"), ("left", "tie"), ("right", "right"), ("tie", "left")]


def sr4k(*args: str) -> str:
    from flows.cli import app

    out = CliRunner().invoke(app, [str(a) for a in args])
    assert out.exit_code == 0, f"sr4k {' '.join(map(str, args))}\n{out.output}"
    return out.output


@pytest.fixture(scope="module")
def built(tmp_path_factory, prefect_local):
    """A workspace made by sr4k's own commands: a synthetic benchmark, three candidate models, pairs."""
    from flows.demo import prepare_demo_input

    base = tmp_path_factory.mktemp("browser17")
    ws = base / "first place" / "ws"  # a space in the path, as users' folders have
    desc, overrides = prepare_demo_input(base / "input")
    photos = base / "input" / overrides.get("_photos", "nature")
    hr = 768 if desc.startswith("Debian") else 256  # mate wallpapers are large; scikit-image's photos are 512 px
    sr4k(
        "bench",
        "build",
        "synthetic",
        "--from",
        photos,
        "--name",
        "web",
        "--count",
        2,
        "--hr-size",
        hr,
        "--scale",
        4,
        "-w",
        ws,
    )
    sr4k(
        "candidates",
        "run",
        "--lr",
        "web",
        "--model",
        "bicubic",
        "--model",
        "lanczos",
        "--model",
        "realesr-animevideov3-x4",
        "-w",
        ws,
    )
    sr4k("pairs", "build", "--target", 4, "--strategy", "balanced", "--lr", "web", "--name", "web", "-w", ws)
    return base, ws


def _lines(output: str) -> dict[str, str]:
    return dict(re.findall(r"^(url|password): (\S+)\s*$", output, flags=re.M))


_SAVED_ENV: dict[str, str | None] = {}


def _serve(ws: Path) -> list[str]:
    """``sr4k label serve`` on free ports; the options that address this server."""
    port = free_port()
    _SAVED_ENV.setdefault("gate", os.environ.get("SR4K_LABEL_GATE_PORT"))
    os.environ["SR4K_LABEL_GATE_PORT"] = str(free_port())
    sr4k("label", "serve", "-w", ws, "--port", port)
    return ["-w", str(ws), "--port", str(port)]


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(BytesIO(png)).convert("RGB"))


def _is_region_of(patch: np.ndarray, image: np.ndarray) -> bool:
    """Whether ``patch`` is, exactly, a sub-image of ``image`` (template matching, then a pixel-equal check)."""
    res = cv2.matchTemplate(image.astype(np.float32), patch.astype(np.float32), cv2.TM_SQDIFF)
    _min, _max, (x, y), _ = cv2.minMaxLoc(res)
    h, w = patch.shape[:2]
    return bool(np.array_equal(image[y : y + h, x : x + w], patch))


def _unanswered_submit_says_what_to_do(page) -> None:
    """Ctrl+Enter before answering: Label Studio's warning carries the question in the annotator's words."""
    page.keyboard.press("Control+Enter")
    dialog = page.locator(".ant-modal").filter(has_text="Please answer")
    dialog.wait_for(timeout=10_000)
    text = dialog.inner_text()
    assert "Please answer question 1" in text and "Left, Right or Tie (keys 1, 2, 3)" in text, text
    assert "consistency" not in text and "required" not in text.lower(), text  # not the control's name
    dialog.get_by_role("button", name="OK").click()
    dialog.wait_for(state="hidden")


def _label_stream(page, n: int, shots: dict, check_messages: bool = False) -> list[dict]:
    """Label the next ``n`` tasks of the stream with three keys each, checking the page first (module doc)."""
    done = []
    for k in range(n):
        page.wait_for_function(
            "() => { const i = [...document.querySelectorAll('.sr4k-cmp img, .sr4k-preload img')];"
            " return i.length > 0 && i.every(x => x.complete); }",
            timeout=60_000,
        )
        imgs = page.evaluate("""() => [...document.querySelectorAll('.sr4k-cmp img, .sr4k-preload img')].map(i => {
            const r = i.getBoundingClientRect(); const shown = i.offsetParent !== null;
            return {src: i.getAttribute('src'), nw: i.naturalWidth, nh: i.naturalHeight, w: r.width, h: r.height,
                    right: r.right, bottom: r.bottom, shown}; })""")
        assert imgs and all(i["nw"] > 0 and i["nh"] > 0 for i in imgs), [i for i in imgs if not i["nw"]]
        shown = [i for i in imgs if i["shown"]]
        assert len(shown) >= 3 and len(shown) % 3 == 0
        dpr = page.evaluate("() => window.devicePixelRatio")
        assert all(i["w"] * dpr >= i["nw"] and i["h"] * dpr >= i["nh"] for i in shown), shown  # >= 1:1
        assert all(i["right"] <= VIEWPORT["width"] and i["bottom"] <= VIEWPORT["height"] for i in shown), shown
        assert page.evaluate("() => document.scrollingElement.scrollHeight") <= VIEWPORT["height"]

        if check_messages and k == 0:
            _unanswered_submit_says_what_to_do(page)
        left = page.locator(".sr4k-normal .sr4k-row").first.locator(".sr4k-left img")
        box = left.bounding_box()
        clip = {"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"]}
        before = _rgb(page.screenshot(clip=clip))
        page.keyboard.press("f")
        page.wait_for_selector(".sr4k-flipped", state="visible")
        after = _rgb(page.screenshot(clip=clip))
        page.keyboard.press("f")
        page.wait_for_selector(".sr4k-normal", state="visible")

        old_src = left.get_attribute("src")
        c, nat = ANSWERS[len(shots) % len(ANSWERS)]
        page.keyboard.press(KEYS["consistency"][c])
        page.keyboard.press(KEYS["naturalness"][nat])
        t0 = time.monotonic()
        with page.expect_response(lambda r: "/annotations" in r.url and r.request.method == "POST") as rsp:
            page.keyboard.press("Control+Enter")
        assert rsp.value.status == 201, rsp.value.text()
        task_id = int(re.search(r"/api/tasks/(\d+)/annotations", rsp.value.url).group(1))
        shots[task_id] = (before, after, c, nat, rsp.value.json()["id"])
        page.wait_for_function(
            "(old) => { const i = document.querySelector('.sr4k-normal .sr4k-left img');"
            " return !i || (i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0)"
            " || document.body.innerText.includes('No more tasks'); }",
            arg=old_src,
            timeout=60_000,
        )
        done.append({"task_id": task_id, "seconds_to_next": round(time.monotonic() - t0, 2)})
    return done


def _check_pulled(ws: Path, args: list[str], shots: dict) -> None:
    """The pull gives every answer back in candidate terms; the screenshots showed the candidates the task says."""
    sr4k("label", "pull", *args)
    w = Workspace(ws)
    pid = json.loads(push.project_file(w, "pairs").read_text())["id"]
    rows = {r["annotation_id"]: r for r in latest_annotations(w, pid) if r["annotator"] == "alice@lab.org"}
    tasks = push.mapping(w, pid)
    by_task = {m["task_id"]: m for m in tasks.values()}
    pairs = {r["pair_id"]: r for r in pq.read_table(w.root / "tables" / "pairs").to_pylist()}
    pairs |= goldmod.load_gold(w, "pairs")
    for task_id, (before, after, c, nat, ann_id) in shots.items():
        m = by_task[task_id]
        pair = pairs[m["pair_id"]]
        shown_left = m["left"]
        other = "b" if shown_left == "a" else "a"
        img = {k: np.asarray(Image.open(w.root / pair[f"path_{k}"]).convert("RGB")) for k in "ab"}
        assert not pair["path_a"].startswith("/") and not pair["path_b"].startswith("/")  # recorded relative
        assert _is_region_of(before, img[shown_left]) and not _is_region_of(before, img[other]), task_id
        assert _is_region_of(after, img[other]) and not np.array_equal(before, after), task_id  # the flip
        row = rows[ann_id]
        assert (row["task_id"], row["pair_id"], row["left"], row["valid"]) == (task_id, m["pair_id"], shown_left, True)
        assert (row["consistency"], row["naturalness"]) == (to_candidate(c, shown_left), to_candidate(nat, shown_left))
        model = {"a": pair["model_a"], "b": pair["model_b"], "tie": "tie"}
        want = {"left": pair[f"model_{shown_left}"], "right": pair[f"model_{other}"], "tie": "tie"}
        assert (model[row["consistency"]], model[row["naturalness"]]) == (want[c], want[nat])


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium missing")
def test_new_annotator_labels_the_built_workspace_in_the_browser_before_and_after_it_moves(built):
    from playwright.sync_api import sync_playwright

    base, ws = built
    args = _serve(ws)
    moved = base / "moved place" / "ws"
    try:
        out = sr4k("label", "add-annotator", "alice@lab.org", "--show-password", *args)
        login = _lines(out)
        assert {"url", "password"} <= set(login), out
        pushed = sr4k("label", "push", "--pairs", "web", "--overlap", "1", "--gold-rate", "0.2", *args)
        n_tasks = len(push.mapping(Workspace(ws)))
        assert n_tasks == 5, pushed  # 4 pairs + 1 gold
        shots: dict = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
                page.goto(login["url"])
                page.fill("input[name=email]", "alice@lab.org")
                page.fill("input[name=password]", login["password"])
                page.click("button[type=submit]")
                first = _label_stream(page, 3, shots, check_messages=True)
            finally:
                browser.close()
        _check_pulled(ws, args, shots)
        sr4k("label", "stop", "-w", ws)

        shutil.move(ws.parent, moved.parent)  # the folder that holds the workspace moves, Label Studio's data too
        args = _serve(moved)
        login = _lines(sr4k("label", "add-annotator", "alice@lab.org", "--show-password", *args))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
                page.goto(login["url"])
                page.fill("input[name=email]", "alice@lab.org")
                page.fill("input[name=password]", login["password"])
                page.click("button[type=submit]")
                second = _label_stream(page, n_tasks - 3, shots)
            finally:
                browser.close()
        _check_pulled(moved, args, shots)
        assert len(shots) == n_tasks
        print("\nseconds from Ctrl+Enter to the next pair's images:", [d["seconds_to_next"] for d in first + second])
    finally:
        from labelling import server

        for w in (ws, moved):
            if (w / "labelstudio").exists():
                server.stop(w)
        saved = _SAVED_ENV.pop("gate", None)  # the session's shared server (lsfixtures.ls) set it for other tests
        if saved is None:
            os.environ.pop("SR4K_LABEL_GATE_PORT", None)
        else:
            os.environ["SR4K_LABEL_GATE_PORT"] = saved
