"""Cold-shell start of the ``sr4k`` CLI: time to the first output line and to a finished one-image curation.

Measured twice in the same run, each in a fresh ``PREFECT_HOME`` and a fresh process (a cold shell):
  * ``embedded`` — no server: Prefect starts its ephemeral API inside the command;
  * ``server``   — ``sr4k server`` runs in the background (started, and waited for, before the clock starts).

    .venv/bin/python benchmarks/cli_start.py [--image PATH] [--hr-size 1024] [--repeats 3]

Final line: ``first_line_embedded_s=… curate_embedded_s=… first_line_server_s=… curate_server_s=…`` (medians).
Goals (issue 12): first output ≤ 3 s; a one-image curation ≤ 20 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SR4K = [sys.executable, "-m", "flows.cli"]


def _default_image() -> Path:
    for p in sorted(Path("/usr/share/backgrounds/mate/nature").glob("*.jpg")):
        return p
    import skimage

    return Path(skimage.data_dir) / "astronaut.png"


def _run(args: list[str], env: dict) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    p = subprocess.Popen([*SR4K, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = None
    for _ in p.stdout:
        first = first if first is not None else time.perf_counter() - t0
    rc = p.wait()
    return (first if first is not None else float("nan")), time.perf_counter() - t0, rc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(image: Path, hr: int, with_server: bool, tmp: Path) -> tuple[float, float]:
    home = Path(tempfile.mkdtemp(prefix="prefect-home-", dir=tmp))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(home)}
    server = None
    if with_server:
        port = _free_port()
        server = subprocess.Popen([*SR4K, "server", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("sr4k server did not answer within 2 minutes")
    try:
        src = tmp / f"in-{time.time_ns()}"
        src.mkdir()
        shutil.copy(image, src / image.name)
        first, total, rc = _run(["curate", "-i", str(src), "-o", str(tmp / f"ws-{time.time_ns()}"),
                                 "--hr-size", str(hr), "--quiet"], env)  # fmt: skip
        if rc != 0:
            raise RuntimeError(f"curate failed with exit code {rc}")
        return first, total
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, default=None, help="one source photo [default: a mate-backgrounds photo]")
    ap.add_argument("--hr-size", type=int, default=1024, help="HR crop side [default: 1024]")
    ap.add_argument("--repeats", type=int, default=3, help="runs per mode [default: 3]")
    a = ap.parse_args()
    image = a.image or _default_image()
    res: dict[str, list[tuple[float, float]]] = {"embedded": [], "server": []}
    with tempfile.TemporaryDirectory(prefix="sr4k-cli-start-") as d:
        for i in range(a.repeats):
            for mode in res:
                r = _measure(image, a.hr_size, mode == "server", Path(d))
                res[mode].append(r)
                print(f"run {i + 1} {mode:8s} first line {r[0]:6.2f} s  one-image curation {r[1]:6.2f} s", flush=True)
    med = {m: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for m, v in res.items()}
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"first_line_embedded_s={med['embedded'][0]:.2f} curate_embedded_s={med['embedded'][1]:.2f} "
          f"first_line_server_s={med['server'][0]:.2f} curate_server_s={med['server'][1]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
