"""HTML report of a benchmark evaluation run: means per model, a plot of each metric per model, and side-by-side
crops (LR nearest-upsampled | each model | HR) for the first items. Self-contained: images are embedded as base64."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from jinja2 import Environment
from matplotlib.figure import Figure

from pipelines.bench.evaluate import summarize_results
from pipelines.store.workspace import Workspace, write_bytes_atomic

PLOTTED = ("psnr_y", "ssim_y", "lpips", "niqe", "musiq", "periodicity_excess_stride", "periodic_share", "seconds")

_TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>sr4k bench {{ bench }}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1500px} table{border-collapse:collapse}
td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right} th:first-child,td:first-child{text-align:left}
.crops{display:flex;gap:6px;flex-wrap:wrap;margin-bottom:14px} .crops figure{margin:0}
.crops img{width:192px;height:192px;image-rendering:pixelated} figcaption{font-size:12px;text-align:center}
.na{color:#888}</style></head><body>
<h1>Benchmark <code>{{ bench }}</code> ({{ manifest.kind }}, x{{ manifest.scale }}, {{ manifest.count }} items)</h1>
<p>run {{ info.run }} · {{ generated }} · {{ info.version }}</p>
<p>{% for k, v in info.availability.items() %}<span class="na">{{ k }}: {{ v }}</span><br>{% endfor %}</p>
<table><tr><th>model</th><th>items</th>{% for c in cols %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in summary %}<tr><td>{{ r.model }}</td><td>{{ r['items'] }}</td>
{% for c in cols %}<td>{{ fmt(r[c]) }}</td>{% endfor %}</tr>{% endfor %}</table>
<h2>Metrics per model</h2><img src="data:image/png;base64,{{ plot }}" alt="metrics per model">
<h2>Side by side</h2>
{% for key, figs in crops %}<h3><code>{{ key }}</code></h3><div class="crops">
{% for label, b64 in figs %}<figure><img src="data:image/png;base64,{{ b64 }}" alt="{{ label }}">
<figcaption>{{ label }}</figcaption></figure>{% endfor %}</div>{% endfor %}
</body></html>"""


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def _plot(summary: list[dict]) -> str:
    fig = Figure(figsize=(3.2 * len(PLOTTED), 3.0))
    models = [r["model"] for r in summary]
    for i, col in enumerate(PLOTTED):
        ax = fig.add_subplot(1, len(PLOTTED), i + 1)
        vals = [r.get(col) if r.get(col) is not None else 0.0 for r in summary]
        ax.bar(models, vals, color="#4a7")
        ax.set_title(col, fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode()


def write_bench_report(ws_root: str | Path, bench: str, results: Path, info: dict, max_items: int = 6) -> Path:
    ws = Workspace(ws_root)
    manifest = json.loads((ws.bench_dir(bench) / "manifest.json").read_text())
    summary = summarize_results(results)
    sql = "select distinct key from read_parquet(?) order by 1 limit ?"  # bound parameters, never pasted in
    keys = [k for (k,) in duckdb.connect().execute(sql, [str(results), int(max_items)]).fetchall()]
    crops_root = ws.root / "evals" / bench / "crops"
    crops = []
    for key in keys:
        figs = []
        for label, name in [("LR (nearest)", "_lr"), *[(m, m) for m in info["models"]], ("HR", "_hr")]:
            p = crops_root / key / f"{name}.png"
            if p.exists():
                figs.append((label, base64.b64encode(p.read_bytes()).decode()))
        crops.append((key, figs))
    cols = [c for c in summary[0] if c not in ("model", "items")] if summary else []
    html = (
        Environment(autoescape=True)
        .from_string(_TEMPLATE)
        .render(
            bench=bench,
            manifest=manifest,
            info=info,
            summary=summary,
            cols=cols,
            fmt=_fmt,
            plot=_plot(summary),
            crops=crops,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
    )
    out = ws.reports / f"bench-{bench}.html"
    write_bytes_atomic(out, html.encode())
    return out
