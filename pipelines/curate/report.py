"""The curation report: one self-contained HTML page that tells a data team whether a run is good.

``write_report(ws_root)`` reads a workspace through the DuckDB catalog (``pipelines.store.catalog``) and writes
``<workspace>/reports/curate.html`` atomically. Everything is embedded (plots as PNG, thumbnails as JPEG, both
base64), so the file can be mailed or opened from anywhere. Sections:

1. totals (seen / kept / rejected, samples / shards / bytes from the shard manifests) and the check
   ``seen = kept + rejected``;
2. rejects per (stage, reason) with their share of the inputs and example URIs;
3. histograms of the filter scores in ``images``, kept vs rejected, and of the image short side;
4. contact sheets of kept images and of rejected images per reason (inputs that never decoded are listed as text);
5. a few samples: the HR crop box on the source thumbnail, seed and the sampled degradation parameters.

Only the 256-px thumbnails (``thumbs/<key>.jpg``) are read, and only as bytes: no image is decoded. Every string
that comes from data goes through Jinja2 autoescaping.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import numpy as np
from matplotlib.figure import Figure

from pipelines.store import catalog, safety
from pipelines.store.workspace import Workspace, atomic_open

__all__ = ["REPORT_NAME", "REPORT_VERSION", "write_report"]

REPORT_VERSION = "report/1"
REPORT_NAME = "curate.html"
SAMPLE_ROWS = 8  # samples shown with their crop box and degradation
TEXT_REJECTS_PER_REASON = 20  # URIs listed per reason for inputs without a thumbnail
EXAMPLES_PER_REASON = 2  # example URIs in the reasons table
STAGE_ORDER = ("ingest", "decode", "filter", "crop", "dedup")
LOG_X_SCORES = {"sharpness"}  # drawn on a log x axis when the values span more than two decades
SCORES = ("sharpness", "jpeg_quality", "flat_fraction", "mean_luma", "clip_high", "photo_score")
STATUS_COLOURS = {"kept": "#2e7d32", "rejected": "#c62828", "unaccounted": "#757575"}
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # a key that may name a file under thumbs/


@dataclass(slots=True)
class Totals:
    seen: int
    kept: int
    rejected: int
    overlap: int  # inputs both kept and rejected (a bug when > 0)
    unaccounted: list[str]  # a few URIs seen but neither kept nor rejected
    samples: int
    shards: int
    bytes: int
    datasets: list[dict[str, Any]] = field(default_factory=list)  # one row per manifest (or per missing one)
    samples_source: str = "manifest"

    @property
    def ok(self) -> bool:
        return self.seen == self.kept + self.rejected and self.overlap == 0


def write_report(ws_root: str | Path, dataset: str | None = None, max_thumbs: int = 48) -> Path:
    """Write <workspace>/reports/curate.html (atomically: temp name + rename, via store.workspace.atomic_open) and
    return its path. A single self-contained HTML file: images are embedded as base64 (thumbnails and plots), so
    the file can be mailed or opened from anywhere."""
    ws = Workspace(ws_root)
    con = catalog.connect(ws.root)
    try:
        context = _gather(con, ws, dataset, max(0, max_thumbs))
    finally:
        con.close()
    html = _environment().from_string(_template()).render(**context)
    path = ws.reports / REPORT_NAME
    with atomic_open(path) as f:
        f.write(html.encode("utf-8"))
    return path


def _gather(con: duckdb.DuckDBPyConnection, ws: Workspace, dataset: str | None, max_thumbs: int) -> dict[str, Any]:
    totals = _totals(con, ws, dataset)
    samples_table = "samples"
    if _count(con, "select count(*) from samples") == 0 and _has_view(con, "staged_samples"):
        samples_table = "staged_samples"  # not packed yet: show what was built
    return {
        "version": REPORT_VERSION,
        "root": str(ws.root),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "t": totals,
        "versions": _versions(con),
        "reasons": _reasons(con, totals.seen),
        "plots": _histograms(con),
        "kept_thumbs": _kept_sheet(con, ws, max_thumbs),
        "reject_groups": _reject_sheets(con, ws, max(1, max_thumbs // 4) if max_thumbs else 0),
        "samples": _samples(con, ws, samples_table),
        "samples_table": samples_table,
        "colours": STATUS_COLOURS,
    }


# ------------------------------------------------------------------------------------------------------------------ #
# Data
# ------------------------------------------------------------------------------------------------------------------ #


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> int:
    return int(con.execute(sql, params or []).fetchone()[0] or 0)


def _has_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return _count(con, "select count(*) from duckdb_views() where view_name = ?", [name]) > 0


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    rel = con.execute(sql, params or [])
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]


def _totals(con: duckdb.DuckDBPyConnection, ws: Workspace, dataset: str | None) -> Totals:
    seen = _count(con, "select count(distinct uri) from sources")
    kept = _count(con, "select count(distinct uri) from samples")
    rejected = _count(con, "select count(distinct uri) from rejects")
    overlap = _count(
        con,
        "select count(*) from (select distinct uri from samples) join (select distinct uri from rejects) using (uri)",
    )
    unaccounted = [
        r[0]
        for r in con.execute(
            """select distinct uri from sources where uri not in (select uri from samples)
           and uri not in (select uri from rejects) order by uri limit 5"""
        ).fetchall()
    ]
    datasets = _manifests(ws, dataset)
    found = [d for d in datasets if d["found"]]
    totals = Totals(seen, kept, rejected, overlap, unaccounted, 0, 0, 0, datasets)
    if found:
        totals.samples = sum(d["samples"] for d in found)
        totals.shards = sum(d["shards"] for d in found)
        totals.bytes = sum(d["bytes"] for d in found)
    else:
        totals.samples = _count(con, "select count(*) from samples")
        totals.samples_source = "samples table (no shard manifest)"
    return totals


def _manifests(ws: Workspace, dataset: str | None) -> list[dict[str, Any]]:
    """One entry per dataset: the named one, else every folder under shards/ (usually exactly one)."""
    if dataset is not None:
        names = [safety.check_name(dataset, "--dataset")]
    else:
        shards = ws.shards
        names = sorted(p.name for p in shards.iterdir() if p.is_dir()) if shards.is_dir() else []
    out = []
    for name in names:
        path = ws.shard_dir(name) / "manifest.json"
        entry: dict[str, Any] = {"dataset": name, "found": False, "note": "no manifest.json"}
        if path.is_file():
            try:
                m = json.loads(safety.read_capped(path, ws.shards, 64 << 20))
                shards = m.get("shards", [])
                entry |= {
                    "found": True,
                    "note": "",
                    "split": m.get("split", ""),
                    "samples": int(m.get("samples", 0)),
                    "shards": len(shards),
                    "bytes": sum(int(s.get("bytes", 0)) for s in shards),
                    "config_hash": m.get("config_hash", ""),
                }
            except (OSError, ValueError, TypeError, AttributeError) as e:
                entry["note"] = f"unreadable manifest.json: {e}"
        out.append(entry)
    return out


def _versions(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Distinct pipeline versions (+ config hash) in the samples: more than one means a mixed run."""
    rows = con.execute("select versions, count(*) from samples group by 1 order by 2 desc limit 5").fetchall()
    out = []
    for text, n in rows:
        try:
            parsed = json.loads(text)
            items = sorted(parsed.items()) if isinstance(parsed, dict) else [("versions", text)]
        except (TypeError, ValueError):
            items = [("versions", text)]
        out.append({"items": [(k, str(v)) for k, v in items], "count": n})
    return out


