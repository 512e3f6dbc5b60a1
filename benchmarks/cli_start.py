"""Cold-shell start of the ``sr4k`` CLI: time to the first output line and to a finished one-image curation.

Each run is a fresh process (a cold shell) with its own ``PREFECT_HOME``: a copy of one migrated to Prefect's head
(a home used before; ``--fresh-home``: an empty one, the first command ever). Modes, in the same run:
  * ``embedded`` — no server: the command starts Prefect's ephemeral API at its first moment (flows.prefect_api);
  * ``lazy``     — baseline: Prefect already imported, so Prefect starts the same API itself at the first flow call;
  * ``server``   — ``sr4k server`` runs in the background (started, and waited for, before the clock starts).
The image (default: a 2560x1600 MATE photo) is kept: ``--min-short-side`` equals ``--hr-size``, so the run crops,
degrades and packs one shard. CPU is the command's rusage with its reaped children (the embedded server), the
server's share sampled from /proc while it runs.

    .venv/bin/python benchmarks/cli_start.py [--image PATH] [--hr-size 1024] [--repeats 3] [--fresh-home]

Final lines: medians per mode, and ``curate_embedded_vs_lazy`` (ratio of wall times).
Goals (issue 12): first output ≤ 3 s; a one-image curation ≤ 20 s.

Measured 2026-12-07 on the shared 2-core machine at load 20-24 (so wall times are 4-8x a quiet machine's; nice -15
did not help, the other sessions sit in other cgroups), one repeat each:
  used home:  embedded first line 1.4-1.7 s, 84-85 s wall, CPU 17.6-20.4 s (server 8.7-10.2 s, command 8.9-10.1 s);
              lazy first line 8.6-11.7 s, 99-109 s wall, CPU 19.9-22.2 s (server 7.9-9.0, command 12.1-13.2 s:
              the command's own import of prefect.server, ~5 s CPU, is gone in embedded);
              server 1.8-2.0 s, 37-41 s wall, CPU 7.7-8.5 s.
  fresh home: embedded 98.6 s wall, CPU 25.8 s (server 16.3 s: migrations), lazy 110.7 s wall, CPU 30.7 s;
              a second run at load 11-14: embedded 74.1 s wall, CPU 24.0 s; lazy 57.5 s wall, CPU 26.3 s. Under
              contention the wall ratio is noise (0.78-1.29 across runs): with both cores saturated by others,
              overlap buys nothing and only CPU counts, which is 7-16 % lower embedded in every run.
Measured 2026-12-07 on the same machine when quiet (load 0.2-1.0), 3 repeats, used home (medians):
  embedded first line 0.31 s, curation 9.83 s (9.69-9.91), CPU 13.7 s (server 6.7, command 7.0);
  lazy     first line 1.19 s, curation 16.62 s (15.54-16.75), CPU 16.9 s;
  server   first line 0.43 s, curation 7.82 s (7.25-8.89), CPU 7.3 s;  curate_embedded_vs_lazy=0.59.
  fresh home (--fresh-home --modes embedded, 1 run): first line 0.28 s, curation 18.14 s, CPU 21.5 s (server 14.6 s).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

SR4K = [sys.executable, "-m", "flows.cli"]
# Baseline in the same run: Prefect already imported when the CLI decides, so it starts its own ephemeral API lazily,
# at the first flow call, and waits for it there (what every embedded command did before the early start).
LAZY = [
    sys.executable,
    "-c",
    "import sys; from flows import prefect_api; prefect_api.quiet_environment(); import prefect; "
    "from flows.cli import main; sys.argv[0] = 'sr4k'; main()",
]


def _default_image() -> Path:
    for p in sorted(Path("/usr/share/backgrounds/mate/nature").glob("*.jpg")):
        return p
    import skimage

    return Path(skimage.data_dir) / "astronaut.png"


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _run(cmd: list[str], args: list[str], env: dict) -> dict:
    """Wall to the first line and to the end; CPU seconds of the whole command and of its Prefect server child."""
    t0 = time.perf_counter()
    p = subprocess.Popen([*cmd, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server_cpu: dict[int, float] = {}

    def sample() -> None:  # the server's CPU, read while it lives (the CLI reaps it before exiting)
        while p.poll() is None:
            for c in _children(p.pid):
                with contextlib.suppress(OSError, IndexError, ValueError):
                    server_cpu[c] = _cpu(c)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    first = None
    for _ in p.stdout:
        first = first if first is not None else time.perf_counter() - t0
    _, status, ru = os.wait4(p.pid, 0)
    total = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    cpu = ru.ru_utime + ru.ru_stime  # the command and every child it reaped (its Prefect server included)
    return {
        "first": first if first is not None else float("nan"),
        "total": total,
        "rc": p.returncode,
        "cpu": cpu,
        "server_cpu": sum(server_cpu.values()),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _home(tmp: Path, template: Path | None) -> Path:
    home = Path(tempfile.mkdtemp(prefix="prefect-home-", dir=tmp))
    if template is not None:  # a PREFECT_HOME used before: its database exists and is at Prefect's head revision
        shutil.copytree(template, home, dirs_exist_ok=True)
    return home


def _measure(image: Path, hr: int, mode: str, tmp: Path, template: Path | None) -> dict:
    home = _home(tmp, template)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(home)}
    server = None
    if mode == "server":
        port = _free_port()
        server = subprocess.Popen(
            [*SR4K, "server", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(480):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("sr4k server did not answer within 4 minutes")
    try:
        src = tmp / f"in-{time.time_ns()}"
        src.mkdir()
        shutil.copy(image, src / image.name)
        args = [
            "curate",
            "-i",
            str(src),
            "-o",
            str(tmp / f"ws-{time.time_ns()}"),
            "--hr-size",
            str(hr),
            "--min-short-side",
            str(hr),
            "--quiet",
        ]
        load = os.getloadavg()[0]
        r = _run(LAZY if mode == "lazy" else SR4K, args, env)
        if r["rc"] != 0:
            raise RuntimeError(f"curate ({mode}) failed with exit code {r['rc']}")
        return r | {"load": load}
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, default=None, help="one source photo [default: a mate-backgrounds photo]")
    ap.add_argument("--hr-size", type=int, default=1024, help="HR crop side (also the minimum short side) [1024]")
    ap.add_argument("--repeats", type=int, default=3, help="runs per mode [default: 3]")
    ap.add_argument("--modes", default="embedded,lazy,server", help="embedded | lazy (baseline) | server [all]")
    ap.add_argument("--fresh-home", action="store_true", help="an empty PREFECT_HOME per run (first command ever)")
    a = ap.parse_args()
    image = a.image or _default_image()
    modes = a.modes.split(",")
    res: dict[str, list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="sr4k-cli-start-") as d:
        template = None
        if not a.fresh_home:  # migrate one PREFECT_HOME to Prefect's head once, copied for every run
            template = Path(d) / "template-home"
            template.mkdir()
            env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(template)}
            subprocess.run(
                [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for i in range(a.repeats):
            for mode in modes:
                r = _measure(image, a.hr_size, mode, Path(d), template)
                res[mode].append(r)
                own = r["cpu"] - r["server_cpu"]
                print(
                    f"run {i + 1} {mode:8s} first line {r['first']:6.2f} s  one-image curation {r['total']:6.2f} s"
                    f"  CPU {r['cpu']:5.1f} s (server {r['server_cpu']:4.1f} s, command {own:4.1f} s)"
                    f"  load {r['load']:.1f}",
                    flush=True,
                )
    med = {m: {k: statistics.median(x[k] for x in v) for k in ("first", "total", "cpu")} for m, v in res.items()}
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        " ".join(
            f"first_line_{m}_s={v['first']:.2f} curate_{m}_s={v['total']:.2f} cpu_{m}_s={v['cpu']:.1f}"
            for m, v in med.items()
        )
    )
    if "embedded" in med and "lazy" in med:
        print(f"curate_embedded_vs_lazy={med['embedded']['total'] / med['lazy']['total']:.2f}")


if __name__ == "__main__":
    main()
