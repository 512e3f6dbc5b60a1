"""Push pairs to Label Studio as tasks: idempotent, crash-safe, with gold pairs and matched crops.

``push_pairs(workspace, selection)`` makes sure every selected pair is a task of the workspace's Label Studio project
``<project>`` (default ``pairs``), exactly once:

1. The project is found by the id in ``labelstudio/projects/<project>.json``, else by its title on the server (a
   crash between creating it and writing the file), else created: the labeling config of ``interface``, the
   instructions, ``maximum_annotations = overlap`` (Label Studio stops handing a task out once it has ``overlap``
   annotations: that is the overlap k). A changed overlap or config is PATCHed onto the existing project.
2. A local-files storage covering ``<workspace>/images`` lets Label Studio serve the images
   (``/data/local-files/?d=images/..``; the document root is the workspace, see ``server``). LR inputs are
   materialised there content-addressed (benchmarks and shards keep LR elsewhere or inside tars).
3. Reconcile: the server's tasks are listed (``pair_id`` from each task's data) and compared with the workspace's
   pair -> task mapping (``tables/label_tasks``). A task on the server that the mapping lacks (a push that died after
   the import and before writing the mapping) is *adopted*: its mapping row is written, nothing is imported again.
   A pair is imported only if the server has no task for it — the server is the truth of what exists, the
   workspace of what it means (gold answers, on-screen side).
4. New pairs and new gold pairs (``gold``; enough to keep ``gold_rate`` of the project's tasks gold) are shuffled
   together with ``seed`` and imported in batches; after each batch its mapping rows are written as one Parquet part
   (atomic). The import is not retried blindly — a lost response may hide a committed import — so a failure stops
   the push with an error, and the rerun's reconcile settles what got in.

So a push killed at any point (or a Label Studio killed under it) and rerun ends with each pair exactly once; the
final listing counts duplicates (``duplicates`` in the report; 0 unless someone imported by hand).

Task data (what the browser receives): ``pair_id``, ``sr4k_left`` ("a"/"b": which candidate is on the left, the
truth of what was displayed, copied into the mapping), and the image URLs ``lr``, ``left``, ``right`` and their
matched crops ``lr_crop``, ``left_crop``, ``right_crop``. Model names are not shown.

Matched crops (``matched_crops``): Label Studio cannot keep the zoom of several images in step, so the same region is
cut from each image and shown at the same size. The region is the ``crop`` x ``crop`` window (HR pixels, default
512) with the most detail in the LR input — the window (``crop / scale`` LR pixels, on a half-window grid) with the
largest variance of the Laplacian — because SR models differ most where there is texture. It depends only on the LR,
so a candidate's crop is computed once and shared by all its pairs. Images no larger than ``crop`` are shown whole.

Selection (``--pairs``): ``all``; the name of a pairs part (``tables/pairs/part-<name>.parquet``); or a SQL boolean
expression over the ``pairs`` view (``"lr_key like 'b%' and distance > 0.01"``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq

from labelling import gold as goldmod
from labelling.interface import INSTRUCTIONS, label_config
from labelling.server import Api, LabelSettings, LabelStudioError
from pipelines.storage import Workspace, write_bytes_atomic, write_json_atomic, write_table
from schemas.labels import LABEL_TASKS, LabelTaskRec

DEFAULT_PROJECT = "pairs"
DEFAULT_CROP = 512
BATCH = 500


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------------------------------ selection


def select_pairs(ws: Workspace, selection: str = "all") -> list[dict]:
    """Rows of the pairs table chosen by ``selection`` (module doc), one per pair_id, in pair_id order."""
    from pipelines import catalog

    part = ws.part("pairs", selection)
    con = catalog.connect(ws.root)
    try:
        if selection == "all":
            sql = "select * from pairs"
        elif "/" not in selection and part.exists():
            sql = f"select * from read_parquet('{str(part).replace(chr(39), chr(39) * 2)}')"
        else:
            sql = f"select * from pairs where {selection}"
        try:
            rel = con.execute(sql)
        except Exception as e:  # duckdb's parser/binder errors: a bad --pairs expression is user input
            have = sorted(p.stem.removeprefix("part-") for p in ws.table_dir("pairs").glob("part-*.parquet"))
            raise ValueError(f"--pairs {selection!r} is neither 'all', a pairs part ({', '.join(have) or 'none'}) "
                             f"nor a valid SQL condition over pairs: {e}") from None  # fmt: skip
        cols = [d[0] for d in rel.description]
        rows = [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]
        sizes = dict(((r[0], r[1]), (r[2], r[3])) for r in con.execute(
            "select lr_key, output_path, width, height from candidates").fetchall())  # fmt: skip
        lr_sets = dict(con.execute("select lr_key, min(lr_set) from candidates group by 1").fetchall())
    finally:
        con.close()
    if not rows:
        raise ValueError(f"--pairs {selection!r} selects no pairs in {ws.root}: build them with `sr4k pairs build`")
    out: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r["pair_id"]):
        r["size_a"] = sizes.get((r["lr_key"], r["path_a"]))
        r["size_b"] = sizes.get((r["lr_key"], r["path_b"]))
        r["lr_set"] = lr_sets.get(r["lr_key"])
        out.setdefault(r["pair_id"], r)
    return list(out.values())


# ------------------------------------------------------------------------------------------------ project


def project_file(ws: Workspace, project: str):
    return ws.root / "labelstudio" / "projects" / f"{project}.json"


def project_title(ws: Workspace, project: str) -> str:
    tag = hashlib.sha256(str(ws.root).encode()).hexdigest()[:6]
    return f"sr4k {project} ({tag})"


def ensure_project(api: Api, ws: Workspace, project: str, overlap: int) -> int:
    """The project's id (module doc, step 1 and 2)."""
    path = project_file(ws, project)
    title = project_title(ws, project)
    settings = {"label_config": label_config(), "maximum_annotations": overlap, "expert_instruction": INSTRUCTIONS,
                "show_instruction": True, "show_skip_button": True, "sampling": "Uniform sampling",
                "show_overlap_first": True}  # fmt: skip
    pid = json.loads(path.read_text())["id"] if path.exists() else None
    if pid is None:
        found = [p for p in _all(api, "/api/projects/?page_size=100") if p["title"] == title]
        pid = found[0]["id"] if found else api.post("/api/projects/", {"title": title, **settings})["id"]
        write_json_atomic(path, {"id": pid, "title": title, "created_at": now()})
    try:
        proj = api.get(f"/api/projects/{pid}")
    except LabelStudioError as e:
        if "404" not in str(e):
            raise
        raise LabelStudioError(
            f"project {pid} recorded in {path} is not on the server at {api.url} (a different or reset Label Studio "
            f"database?). Point sr4k at the right server, or move {path} away to start a new project."
        ) from None
    changed = {k: v for k, v in settings.items() if k in ("label_config", "maximum_annotations")
               and proj.get(k) != v}  # fmt: skip
    if changed:
        api.patch(f"/api/projects/{pid}", changed)
    storages = api.get(f"/api/storages/localfiles/?project={pid}")
    images = str(ws.root / "images")
    if not any(s.get("path") == images for s in storages):
        (ws.root / "images").mkdir(parents=True, exist_ok=True)
        api.post("/api/storages/localfiles/", {"project": pid, "path": images, "title": "sr4k images",
                                               "use_blob_urls": False})  # fmt: skip
    return pid