def _stage_rank(stage: str) -> int:
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)


def _reasons(con: duckdb.DuckDBPyConnection, seen: int) -> list[dict[str, Any]]:
    rows = _rows(con, "select stage, reason, count(*) as n, count(distinct uri) as inputs from rejects group by 1, 2")
    examples = con.execute(
        """select stage, reason, uri from (
               select stage, reason, uri, row_number() over (partition by stage, reason order by uri) as rn
               from (select distinct stage, reason, uri from rejects))
           where rn <= ? order by uri""",
        [EXAMPLES_PER_REASON],
    ).fetchall()
    by_reason: dict[tuple[str, str], list[str]] = {}
    for stage, reason, uri in examples:
        by_reason.setdefault((stage, reason), []).append(uri)
    for r in rows:
        r["share"] = r["inputs"] / seen if seen else 0.0
        r["examples"] = by_reason.get((r["stage"], r["reason"]), [])
    rows.sort(key=lambda r: (_stage_rank(r["stage"]), -r["n"], r["reason"]))
    return rows


def _thumb_uri(ws: Workspace, key: str | None) -> str | None:
    """``data:`` URI of the key's thumbnail, or None when the key is unsafe or the file is missing/unreadable."""
    if not key or not _SAFE_KEY.fullmatch(key):
        return None
    try:  # regular files inside thumbs/ only: a FIFO or an outside link must neither hang nor leak into the report
        data = safety.read_capped(ws.thumb(key), ws.thumbs, 16 << 20)
    except (OSError, ValueError):  # safety.UnsafeInput is a ValueError
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii") if data else None


