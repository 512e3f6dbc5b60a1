"""An annotator in a real browser (Debian Chromium driven by Playwright) against the real Label Studio.

alice is added with `sr4k label add-annotator`, logs in through the login form, opens a task whose *left* image is
candidate b, answers consistency with the hotkey "1" (left better) and naturalness by clicking "Right is better",
submits; `sr4k label pull` must then record exactly that answer in candidate terms: consistency -> b (model_b),
naturalness -> a (model_a).
"""

import json
import shutil
from pathlib import Path

import pytest
from lsfixtures import make_lr_set, make_pairs
from typer.testing import CliRunner

from labelling import push
from labelling.pull import latest_annotations

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"), reason="Debian chromium missing")
def test_annotator_ranks_a_pair_in_the_browser_and_pull_maps_it_to_models(ls, tmp_path):
    from playwright.sync_api import sync_playwright

    from flows.cli import app

    ws, settings = ls
    make_lr_set(ws, "web", 3, seed=5)
    pairs = {p.pair_id: p for p in make_pairs(ws, "web", 6, "web", seed=1)}
    args = ["-w", str(ws.root), "--port", str(settings.port)]
    runner = CliRunner()
    out = runner.invoke(app, ["label", "add-annotator", "alice@lab.org", *args])
    assert out.exit_code == 0, out.output
    password = json.loads((ws.root / "labelstudio" / "credentials.json").read_text())["annotators"]["alice@lab.org"]
    assert password not in out.output and "credentials.json" in out.output  # kept in the 0600 file, not printed
    r = push.push_pairs(ws, "web", overlap=1, gold_rate=0, project="web", settings=settings)
    task = next(m for m in push.mapping(ws, r["project_id"]).values() if m["left"] == "b")
    pair = pairs[task["pair_id"]]
    url = f"http://127.0.0.1:{settings.port}"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/user/login/")
            page.fill("input[name=email]", "alice@lab.org")
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url(lambda u: "/user/login" not in u, timeout=60_000)
            page.goto(f"{url}/projects/{r['project_id']}/data?task={task['task_id']}")
            page.wait_for_selector("text=Which super-resolved output is better?", timeout=90_000)
            page.wait_for_selector("img", timeout=30_000)
            page.keyboard.press("1")  # consistency: left is better
            page.get_by_text("Right is better").nth(1).click()  # naturalness: right is better
            page.screenshot(path=str(tmp_path / "answered.png"), full_page=True)
            posted = f"/api/tasks/{task['task_id']}/annotations"  # the URL carries ?project=<id>
            with page.expect_response(lambda x: posted in x.url and x.request.method == "POST", timeout=60_000) as rsp:
                page.get_by_role("button", name="Submit").click()
            assert rsp.value.status == 201, rsp.value.text()
        finally:
            browser.close()

    out = runner.invoke(app, ["label", "pull", "--project", "web", *args])
    assert out.exit_code == 0, out.output
    rows = [x for x in latest_annotations(ws, r["project_id"]) if x["annotator"] == "alice@lab.org"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["task_id"], row["pair_id"], row["left"], row["valid"]) == (task["task_id"], pair.pair_id, "b", True)
    assert (row["consistency"], row["naturalness"], row["both_unusable"]) == ("b", "a", False)
    winner = {"a": pair.model_a, "b": pair.model_b}
    assert (winner[row["consistency"]], winner[row["naturalness"]]) == (pair.model_b, pair.model_a)
    assert row["lead_time"] is not None and row["lead_time"] > 0