def _all(api: Api, path: str) -> list[dict]:
    data = api.get(path)
    return data["results"] if isinstance(data, dict) else data


def server_tasks(api: Api, project_id: int, page_size: int = 2000) -> dict[str, list[dict]]:
    """pair_id -> the server's tasks for it ({"id", "sr4k_left"}), all pages."""
    out: dict[str, list[dict]] = {}
    page = 1
    while True:
        data = api.get(f"/api/tasks/?project={project_id}&fields=task_only&page_size={page_size}&page={page}")
        for t in data["tasks"]:
            d = t.get("data") or {}
            out.setdefault(d.get("pair_id"), []).append({"id": t["id"], "sr4k_left": d.get("sr4k_left")})
        if page * page_size >= data["total"] or not data["tasks"]:
            return out
        page += 1


def mapping(ws: Workspace, project_id: int | None = None) -> dict[str, dict]:
    """pair_id -> its latest label_tasks row (of ``project_id`` if given)."""
    parts = sorted(ws.table_dir("label_tasks").glob("part-*.parquet"))
    rows = [r for p in parts for r in pq.read_table(p).to_pylist()]
    out: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r["pushed_at"]):
        if project_id is None or r["project_id"] == project_id:
            out[r["pair_id"]] = r
    return out


# ------------------------------------------------------------------------------------------------ images