def _kept_sheet(con: duckdb.DuckDBPyConnection, ws: Workspace, limit: int) -> list[dict[str, Any]]:
    if not limit:
        return []
    rows = _rows(
        con,
        """select distinct on (i.key) i.key, i.uri, i.width, i.height, i.photo_score from images i
           where i.uri in (select uri from samples) order by i.key limit ?""",
        [limit],
    )
    for r in rows:
        r["thumb"] = _thumb_uri(ws, r["key"])
        r["caption"] = f"{r['width']}×{r['height']} · photo {r['photo_score']:.2f}"
    return rows


def _reject_sheets(con: duckdb.DuckDBPyConnection, ws: Workspace, per_reason: int) -> list[dict[str, Any]]:
    """Per (stage, reason): thumbnails of the inputs that decoded, a text list of those that did not.

    Only the rows shown leave DuckDB (a window per group), so a run with many rejects stays cheap."""
    rows = _rows(
        con,
        """with r as (select distinct on (uri, stage, reason) * from rejects order by uri, stage, reason),
                i as (select distinct on (uri) * from images order by uri),
                j as (select r.stage, r.reason, r.uri, r.detail, coalesce(i.key, r.key) as key, r.duplicate_of,
                             i.width, i.height, i.photo_score, i.width is not null as decoded,
                             row_number() over (partition by r.stage, r.reason, i.width is not null order by r.uri)
                               as rn
                      from r left join i using (uri))
           select * from j where rn <= case when decoded then ? else ? end order by stage, reason, uri""",
        [per_reason, TEXT_REJECTS_PER_REASON],
    )
    totals = con.execute(
        "select stage, reason, count(*) from (select distinct uri, stage, reason from rejects) group by 1, 2"
    ).fetchall()
    groups = {
        (stage, reason): {"stage": stage, "reason": reason, "total": n, "thumbs": [], "text": []}
        for stage, reason, n in totals
    }
    for r in rows:
        g = groups[(r["stage"], r["reason"])]
        if r["decoded"]:
            r["thumb"] = _thumb_uri(ws, r["key"])
            r["caption"] = f"{r['width']}×{r['height']} · photo {r['photo_score']:.2f}"
            g["thumbs"].append(r)
        else:
            g["text"].append(r)
    for g in groups.values():
        g["hidden"] = g["total"] - len(g["thumbs"]) - len(g["text"])
    return sorted(groups.values(), key=lambda g: (_stage_rank(g["stage"]), -g["total"], g["reason"]))


def _samples(con: duckdb.DuckDBPyConnection, ws: Workspace, table: str) -> list[dict[str, Any]]:
    rows = _rows(
        con,
        f"""select s.key, s.image_key, s.uri, s.crop_x, s.crop_y, s.hr_width, s.hr_height, s.lr_width, s.lr_height,
                   s.scale, s.seed, s.detail_score, s.degradation, i.width, i.height
            from {table} s left join (select distinct on (key) key, width, height from images order by key) i
            on i.key = s.image_key order by s.key limit ?""",
        [SAMPLE_ROWS],
    )
    for r in rows:
        r["thumb"] = _thumb_uri(ws, r["image_key"])
        r["box"] = _box_style(r)
        r["params"] = _degradation_lines(r["degradation"])
    return rows


def _box_style(r: dict[str, Any]) -> str | None:
    """CSS placing the crop box over the thumbnail, in percent of the source (the thumb keeps the aspect)."""
    w, h = r["width"], r["height"]
    if not w or not h:
        return None
    pct = (100 * r["crop_x"] / w, 100 * r["crop_y"] / h, 100 * r["hr_width"] / w, 100 * r["hr_height"] / h)
    return "left:{:.3f}%;top:{:.3f}%;width:{:.3f}%;height:{:.3f}%".format(*pct)


