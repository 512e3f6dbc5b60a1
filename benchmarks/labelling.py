"""Labelling at RefSR-18K scale through a real Label Studio: push, re-push, full pull and routine pull, next to Label
Studio's own raw import and JSON export of the same data, measured in the same run.

Run (it starts its own Label Studio on a free 127.0.0.1 port, in a temporary workspace)::

    nice -n 10 .venv/bin/python benchmarks/labelling.py                 # 18,000 pairs, 6 models, 54,000 annotations
    .venv/bin/python benchmarks/labelling.py --pairs 1500 --new 100     # a quick look

What it does, in order:

1. Builds an LR set of tiny synthetic images (16 x 16 LR, x4 candidates: bicubic plus model-specific noise) for
   ``--models`` models and enough LRs for ``--pairs`` pairs (all model pairs of each LR), the candidates table and
   the pairs table (``pipelines.pairs.build.build_pairs``), then each pair's comparison page as ``sr4k pairs build``
   renders it (``labelling.compare.record_views``, the body of the pairs flow's ``record-pair-views`` task: a
   process pool over the cores): ``pairs_render_s``, reported next to the push because that is where this cost
   moved. Tiny images keep the image work small; everything else — task data, comparison pages, gold pairs,
   batching, the mapping — goes through the product's own push and pull.
2. ``push_s``: ``push_pairs`` of every pair (overlap 3, gold rate 0.05) into project ``bench``; ``push_task_data_s``
   is the part of it spent making task data (assembling JSON from the recorded pages; the gold pairs' pages, made at
   push, are rendered there: ``rendered_gold`` in the push report). The task JSON it sends is recorded on the way
   (a spy around ``Api.post``; the requests still go out), and ``raw_import_s`` is Label Studio's import of that
   same JSON in one request into a fresh project: the floor.
3. ``repush_s``: the same push again (nothing new).
4. 54,000 simulated annotations (3 annotators per pair, Label Studio users) are imported with their tasks into a
   second project ``bench_ann`` (``push_pairs(prelabelled=...)``; ``push_ann_s`` is reported, not a target).
5. ``pull_s``: the first (full) pull of ``bench_ann``; ``raw_export_s``: Label Studio's own JSON export of the same
   project (one request, annotated tasks) right after. The pull starts at least ``pull.MARGIN`` after the bulk
   import ended, as any pull a minute after the last submit would (module doc of ``labelling.pull``).
6. ``--new`` annotations (500) are submitted through the API, one request each (as annotators do), on tasks that had
   none (gold tasks first); ``incpull_s``: the routine pull that follows. It must find exactly those.

The CPU is shared with whatever else runs: compare figures of one run only (the ratios), and say under which load.
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and its name would shadow the ``labelling`` package
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import itertools
import json
import math
import os
import socket
import tempfile
import time

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from labelling import compare, pull, push, server
from pipelines.pairs.build import PAIRS, Candidate, build_pairs
from pipelines.store.workspace import Workspace, write_bytes_atomic, write_table
from schemas.bench import CANDIDATES, CandidateRec

LR_SET = "lbench"
ANNOTATORS = ("sim1@bench.org", "sim2@bench.org", "sim3@bench.org")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(ws: Workspace, rgb: np.ndarray) -> tuple[str, str]:
    import hashlib

    _ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    data = buf.tobytes()
    sha = hashlib.sha256(data).hexdigest()
    rel = f"images/{sha[:2]}/{sha}.png"
    write_bytes_atomic(ws.root / rel, data)
    return rel, sha


def build(ws: Workspace, n_pairs: int, n_models: int, seed: int = 0) -> int:
    """LR set + candidates + pairs part ``bench`` (step 1, without the comparison pages). Returns the number of pairs
    written."""
    rng = np.random.default_rng(seed)
    models = [f"model{k}" for k in range(n_models)]
    n_lr = math.ceil(n_pairs / math.comb(n_models, 2))
    bench = ws.root / "benchmarks" / LR_SET
    rows, cands = [], []
    for i in range(n_lr):
        key = f"{LR_SET}{i:05d}"
        lr = cv2.GaussianBlur((rng.random((16, 16, 3)) * 255).astype(np.uint8), (0, 0), 1.0)
        _ok, buf = cv2.imencode(".png", cv2.cvtColor(lr, cv2.COLOR_RGB2BGR))
        write_bytes_atomic(bench / "lr" / f"{key}.png", buf.tobytes())
        rows.append({"key": key, "lr_path": f"lr/{key}.png"})
        up = cv2.resize(lr, (64, 64), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        for k, m in enumerate(models):
            out = np.clip(up + rng.normal(0, 4 * k + 1, up.shape), 0, 255).astype(np.uint8)
            rel, sha = _png(ws, out)
            cands.append(CandidateRec(LR_SET, key, m, "v1", rel, sha, 64, 64, 0.01, 1.0, f"{LR_SET}-unit"))
    pq.write_table(pa.Table.from_pylist(rows), bench / "index.parquet")
    write_table(ws.part("candidates", f"{LR_SET}-unit"), cands, CANDIDATES)
    pairs, _ = build_pairs(
        [Candidate(c.lr_key, c.model, c.model_version, c.output_path) for c in cands],
        n_pairs,
        "balanced",
        seed,
        min_distance=0,
    )
    write_table(ws.part("pairs", "bench"), pairs, PAIRS)
    return len(pairs)


class ImportSpy:
    """Records the task JSON that ``push_pairs`` sends to ``/import`` (the requests themselves go out unchanged)."""

    def __init__(self):
        self.tasks: list[dict] = []
        self._post = server.Api.post

    def __enter__(self):
        spy = self

        def post(api, path, json_body=None, **kw):
            if "/import" in path:
                spy.tasks.extend(json_body)
            return spy._post(api, path, json_body, **kw)

        server.Api.post = post
        return self

    def __exit__(self, *exc):
        server.Api.post = self._post


def raw_import(api: server.Api, tasks: list[dict]) -> float:
    """Seconds for Label Studio to import ``tasks`` in one request into a fresh project with the same config."""
    from labelling.interface import label_config

    pid = api.post("/api/projects/", {"title": f"raw import {time.time()}", "label_config": label_config()})["id"]
    t0 = time.monotonic()
    r = api.session.post(f"{api.url}/api/projects/{pid}/import", json=tasks, timeout=3600)
    r.raise_for_status()
    return time.monotonic() - t0


def raw_export(api: server.Api, pid: int) -> tuple[float, int]:
    """(seconds, annotations) of Label Studio's own JSON export of the project's annotated tasks, one request."""
    t0 = time.monotonic()
    r = api.session.get(f"{api.url}/api/projects/{pid}/export?exportType=JSON&download_all_tasks=false", timeout=3600)
    r.raise_for_status()
    dt = time.monotonic() - t0
    return dt, sum(len(t.get("annotations") or []) for t in r.json())


def simulated(users: dict[str, int], seed: int = 1):
    """``prelabelled`` for push_pairs: each annotator answers both criteria (screen terms), model k beats k+1."""
    rng = np.random.default_rng(seed)

    def answers(pair: dict, data: dict) -> list[dict]:
        out = []
        for email in ANNOTATORS:
            better = "a" if int(pair["model_a"][5:]) < int(pair["model_b"][5:]) else "b"
            pick = better if rng.random() < 0.8 else ("b" if better == "a" else "a")
            screen = "left" if pick == data["sr4k_left"] else "right"
            res = [
                {"from_name": c, "to_name": "left_crop", "type": "choices", "value": {"choices": [screen]}}
                for c in ("consistency", "naturalness")
            ]
            out.append({"completed_by": users[email], "lead_time": float(rng.uniform(3, 20)), "result": res})
        return out

    return answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=18000)
    ap.add_argument("--models", type=int, default=6)
    ap.add_argument("--new", type=int, default=500, help="annotations submitted before the routine pull")
    ap.add_argument("--workspace", type=Path, default=None, help="default: a fresh temporary folder")
    ap.add_argument("--push-only", action="store_true", help="stop after push, re-push and the raw import (steps 1-3)")
    args = ap.parse_args()
    if args.models < 2:
        ap.error("--models must be >= 2")
    ws = Workspace(args.workspace or tempfile.mkdtemp(prefix="sr4k-labelbench-"))
    (ws.root / "tables").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    n_pairs = build(ws, args.pairs, args.models)
    print(f"built {n_pairs} pairs over {args.models} models in {time.monotonic() - t0:.1f} s ({ws.root})", flush=True)
    fig: dict[str, float | int] = {}
    rv = compare.record_views(ws, "bench")  # what `sr4k pairs build` does after choosing the pairs
    fig["pairs_render_s"] = rv["render_seconds"]
    print(
        f"comparison pages of {rv['views']} pairs rendered in {rv['render_seconds']:.1f} s "
        f"({os.cpu_count()} worker processes)",
        flush=True,
    )
    assert rv["views"] == n_pairs
    settings = server.LabelSettings(port=free_port(), request_timeout=120)
    info = server.start(ws, settings)
    print(f"Label Studio up in {info.seconds:.1f} s at {info.url}", flush=True)
    try:
        api = server.Api.for_workspace(ws, settings)
        users = {u["email"]: u["id"] for u in server.list_users(api)}
        for email in ANNOTATORS:
            if email not in users:
                users[email] = api.post("/api/users/", {"email": email, "username": email})["id"]

        with ImportSpy() as spy:
            r = push.push_pairs(ws, "bench", overlap=3, gold_rate=0.05, project="bench", settings=settings)
        fig["push_s"] = r["seconds"]
        fig["push_task_data_s"] = r["task_data_seconds"]  # task JSON from the recorded pages (+ gold pages rendered)
        print(f"push: {r}", flush=True)
        assert r["duplicates"] == 0 and r["imported"] == n_pairs and r["rendered_unrecorded"] == 0
        rr = push.push_pairs(ws, "bench", overlap=3, gold_rate=0.05, project="bench", settings=settings)
        fig["repush_s"] = rr["seconds"]
        print(f"re-push: {rr}", flush=True)
        assert rr["imported"] == rr["gold_imported"] == 0 and rr["tasks_on_server"] == r["tasks_on_server"]
        fig["raw_import_s"] = raw_import(api, spy.tasks)
        print(f"raw import of the same {len(spy.tasks)} tasks: {fig['raw_import_s']:.1f} s", flush=True)
        if args.push_only:
            return _report(fig | {"pairs": n_pairs})

        ra = push.push_pairs(
            ws,
            "bench",
            overlap=3,
            gold_rate=0.05,
            project="bench_ann",
            settings=settings,
            prelabelled=simulated(users),
        )
        fig["push_ann_s"] = ra["seconds"]
        done = time.monotonic()
        n_ann = 3 * n_pairs
        print(f"push with {n_ann} embedded annotations: {ra}", flush=True)
        time.sleep(max(0.0, pull.MARGIN.total_seconds() - (time.monotonic() - done)))
        p = pull.pull_annotations(ws, "bench_ann", settings)
        fig["pull_s"] = p["seconds"]
        print(f"full pull: {p}", flush=True)
        assert p["mode"] == "full" and p["new_rows"] == n_ann, p
        fig["raw_export_s"], exported = raw_export(api, ra["project_id"])
        print(f"raw export: {fig['raw_export_s']:.1f} s, {exported} annotations", flush=True)
        assert exported == n_ann

        mapped = push.mapping(ws, ra["project_id"])
        empty = sorted((not m["is_gold"], m["task_id"]) for m in mapped.values())  # gold tasks have no annotation
        res = [
            {"from_name": c, "to_name": "left_crop", "type": "choices", "value": {"choices": ["tie"]}}
            for c in ("consistency", "naturalness")
        ]
        t1 = time.monotonic()
        for _not_gold, tid in itertools.islice(empty, args.new):
            api.post(f"/api/tasks/{tid}/annotations/", {"result": res, "lead_time": 5.0})
        print(f"{args.new} annotations submitted in {time.monotonic() - t1:.1f} s", flush=True)
        q = pull.pull_annotations(ws, "bench_ann", settings)
        fig["incpull_s"] = q["seconds"]
        print(f"routine pull: {q}", flush=True)
        assert q["mode"] == "incremental" and q["new_rows"] == args.new, q
        fig["pairs"], fig["annotations"] = n_pairs, n_ann
    finally:
        server.stop(ws)
    _report(fig)


def _report(fig: dict[str, float | int]) -> None:
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in fig.items()}))
    ratios = [f"push/raw_import {fig['push_s'] / fig['raw_import_s']:.2f}"]
    if "pull_s" in fig:
        ratios.append(f"full pull/raw_export {fig['pull_s'] / fig['raw_export_s']:.2f}")
    print("ratios: " + ", ".join(ratios))
    print(
        " ".join(
            f"{k}={fig[k]:.2f}" if isinstance(fig[k], float) else f"{k}={fig[k]}"
            for k in (
                "push_s",
                "pairs_render_s",
                "repush_s",
                "pull_s",
                "incpull_s",
                "raw_import_s",
                "raw_export_s",
                "pairs",
                "annotations",
            )
            if k in fig
        )
    )


if __name__ == "__main__":
    main()
