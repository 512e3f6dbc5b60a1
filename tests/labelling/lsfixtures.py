"""One real Label Studio for all labelling tests, and cheap workspaces with pairs and candidates.

The server's document root is its workspace, so every test writes its own LR set, candidates and pairs part into the
shared workspace and pushes into its own project (``project=<test name>``); nothing a test does is visible to
another's selection. ``ls`` is imported by ``tests/labelling/conftest.py`` and by ``tests/flows/test_label_flow.py``;
the server itself is a module-level singleton (started by the first user, stopped when the last one finishes), so
one pytest session starts Label Studio once however many modules use it.

The server's ``outbound_proxy`` (``labelling.settings.proxy_env``: ``HTTP(S)_PROXY`` for Label Studio, ``NO_PROXY`` for
127.0.0.1 and localhost) is ``OutboundRecorder``, a socket on 127.0.0.1 that records the first line of whatever
connects (``CONNECT sentry.io:443 ...``) and answers 502: every proxy-aware client inside Label Studio (requests,
urllib3, sentry_sdk) that tries to reach another host lands there, and ``outbound_requests()`` lists them.
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.pairs.build import PAIRS, Candidate, build_pairs
from pipelines.store.workspace import Workspace, write_bytes_atomic, write_table
from schemas.bench import CANDIDATES, CandidateRec

MODELS = ("m_good", "m_okay", "m_poor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(ws: Workspace, rgb: np.ndarray) -> str:
    import hashlib

    _ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    data = buf.tobytes()
    sha = hashlib.sha256(data).hexdigest()
    rel = f"images/{sha[:2]}/{sha}.png"
    write_bytes_atomic(ws.root / rel, data)
    return rel


def make_lr_set(
    ws: Workspace,
    lr_set: str,
    n_lr: int,
    models=MODELS,
    lr_side: int = 32,
    scale: int = 4,
    seed: int = 0,
    distinct_images: bool = True,
) -> None:
    """A benchmark-like LR set (``benchmarks/<lr_set>/index.parquet`` + LR PNGs) and a candidates table part with one
    output per (LR, model). Candidate k is the bicubic upscale plus noise of strength k (so outputs differ). With
    ``distinct_images=False`` all LRs share one output per model (fast for thousands of pairs)."""
    rng = np.random.default_rng(seed)
    bench = ws.root / "benchmarks" / lr_set
    rows, cands = [], []
    shared: dict[str, tuple[str, int]] = {}
    for i in range(n_lr):
        key = f"{lr_set}{i:05d}"
        lr = (rng.random((lr_side, lr_side, 3)) * 255).astype(np.uint8)
        lr = cv2.GaussianBlur(lr, (0, 0), 1.0)
        lr_rel = f"lr/{key}.png"
        _ok, buf = cv2.imencode(".png", cv2.cvtColor(lr, cv2.COLOR_RGB2BGR))
        write_bytes_atomic(bench / lr_rel, buf.tobytes())
        rows.append({"key": key, "lr_path": lr_rel})
        up = cv2.resize(lr, (lr_side * scale, lr_side * scale), interpolation=cv2.INTER_CUBIC)
        for k, m in enumerate(models):
            if distinct_images or m not in shared:
                noise = rng.normal(0, 12 * k, up.shape) if k else 0
                out = np.clip(up.astype(np.float32) + noise, 0, 255).astype(np.uint8)
                shared[m] = (_png(ws, out), k)
            rel = shared[m][0]
            cands.append(
                CandidateRec(
                    lr_set,
                    key,
                    m,
                    "v1",
                    rel,
                    rel.split("/")[-1][:-4],
                    lr_side * scale,
                    lr_side * scale,
                    0.01,
                    1.0,
                    f"{lr_set}-unit",
                )
            )
    bench.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), bench / "index.parquet")
    write_table(ws.part("candidates", f"{lr_set}-unit"), cands, CANDIDATES)


def make_pairs(ws: Workspace, lr_set: str, target: int, name: str, seed: int = 0) -> list:
    """Balanced pairs over the LR set's candidates, written as ``tables/pairs/part-<name>.parquet``."""
    t = pq.read_table(ws.part("candidates", f"{lr_set}-unit")).to_pylist()
    cands = [Candidate(r["lr_key"], r["model"], r["model_version"], r["output_path"]) for r in t]
    pairs, _ = build_pairs(cands, target, "balanced", seed, min_distance=0)
    write_table(ws.part("pairs", name), pairs, PAIRS)
    return pairs


class OutboundRecorder(socketserver.ThreadingTCPServer):
    """A pretend HTTP(S) proxy on 127.0.0.1 that records each request line it gets and answers 502."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.lines: list[str] = []

        class Handler(socketserver.StreamRequestHandler):
            def handle(h):
                h.request.settimeout(5)
                try:
                    self.lines.append(h.rfile.readline(4096).decode("latin-1").strip())
                    h.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                except OSError:
                    pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


_SHARED: dict = {"users": 0}


def outbound_requests() -> list[str]:
    """Request lines that the shared Label Studio sent towards hosts other than 127.0.0.1 / localhost so far."""
    rec = _SHARED.get("recorder")
    return list(rec.lines) if rec else []


@pytest.fixture(scope="session")
def ls(tmp_path_factory):
    """(workspace, settings) of a real Label Studio on a free 127.0.0.1 port; stopped (process group) at the end."""
    from labelling import server

    if not _SHARED["users"]:
        ws = Workspace(tmp_path_factory.mktemp("ls-ws"))
        rec = OutboundRecorder()
        # as deployed: Label Studio locked to the gate for annotators (sr4k's admin token still works directly)
        settings = server.LabelSettings(
            port=free_port(), gate_port=free_port(), retries=3, retry_wait=0.2, outbound_proxy=rec.url
        )
        t0 = time.monotonic()
        try:
            info = server.start(ws, settings)
        except BaseException:
            server.stop(ws)  # whatever got started (the teardown below never runs for a failed setup)
            rec.shutdown()
            raise
        print(f"\nLabel Studio up in {time.monotonic() - t0:.1f} s at {info.url} (annotators' gate: {info.gate})")
        _SHARED.update(ws=ws, settings=settings, recorder=rec)
        os.environ["SR4K_LABEL_PORT"] = str(settings.port)  # for the CLI (in-process and subprocesses)
        os.environ["SR4K_LABEL_GATE_PORT"] = str(settings.gate_port)
    _SHARED["users"] += 1
    try:
        yield _SHARED["ws"], _SHARED["settings"]
    finally:
        _SHARED["users"] -= 1
        if not _SHARED["users"]:
            server.stop(_SHARED["ws"])
            _SHARED.pop("recorder").shutdown()
            os.environ.pop("SR4K_LABEL_PORT", None)
            os.environ.pop("SR4K_LABEL_GATE_PORT", None)