def _degradation_lines(text: str) -> list[tuple[str, str]]:
    """(name, compact value) per top-level key of the degradation JSON; whatever keys the degrader wrote."""
    try:
        params = json.loads(text)
    except (TypeError, ValueError):
        return [("raw", str(text))]
    if not isinstance(params, dict):
        return [("value", _compact(params))]
    return [(str(k), _compact(v)) for k, v in params.items() if k not in ("seed", "scale")]


def _compact(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        parts = [_compact(x) if isinstance(x, str) else f"{k}={_compact(x)}" for k, x in v.items()]
        return " ".join(parts) if parts else "{}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_compact(x) for x in v) + "]"
    return str(v)


# ------------------------------------------------------------------------------------------------------------------ #
# Plots
# ------------------------------------------------------------------------------------------------------------------ #


def _histograms(con: duckdb.DuckDBPyConnection) -> list[dict[str, str]]:
    """One embedded PNG per score (and the short side), kept vs rejected overlaid; [] without decoded images."""
    data = con.execute(
        f"""select {", ".join(SCORES)}, least(width, height) as short_side,
                   case when uri in (select uri from samples) then 'kept'
                        when uri in (select uri from rejects) then 'rejected' else 'unaccounted' end as status
            from images"""
    ).fetchnumpy()
    status = np.asarray(data["status"]).astype(str)
    if status.size == 0:
        return []
    plots = []
    for name in (*SCORES, "short_side"):
        values = np.ma.filled(np.ma.asarray(data[name], dtype=np.float64), np.nan)
        finite = np.isfinite(values)
        groups = {s: values[finite & (status == s)] for s in STATUS_COLOURS}
        title = "short side (px)" if name == "short_side" else name
        missing = int((~finite).sum())
        note = f"{missing} images without a value" + (" (not JPEG)" if name == "jpeg_quality" else "")
        png = _histogram_png(title, groups, allow_log=name in LOG_X_SCORES)
        plots.append({"name": title, "png": png, "note": note if missing else ""})
    return plots


def _bins(values: np.ndarray, allow_log: bool) -> tuple[np.ndarray, bool]:
    """Shared bin edges; logarithmic (if allowed) when nearly all values are positive and span over two decades."""
    n = max(10, min(40, 2 * int(math.sqrt(values.size))))
    positive = values[values > 0]
    if (
        allow_log
        and positive.size > 1
        and positive.size >= 0.9 * values.size
        and positive.max() > 100 * positive.min()
    ):
        return np.geomspace(positive.min(), positive.max(), n + 1), True  # the few zeros land in the first bin
    return np.histogram_bin_edges(values, bins=n), False


def _histogram_png(title: str, groups: dict[str, np.ndarray], allow_log: bool) -> str:
    fig = Figure(figsize=(4.2, 2.6), dpi=100)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.89, bottom=0.13)
    ax = fig.add_subplot()
    both = np.concatenate(list(groups.values()))
    if both.size:
        edges, log = _bins(both, allow_log)
        for status, vals in groups.items():
            if vals.size:
                counts, _ = np.histogram(np.clip(vals, edges[0], edges[-1]), bins=edges)
                colour = STATUS_COLOURS[status]
                ax.stairs(counts, edges, fill=True, alpha=0.4, color=colour, label=f"{status} ({vals.size})")
                ax.stairs(counts, edges, color=colour, linewidth=1)
        if log:
            ax.set_xscale("log")
        ax.legend(fontsize=7, frameon=False)
    else:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes, color="#757575")
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)
    ax.set_ylabel("images", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ------------------------------------------------------------------------------------------------------------------ #
# HTML
# ------------------------------------------------------------------------------------------------------------------ #


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{n} B"


def _template() -> str:
    """The page (jinja2, autoescaped): ``report.html.j2`` beside this module, shipped as package data."""
    return (Path(__file__).with_name("report.html.j2")).read_text(encoding="utf-8")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["bytes"] = _human_bytes
    env.filters["pct"] = lambda x: f"{100 * x:.1f}%"
    env.filters["thousands"] = lambda x: f"{x:,}"
    return env