def url(rel: str) -> str:
    return f"/data/local-files/?d={rel}"


def _store_png(ws: Workspace, rgb: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    data = png.tobytes()
    sha = hashlib.sha256(data).hexdigest()
    rel = f"images/{sha[:2]}/{sha}.png"
    if not (ws.root / rel).exists():
        write_bytes_atomic(ws.root / rel, data)
    return rel


def detail_window(lr: np.ndarray, win: int) -> tuple[int, int]:
    """Top-left (x, y) of the ``win`` x ``win`` LR window with the largest Laplacian variance (half-window grid)."""
    gray = cv2.cvtColor(lr, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = cv2.Laplacian(gray, cv2.CV_32F)
    h, w = gray.shape
    step = max(1, win // 2)
    best, where = -1.0, (0, 0)
    for y in range(0, max(1, h - win + 1), step):
        for x in range(0, max(1, w - win + 1), step):
            v = float(lap[y : y + win, x : x + win].var())
            if v > best:
                best, where = v, (x, y)
    return where


class ImageCache:
    """LR paths and matched crops, each computed once per push (module doc)."""

    def __init__(self, ws: Workspace, crop: int):
        self.ws, self.crop = ws, crop
        self.lr_loaders: dict[str, dict[str, Callable[[], np.ndarray]]] = {}
        self.lr: dict[str, tuple[str, np.ndarray]] = {}
        self.crops: dict[tuple[str, str], str] = {}

    def lr_image(self, lr_set: str | None, lr_key: str) -> tuple[str, np.ndarray]:
        if lr_key not in self.lr:
            if lr_set is None:
                raise ValueError(f"LR {lr_key!r} has no row in the candidates table: cannot find its LR image")
            if lr_set not in self.lr_loaders:
                self.lr_loaders[lr_set] = _lr_loaders(self.ws, lr_set)
            rgb = self.lr_loaders[lr_set][lr_key]()
            self.lr[lr_key] = (_store_png(self.ws, rgb), rgb)
        return self.lr[lr_key]

    def window(self, lr: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) of the crop in HR pixels, or None when the image is shown whole."""
        w, h = size
        if max(w, h) <= self.crop or self.crop <= 0:
            return None
        scale = w / lr.shape[1]
        win = max(1, round(self.crop / scale))
        x, y = detail_window(lr, min(win, lr.shape[0], lr.shape[1]))
        side = min(self.crop, w, h)
        return round(x * scale), round(y * scale), side, side

    def hr_crop(self, lr_key: str, rel: str, box: tuple[int, int, int, int] | None) -> str:
        if box is None:
            return rel
        if (lr_key, rel) not in self.crops:
            bgr = cv2.imread(str(self.ws.root / rel), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"candidate image {self.ws.root / rel} is missing or unreadable")
            x, y, w, h = box
            x, y = min(x, bgr.shape[1] - w), min(y, bgr.shape[0] - h)
            self.crops[(lr_key, rel)] = _store_png(self.ws, cv2.cvtColor(bgr[y : y + h, x : x + w], cv2.COLOR_BGR2RGB))
        return self.crops[(lr_key, rel)]

    def task_data(self, pair: dict) -> dict[str, str]:
        lr_rel, lr = self.lr_image(pair.get("lr_set"), pair["lr_key"])
        size = pair.get("size_a") or _size(self.ws, pair["path_a"])
        box = self.window(lr, size)
        left, right = ("a", "b") if pair["left"] == "a" else ("b", "a")
        data = {"pair_id": pair["pair_id"], "sr4k_left": pair["left"], "lr": url(lr_rel),
                "left": url(pair[f"path_{left}"]), "right": url(pair[f"path_{right}"])}  # fmt: skip
        if box is None:
            data |= {"lr_crop": data["lr"], "left_crop": data["left"], "right_crop": data["right"]}
        else:
            scale = size[0] / lr.shape[1]
            x, y, w, _h = box
            lx, ly, lw = round(x / scale), round(y / scale), max(1, round(w / scale))
            lr_crop = _store_png(self.ws, np.ascontiguousarray(lr[ly : ly + lw, lx : lx + lw]))
            data |= {"lr_crop": url(lr_crop),
                     "left_crop": url(self.hr_crop(pair["lr_key"], pair[f"path_{left}"], box)),
                     "right_crop": url(self.hr_crop(pair["lr_key"], pair[f"path_{right}"], box))}  # fmt: skip
        return data


def _lr_loaders(ws: Workspace, lr_set: str) -> dict[str, Callable[[], np.ndarray]]:
    """key -> RGB loader of an LR set (a benchmark or a shard dataset)."""
    from pipelines.candidates import lr_items

    return {it.key: it.load for it in lr_items(ws, lr_set)}


def _size(ws: Workspace, rel: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(ws.root / rel) as im:
        return im.size


# ------------------------------------------------------------------------------------------------ push


def push_pairs(
    workspace: str | Workspace,
    selection: str = "all",
    overlap: int = 3,
    gold_rate: float = 0.05,
    project: str = DEFAULT_PROJECT,
    crop: int = DEFAULT_CROP,
    seed: int = 0,
    batch_size: int = BATCH,
    settings: LabelSettings | None = None,
    prelabelled: Callable[[dict, dict], list[dict]] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Make every selected pair a task of ``project`` exactly once (module doc). Returns a report dict.

    ``prelabelled(pair, task_data)`` may return annotations (Label Studio's format, ``completed_by`` a user id) to
    import embedded in the new task — for migrating labels collected elsewhere, and for simulated annotators (one
    import instead of ~0.13 s per ``annotations.create``). ``on_batch(done, total)`` reports progress."""
    if overlap < 1:
        raise ValueError("--overlap must be >= 1 (annotations per pair)")
    if not 0 <= gold_rate < 1:
        raise ValueError("--gold-rate must be in [0, 1)")
    t0 = time.monotonic()
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    pairs = select_pairs(ws, selection)
    api = Api.for_workspace(ws, settings)
    pid = ensure_project(api, ws, project, overlap)
    golds = goldmod.load_gold(ws, project)
    on_server = server_tasks(api, pid)
    adopted = _adopt(ws, project, pid, on_server, golds)
    known = mapping(ws, pid)
    new = [p for p in pairs if p["pair_id"] not in on_server]
    n_gold_have = sum(1 for r in known.values() if r["is_gold"])
    n_real = len(known) - n_gold_have + len(new)
    n_gold_new = max(0, round(gold_rate * n_real / (1 - gold_rate)) - n_gold_have) if gold_rate else 0
    gold_new = _new_gold(ws, project, new or pairs, n_gold_new, seed, golds, on_server)
    items = [*new, *gold_new]
    np.random.default_rng(seed + len(known)).shuffle(items)
    cache = ImageCache(ws, crop)
    imported = 0
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        tasks = []
        for p in batch:
            data = cache.task_data(p)
            task = {"data": data}
            if prelabelled is not None and not p.get("gold_consistency"):
                task["annotations"] = prelabelled(p, data)
            tasks.append(task)
        r = api.post(f"/api/projects/{pid}/import?return_task_ids=true", tasks, retry=False)
        ids = r.get("task_ids") or []
        if len(ids) != len(batch):  # an old server without return_task_ids: the rerun's reconcile adopts them
            raise LabelStudioError(f"import returned {len(ids)} task ids for {len(batch)} tasks; rerun the push")
        _write_mapping(ws, pid, [(p, tid, p["left"]) for p, tid in zip(batch, ids, strict=True)])
        imported += len(batch)
        if on_batch:
            on_batch(imported, len(items))
    final = server_tasks(api, pid)
    dup = {k: v for k, v in final.items() if len(v) > 1}
    return {"project": project, "project_id": pid, "url": api.url, "selected": len(pairs),
            "already_on_server": len(pairs) - len(new), "adopted": adopted, "imported": len(new),
            "gold_imported": len(gold_new), "gold_total": n_gold_have + len(gold_new),
            "tasks_on_server": sum(len(v) for v in final.values()), "duplicates": len(dup),
            "overlap": overlap, "seconds": round(time.monotonic() - t0, 2)}  # fmt: skip


def _adopt(ws: Workspace, project: str, pid: int, on_server: dict[str, list[dict]], golds: dict) -> int:
    """Mapping rows for server tasks the workspace does not know (module doc, step 3)."""
    known = mapping(ws, pid)
    missing = [(k, ts[0]) for k, ts in on_server.items() if k and (k not in known or
               known[k]["task_id"] not in {t["id"] for t in ts})]  # fmt: skip
    if not missing:
        return 0
    pairs = {p["pair_id"]: p for p in _pairs_by_id(ws, [k for k, _ in missing])}
    rows = []
    for key, task in missing:
        pair = golds.get(key) or pairs.get(key)
        if pair is None:
            raise LabelStudioError(f"task {task['id']} on the server is for pair {key}, which is neither in the "
                                   f"pairs table nor a gold pair of {project!r}: imported by hand?")  # fmt: skip
        rows.append((pair, task["id"], task["sr4k_left"] or pair["left"]))
    _write_mapping(ws, pid, rows, tag="adopt")
    return len(rows)


def _pairs_by_id(ws: Workspace, ids: Iterable[str]) -> list[dict]:
    want = set(ids)
    return [p for p in select_pairs(ws, "all") if p["pair_id"] in want] if want else []


def _new_gold(ws: Workspace, project: str, pool: list[dict], n: int, seed: int, golds: dict,
              on_server: dict) -> list[dict]:  # fmt: skip
    """``n`` gold pairs from distinct LRs of ``pool`` not yet gold; definitions saved before import."""
    if n <= 0:
        return []
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    used = {g["lr_key"] for g in golds.values()}
    bases = []
    for i in order:
        p = pool[int(i)]
        gid = goldmod.gold_pair_id(p["lr_key"], p["model_a"], p["version_a"], seed)
        if p["lr_key"] in used or gid in golds or gid in on_server:
            continue
        used.add(p["lr_key"])
        bases.append(p)
        if len(bases) == n:
            break
    made = goldmod.make_gold(ws, bases, seed)
    for g in made:
        g["lr_set"] = next(p["lr_set"] for p in bases if p["lr_key"] == g["lr_key"])
        g["size_a"] = next(p["size_a"] for p in bases if p["lr_key"] == g["lr_key"])
        golds[g["pair_id"]] = g
    goldmod.save_gold(ws, project, golds)
    return made


def _write_mapping(ws: Workspace, pid: int, rows: list[tuple[dict, int, str]], tag: str = "push") -> None:
    at = now()
    recs = [LabelTaskRec(p["pair_id"], int(tid), pid, p["lr_key"], left, bool(p.get("gold_consistency")),
                         p.get("gold_consistency"), p.get("gold_naturalness"), at)
            for p, tid, left in rows]  # fmt: skip
    ident = hashlib.sha256(json.dumps(sorted(r.pair_id for r in recs)).encode()).hexdigest()[:12]
    write_table(ws.part("label_tasks", f"p{pid}-{tag}-{ident}-{int(time.time())}"), recs, LABEL_TASKS)
