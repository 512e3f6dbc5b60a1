"""What each command prints when its flow has finished: the summary tables of curate, bench build/eval, candidates
and pairs, and the demo's per-stage display (which reuses them). Kept apart from ``flows.cli`` so that the module
with the commands reads as the list of commands; the rendering of results lives here."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from flows.console import console


def print_curate_summary(s: dict) -> None:
    t = Table(title=f"curate summary — {s['workspace']}", show_header=True)
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("seen", str(s["seen"]))
    t.add_row("kept", str(s["kept"]), style="green")
    t.add_row("rejected", str(s["rejected"]), style="yellow")
    for reason, n in s["rejected_by_reason"].items():
        t.add_row(f"  {reason}", str(n))
    t.add_row("samples (HR/LR pairs)", str(s["samples"]))
    t.add_row("shards", str(s["shards"]))
    t.add_row("shard bytes", f"{s['bytes']:,}")
    if s.get("hidden"):
        t.add_row("  of which hidden files", str(s["hidden"]))
    console.print(t)
    ok = s["seen"] == s["kept"] + s["rejected"]
    console.print(
        f"seen {s['seen']} = kept {s['kept']} + rejected {s['rejected']}: [{'green' if ok else 'red'}]"
        f"{'ok' if ok else 'MISMATCH'}[/]"
    )


def print_bench_build(summary: dict, name: str, kind: str) -> None:
    t = Table("what", "value", title=f"benchmark {name} ({kind})")
    for k, v in summary.items():
        if isinstance(v, list):
            t.add_row(k, str(len(v)))
            for x in v[:10]:
                t.add_row("", str(x))
        elif not isinstance(v, dict):
            t.add_row(k, str(v))
    console.print(t)


EVAL_COLUMNS = [  # (header, summary column, format): the columns of Real-ISR papers, then ours
    ("model", "model", "{}"),
    ("n", "items", "{}"),
    ("PSNR", "psnr_y", "{:.2f}"),
    ("SSIM", "ssim_y", "{:.4f}"),
    ("LPIPS", "lpips", "{:.4f}"),
    ("DISTS", "dists", "{:.4f}"),
    ("NIQE", "niqe", "{:.3f}"),
    ("MUSIQ", "musiq", "{:.2f}"),
    ("CLIPIQA", "clipiqa", "{:.4f}"),
    ("MANIQA", "maniqa", "{:.4f}"),
    ("period+", "periodicity_excess_stride", "{:.4f}"),
    ("flagged", "periodic_share", "{:.0%}"),
    ("s/img", "seconds", "{:.3f}"),
    ("MB", "peak_mem_mb", "{:.0f}"),
]


def availability_lines(availability: dict[str, str]) -> list[str]:
    """The metrics' availability as lines: the metrics that are missing only because no weights folder is configured
    share one line (six unconfigured pyiqa metrics read as one line, not six long ones per evaluation); every other
    status (a folder with a file missing or refused, pyiqa not importing) keeps its own line naming the file."""
    unset = " at <--iqa-weights or $"  # iqa.status's placeholder when no folder is configured
    unconfigured = [m for m, v in availability.items() if v.startswith("not available: put ") and unset in v]
    lines = [f"{m}: {v}" for m, v in availability.items() if m not in unconfigured]
    if unconfigured:
        lines.append(
            f"not available: {', '.join(unconfigured)}: no IQA weights folder (--iqa-weights or $SR4K_IQA_WEIGHTS); "
            "`sr4k bench eval --iqa-weights DIR` names each missing file (README: Benchmarks)"
        )
    return lines


def print_bench_eval(out: dict, bench: str, token_stride: int = 32) -> None:
    from pipelines.bench.evaluate import summarize_results

    rows = summarize_results(Path(out["results"]))
    t = Table(title=f"{bench}: mean over {out['items']} items (run {out['run']})")
    shown = EVAL_COLUMNS  # every paper column, n/a where a metric is not available (the reason is printed below)
    for label, _, _ in shown:
        t.add_column(label, justify="left" if label == "model" else "right")
    for r in rows:
        t.add_row(*("n/a" if r[c] is None else fmt.format(r[c]) for _, c, fmt in shown))
    console.print(t)
    note = (
        f"period+ = periodic autocorrelation beyond the bicubic of the same LR, mean over the {token_stride}-px "
        "lattice; flagged = share of items whose periodic_flag is set (a periodic artefact the model added)"
    )
    console.print(note, style="dim")
    for line in availability_lines(out["availability"]):
        console.print(line, style="dim")
    console.print(f"results: {out['results']}\nreport: {out['report']}")


def print_candidates(s: dict) -> None:
    t = Table("what", "value", title=f"candidates on {s['lr_set']}")
    for k in ("lr_images", "units", "units_run", "units_cached", "images_written"):
        t.add_row(k, str(s[k]))
    for m, v in s["versions"].items():
        t.add_row(f"version {m}", v)
    console.print(t)


def print_pairs(r: dict, strategy: str) -> None:
    t = Table("what", "value", title=f"pairs ({strategy})")
    for k, v in r.items():
        if isinstance(v, dict) and len(v) > 3:
            vals = sorted(v.values())
            t.add_row(k, f"{len(v)} groups, min {vals[0]}, max {vals[-1]}")
            for kk, vv in list(v.items())[:12]:
                t.add_row("", f"{kk}: {vv}")
        else:
            t.add_row(k, str(v))
    console.print(t)


DEMO_SECTIONS = {  # the section that starts after a stage ends
    "curation-report": "benchmarks: a synthetic set and a real LR-only set, two interpolation baselines",
    "bench-eval demo-lq": "RefSR-style pairs: candidate SR models on the synthetic LR set, balanced pairs",
    "pairs": "labelling: a real Label Studio on 127.0.0.1; three simulated annotators answer the demo pairs",
    "labelling": "aggregation (QC, majority + Dawid–Skene, Bradley–Terry) and the preferences release",
    "release": "RefReward: a tiny random Qwen2.5-VL judge, 2 GRPO steps on the preferences, then it scores a group",
    "reward": "OP4KSR: tiny random Flux + F16 VAE, 2 supervised steps on the curated shards, one upscale",
}


def show_demo_stage(out: Path, stage: str, r: dict) -> None:
    """Print what a stage of ``flows.demo.demo_flow`` returned, as its own command prints it."""
    from flows.demo import how_to_label
    from flows.release_cli import print_aggregate, print_release

    kind = stage.split(" ")[0]
    if stage == "input":
        console.print(f"[bold]sr4k demo[/] — sources: {r['sources']}; workspace: {r['workspace']}")
    elif stage == "curate":
        print_curate_summary(r)
    elif stage == "curation-report":
        console.print(f"report: [link=file://{r['report']}]{r['report']}[/]")
        query = "select stage, reason, count(*) from rejects group by all order by 3 desc"
        console.print(f'next: sr4k sql -w {out} "{query}"')
    elif kind == "bench-build":
        print_bench_build(r["summary"], r["name"], r["kind"])
    elif kind == "bench-eval":
        print_bench_eval(r, r["bench"], r["token_stride"])
    elif stage == "candidates":
        print_candidates(r)
    elif stage == "pairs":
        print_pairs(r, r["strategy"])
    elif stage == "labelling":
        t = Table("what", "value", title=f"Label Studio {r['url']} (stopped again)")
        for k in ("imported", "gold_imported", "duplicates"):
            t.add_row(f"push {k}", str(r["push"].get(k)))
        for k, v in r["pull"].items():
            if isinstance(v, int | float | str) and not k.endswith("seconds"):
                t.add_row(f"pull {k}", str(v))
        console.print(t)
        console.print(how_to_label(out), style="dim", markup=False, highlight=False, soft_wrap=True)
    elif stage == "aggregate":
        print_aggregate(r)
    elif stage == "release" and "exists" in r:
        console.print(f"release {r['exists']} exists (releases are immutable)", style="dim")
    elif stage == "release":
        print_release(r, r["name"], r["version"], r["kind"])
    elif stage == "reward":
        t = Table("model", "RefReward score", title=f"tiny judge (step {r['global_step']}) on LR {r['lr_key']}")
        for m, sc in r["ranking"]:
            t.add_row(m, f"{sc:+.3f}")
        console.print(t)
        console.print("(a random tiny judge: the scores show the plumbing, not quality)", style="dim")
    elif stage == "op4ksr":
        console.print(
            f"OP4KSR: {r['steps']} steps, loss {r['loss']:.4f} ({r['train_seconds']:.1f} s); "
            f"{r['lr_size']} -> {r['sr_size']} in {r['upscale_seconds']:.2f} s -> {r['output']}"
        )
    if stage in DEMO_SECTIONS:
        console.rule(DEMO_SECTIONS[stage])
    if stage == "bench-eval op4ksr":
        console.print(f'next: sr4k sql -w {out} "select model_a, model_b, consistency, naturalness from preferences"')
