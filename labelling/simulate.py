"""Simulated annotators for ``sr4k demo``: three people-like answerers whose choices follow a stated, checkable
rule on the candidates (``proxy_scores``), so the demo runs the whole labelling chain — a real Label Studio, push,
answers, pull, QC, aggregation — without people. Not a model of human taste."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.store.workspace import Workspace

SIM_ANNOTATORS = {
    "sim-careful@sim.example.org": 0.5,
    "sim-average@sim.example.org": 1.0,
    "sim-noisy@sim.example.org": 2.0,
}
"""Simulated annotators of the demo: e-mail -> noise temperature T (P(a preferred) = sigmoid((s_a - s_b) / T))."""


def proxy_scores(lr: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """What the demo's simulated annotators "see" in a candidate (z-scored over a pair before use):

    - consistency: ``lr_consistency_psnr`` (PSNR-Y of the candidate area-downscaled to the LR's size vs the LR) — the
      classic re-degradation fidelity check (an output that invents or loses content drifts away from its input);
    - naturalness: log of the Laplacian energy (sharpness) of the candidate's luma — crisp detail reads as natural
      at this scale, blur does not.

    A stated, checkable rule (not a model of human taste): it lets the demo run the whole chain — push, answers,
    pull, QC, aggregation, release, reward training — with answers that depend on the pictures."""
    import cv2

    from pipelines.bench.metrics import lr_consistency_psnr

    psnr = lr_consistency_psnr(lr, out)
    luma = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float64)
    sharp = float(np.log(np.mean(cv2.Laplacian(luma, cv2.CV_64F) ** 2) + 1e-6))
    return psnr, sharp


def simulate_labelling(
    workspace: Path, lr_set: str, pairs: str = "demo", project: str = "demo-sim", seed: int = 0
) -> dict:
    """Start the workspace's real Label Studio, make the simulated annotators Label Studio users, push the pairs
    part ``pairs`` with their answers embedded (overlap 3, 10 % gold, answered in *screen* terms, so the pull must
    map left/right back to the candidates), pull, and stop the server. Returns the push and pull reports.

    Each annotator answers per criterion with P(a) = sigmoid((z_a - z_b) / T) on ``proxy_scores`` (z-scored within
    the pair's two candidates: z = +-1), a tie when both scores are within 1 %; lead times 4-20 s. Gold tasks are
    left for people (push embeds answers only in real pairs)."""
    from scipy.special import expit

    from labelling import push, server
    from labelling.aggregate import lr_locations
    from labelling.interface import TO_NAME
    from labelling.pull import pull_annotations

    ws_root = Path(workspace).resolve()
    rng = np.random.default_rng(seed)
    lrs = {k: ws_root / v for k, v in lr_locations(Workspace(ws_root), lr_set).items()}
    cache: dict[str, np.ndarray] = {}

    def load(path: Path) -> np.ndarray:
        key = str(path)
        if key not in cache:
            cache[key] = np.asarray(Image.open(path).convert("RGB"))
        return cache[key]

    info = server.start(Workspace(ws_root))
    try:
        api = server.Api.for_workspace(Workspace(ws_root))
        users = {u["email"]: u["id"] for u in server.list_users(api)}
        for email in SIM_ANNOTATORS:
            if email not in users:
                users[email] = api.post("/api/users/", {"email": email, "username": email})["id"]

        def prelabelled(pair: dict, data: dict) -> list[dict]:
            lr = load(lrs[pair["lr_key"]])
            sa = proxy_scores(lr, load(ws_root / pair["path_a"]))
            sb = proxy_scores(lr, load(ws_root / pair["path_b"]))
            left = data["sr4k_left"]
            anns = []
            for email, temp in SIM_ANNOTATORS.items():
                result = []
                for k, name in enumerate(("consistency", "naturalness")):
                    a, b = sa[k], sb[k]
                    if abs(a - b) <= 0.01 * max(abs(a), abs(b), 1e-9):
                        choice = "tie"
                    else:
                        winner = "a" if rng.random() < expit(np.sign(a - b) * 2 / temp) else "b"
                        choice = "left" if winner == left else "right"
                    result.append(
                        {"from_name": name, "to_name": TO_NAME, "type": "choices", "value": {"choices": [choice]}}
                    )
                anns.append({"completed_by": users[email], "lead_time": float(rng.uniform(4, 20)), "result": result})
            return anns

        pushed = push.push_pairs(
            Workspace(ws_root), pairs, overlap=3, gold_rate=0.1, project=project, seed=seed, prelabelled=prelabelled
        )
        pulled = pull_annotations(Workspace(ws_root), project=project)
    finally:
        server.stop(Workspace(ws_root))
    return {"url": info.url, "push": pushed, "pull": pulled}
