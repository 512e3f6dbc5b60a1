"""RoPE extrapolation: a small Flux-style transformer trained from scratch at token grid g, run at 2g and 4g.

The question OP4KSR's RFR answers: a Flux transformer whose RoPE was trained on a 64-token grid runs on 128 tokens
at 4096² px. Does it lose quality / make periodic artefacts, and which rescaling rule (training.sr.rfr) helps? A LoRA
on a random backbone (benchmarks/periodicity_ablation.py) cannot show it: the backbone never learned positions.
Here the whole transformer (diffusers ``FluxTransformer2DModel``, 2 double + 2 single blocks, 2 heads of 40 dims,
RoPE axes (8, 16, 16), θ = 10000) is trained from scratch on ×2 SR in pixel-token space (a token = a 4×4 px patch of
the bicubic-upsampled LR, 48 values; the output is a residual over bicubic, its last projection zero-initialised so
every run starts at bicubic), at a g × g token grid, then evaluated on larger images (2g, 4g tokens per side) with:

- ``none`` (the trained RoPE as is), ``pi``, ``ntk``, ``yarn-pub`` (YaRN with the published β = (32, 1)), ``yarn``
  (YaRN with the ramp scaled to the grid — the derivation in training.sr.rfr), each with the scale derived from the
  run grid: s = run grid / g per axis;
- ``tiled``: the image cut into g × g-token tiles, each run at the trained size (no extrapolation, seams);
- ``trained@2g``: the same recipe trained at 2g (the reference for 2g; at 4g it extrapolates ×2 itself, run with
  none, ntk and yarn);
- L_AP: the g-model trained again with L_AP at each λ of ``--lap`` (a sweep), evaluated with none and yarn.

Loss = MSE on [−1, 1] pixels + λ L_AP(output, HR) (training.sr.periodicity_loss.ap_loss with the stage-1 defaults
τ = 2e-4, stride weight 4, lines only, norm "ref"; lattice stride = the 4-px token, as 32 px is OP4KSR's token):
the ratio of the two terms is that of ``LossConfig.pixel_l2`` = 1 and ``LossConfig.ap`` = λ in the stage-1 recipe
(which adds a latent L2 on top), so the λ sweep speaks to the stage-1 default. The training crop is g·4 = 32 px, so
L_AP sees lags 4-8 px (L = side/4): it cannot see the trained-grid period (32 px) that extrapolation produces.

Metrics on held-out images (fixed seeds, photo-like synthetic content from tests/imagefixtures.natural_image): PSNR
gain over bicubic (dB, RGB, 4-px border), the periodicity peak (pipelines.bench.metrics.periodicity) and R at the RoPE
wavelengths λ_i = 2π θ^(2i/d) tokens = 4 λ_i px that fit the lag window (here band 1: 80 px needs ≥ 320-px images,
so at 4g = 128 px only band 0's 25 px lag is read; ``rope_R``), and R at the trained-grid period g·4 px (``grid_R``:
the share of residual energy that repeats with the trained window). Means over seeds with 95 % t-intervals
(Student t, n − 1 dof). Each (seed, model) is evaluated and written to ``--json`` as soon as it is trained (rerun with
the same ``--json`` to continue a cut run), and the table goes to ``--md``.

Run (CPU, one thread)::

    nice -n 5 python benchmarks/rope_extrapolation.py --steps 2000 --seeds 3 \\
        --json benchmarks/results/rope_extrapolation.json --md benchmarks/results/rope_extrapolation.md
    python benchmarks/rope_extrapolation.py --steps 20 --seeds 1 --eval-images 2 --lap 0.1   # smoke run, < 1 min

Measured 2026-12-07 (``--steps 2000 --batch 4``, resumed across restarts that reordered the jobs; each (seed, model)
depends only on its seed; ``nice -n 5``, one thread, on a 2-core machine at load average 12-22: ~9 min per model;
the last 6 models — L_AP seeds 1/2, trained at 2g seeds 1/2 — on 2026-12-07 afternoon at load 3–4, ~2–2.5 min each,
as two processes on copies of the JSON, merged: every arm now has 3 seeds).
The g-models reach +2.68 ± 0.13 dB over bicubic at their own grid (3 seeds). PSNR gain (dB) at 2g / 4g, and Δ = the
gain minus that of the trained RoPE (none), paired by seed, mean ± 95 % t-interval (n = 3 unless noted):

=========================== ================ ================ ================ ================
arm                         gain at 2g       Δ at 2g          gain at 4g       Δ at 4g
=========================== ================ ================ ================ ================
none (trained RoPE)         +1.70 ± 0.16     0                +0.54 ± 0.34     0
ntk                         +1.66 ± 0.13     −0.04 ± 0.03     +0.59 ± 0.27     +0.06 ± 0.07
yarn (grid-scaled ramp)     +1.56 ± 0.04     −0.14 ± 0.11     +0.69 ± 0.18     +0.15 ± 0.17
yarn-pub (published β)      +1.32 ± 0.13     −0.37 ± 0.29     +0.52 ± 0.33     −0.02 ± 0.14
pi                          +1.30 ± 0.14     −0.40 ± 0.30     +0.51 ± 0.35     −0.03 ± 0.15
tiled at g                  +1.66 ± 0.07     −0.04 ± 0.23     +0.73 ± 0.10     +0.19 ± 0.25
trained at 2g, none         +1.57 ± 0.04     −0.13 ± 0.20     +0.68 ± 0.16     +0.14 ± 0.19
trained at 2g, ntk                                            +0.71 ± 0.14     +0.18 ± 0.21
trained at 2g, yarn                                           +0.79 ± 0.05     +0.25 ± 0.30
=========================== ================ ================ ================ ================

Periodicity peak at 4g: none 0.0012, ntk 0.0010, yarn 0.0005, pi / yarn-pub / tiled 0.0004 (at 2g 0.0051-0.0053
in every arm); R at the trained-grid period (32 px) at 4g ≤ 0.0006 in every arm. So: no extrapolation penalty at 2×
(every rule can only lose, ntk least), a small one at 4× that yarn recovers in every seed (ntk a third of it), and
no periodic artefacts from a model trained to convergence (the 300-step run of 2026-12-06 showed them, and yarn
removed them). Recommendation (training.sr.rfr, "Which mode"): ``ntk`` by default, ``yarn`` at ≥ 4× the trained grid.

L_AP on (same g-model recipe, λ × L_AP added; R32 = R at 32 px at 4g, none; λ = 0: 0.0006 / 0.0001 / 0.0003):

| λ_AP | seeds | gain at g (per seed) | at 2g | at 4g | R32 at 4g per seed | peak at 4g |
|---|---|---|---|---|---|---|
| 0 | 0,1,2 | +2.68 ± 0.13 (+2.66/+2.63/+2.73) | +1.70 ± 0.16 | +0.54 ± 0.34 | (as left) | 0.0012 |
| 0.01 | 0,1,2 | +2.23 ± 0.29 (+2.13/+2.22/+2.36) | +1.46 ± 0.18 | +0.45 ± 0.04 | 0.0002 / 0.0003 / 0.0002 | 0.0009 |
| 0.1 | 0,1,2 | -0.93 ± 1.93 (-0.04/-1.28/-1.48) | -0.99 ± 2.11 | -1.17 ± 2.41 | 0.0045 / 0.0009 / 0.0002 | 0.0024 |
| 1 | 0,1,2 | -1.05 ± 4.27 (-3.04/-0.06/-0.06) | -0.41 ± 1.38 | -0.76 ± 2.56 | 0.0769 / 0.0059 / 0.0058 | 0.0332 |

L_AP on 32-px crops trains against detail: its floor on natural content there (a ×2 bicubic output against its HR:
3.7e-3 mean) is 18× its margin τ. λ = 0.01 cost 0.44 ± 0.21 dB at the own grid (every seed) and lowered the small
4× periodicity in 2 seeds of 3; λ = 0.1 and 1 took most or all of the SR gain in every seed (λ = 1 seeds 1 and 2 stay
at bicubic, −0.06 dB) and raised R32 at 4× 7–130× in 5 of the 6 (seed, λ) runs (λ = 0.1 seed 2: 0.7×).
The floor falls to 1.6e-5 at 256 px and 2.9e-6 at 512 px (×4 bicubic), where L_AP is inert on natural outputs: this
experiment cannot show its benefit at the stage-1 crop, only that it must not run on small crops (training.sr.config
warns below 256 px; the default λ = 1 is kept for the 512-px default crop, the reasons there).
Table with every arm and metric: benchmarks/results/rope_extrapolation.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TP = 4  # px per token side
AXES = (8, 16, 16)
CFG = dict(
    patch_size=1,
    in_channels=3 * TP * TP,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=sum(AXES),
    num_attention_heads=2,
    joint_attention_dim=16,
    pooled_projection_dim=16,
    guidance_embeds=False,
    axes_dims_rope=AXES,
)
RFR_MODES = ("none", "pi", "ntk", "yarn-pub", "yarn")
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}
METRICS = ("gain_db", "peak", "rope_R", "grid_R")


def images(n: int, side: int, seed0: int) -> torch.Tensor:
    from imagefixtures import natural_image

    arr = np.stack([natural_image(side, side, seed0 + i) for i in range(n)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255


def degrade(hr: torch.Tensor) -> torch.Tensor:
    """×2 area downscale, then bicubic back up (the model's input), clamped to [0, 1]."""
    lr = F.avg_pool2d(hr, 2)
    return F.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)


class TokenSR(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from diffusers import FluxTransformer2DModel

        self.t = FluxTransformer2DModel(**CFG)
        torch.nn.init.zeros_(self.t.proj_out.weight)  # start at bicubic (DiT's adaLN-zero habit)
        torch.nn.init.zeros_(self.t.proj_out.bias)

    def forward(self, up: torch.Tensor) -> torch.Tensor:
        b, _, hh, ww = up.shape
        h, w = hh // TP, ww // TP
        tok = F.pixel_unshuffle(up * 2 - 1, TP).flatten(2).transpose(1, 2)  # (B, h·w, 48)
        ids = torch.zeros(h, w, 3)
        ids[..., 1] += torch.arange(h)[:, None]
        ids[..., 2] += torch.arange(w)[None, :]
        out = self.t(
            hidden_states=tok,
            encoder_hidden_states=torch.zeros(b, 1, CFG["joint_attention_dim"]),
            pooled_projections=torch.zeros(b, CFG["pooled_projection_dim"]),
            timestep=torch.full((b,), 0.5),
            img_ids=ids.reshape(-1, 3),
            txt_ids=torch.zeros(1, 3),
            return_dict=False,
        )[0]
        res = F.pixel_shuffle(out.transpose(1, 2).reshape(b, -1, h, w), TP)
        return up + 0.5 * res


def set_rope(model: TokenSR, mode: str, trained_grid: int) -> None:
    from training.sr.config import RFRConfig
    from training.sr.rfr import apply_rfr

    m = "yarn" if mode.startswith("yarn") else mode
    ramp = "published" if mode == "yarn-pub" else "grid"
    apply_rfr(model.t, RFRConfig(mode=m, trained_grid=trained_grid, yarn_ramp=ramp))


def train(grid: int, seed: int, steps: int, batch: int, lap: float, pool: torch.Tensor, log=None) -> TokenSR:
    """AdamW 1e-3 one-cycle, grad-norm clip 1; loss = MSE([−1, 1]) + lap · L_AP (stage-1 settings, module doc)."""
    from training.sr.periodicity_loss import ap_loss

    torch.manual_seed(seed)
    model = TokenSR()
    set_rope(model, "none", grid)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    # one-cycle: warm-up over 5 % (>= 2 steps), cosine decay; OneCycleLR needs >= 2 steps in each phase
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, 1e-3, total_steps=max(steps, 6), pct_start=min(0.5, max(0.05, 3 / steps))
    )
    side = grid * TP
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(len(pool), (batch,), generator=g)
        ys = torch.randint(0, pool.shape[-2] - side + 1, (batch,), generator=g)
        xs = torch.randint(0, pool.shape[-1] - side + 1, (batch,), generator=g)
        hr = torch.stack([pool[i, :, y : y + side, x : x + side] for i, y, x in zip(idx, ys, xs, strict=True)])
        out = model(degrade(hr))
        mse = F.mse_loss(out * 2 - 1, hr * 2 - 1)
        loss = mse + lap * ap_loss(out, hr, strides=(TP,)) if lap else mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log and (step + 1) % 500 == 0:
            log(f"  step {step + 1}/{steps} loss {loss.item():.5f} mse {mse.item():.5f}")
    return model.eval()


@torch.no_grad()
def run_tiled(model: TokenSR, up: torch.Tensor, grid: int) -> torch.Tensor:
    side = grid * TP
    out = torch.empty_like(up)
    for y in range(0, up.shape[-2], side):
        for x in range(0, up.shape[-1], side):
            out[..., y : y + side, x : x + side] = model(up[..., y : y + side, x : x + side])
    return out


def scores(sr: torch.Tensor, hr: torch.Tensor, up: torch.Tensor, grid: int) -> dict[str, float]:
    from pipelines.bench.metrics import autocorrelation, periodicity

    b = 4
    sr = sr.clamp(0, 1)

    def psnr(x):
        mse = ((x - hr)[..., b:-b, b:-b] ** 2).flatten(1).mean(1)
        return 10 * torch.log10(1 / mse)

    gain = float((psnr(sr) - psnr(up)).mean())
    wavelengths = [round(TP * 2 * math.pi * 10000 ** (2 * i / AXES[1])) for i in range(AXES[1] // 2)]
    peaks, rope, gridr = [], [], []
    for img in sr:
        u8 = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        peaks.append(periodicity(u8, stride=TP).peak)
        r = autocorrelation(u8, max_lag=256)
        L = r.shape[0] // 2
        lags = [w for w in wavelengths if w <= L]
        rope.append(np.mean([(r[L + w, L] + r[L, L + w]) / 2 for w in lags]) if lags else math.nan)
        p = grid * TP
        gridr.append((r[L + p, L] + r[L, L + p]) / 2 if p <= L else math.nan)
    return {
        "gain_db": gain,
        "peak": float(np.mean(peaks)),
        "rope_R": float(np.mean(rope)),
        "grid_R": float(np.mean(gridr)),
    }


@torch.no_grad()
def evaluate(kind: str, model: TokenSR, grid: int, evals: dict[int, torch.Tensor]) -> list[dict]:
    """Rows (run_grid, arm, lap) for one trained model: kind "g" (every RFR mode + tiled), "2g", or "lap=λ"."""
    rows = []
    lap = kind[4:] if kind.startswith("lap=") else "0"
    for mult, hr in evals.items():
        up = degrade(hr)
        base = {"run_grid": f"{mult}g", "lap": lap}
        if kind == "2g":
            if mult >= 2:
                for mode in ("none",) if mult == 2 else ("none", "ntk", "yarn"):
                    set_rope(model, mode, 2 * grid)
                    rows.append(base | {"arm": f"trained@2g {mode}", **scores(model(up), hr, up, grid)})
            continue
        modes = ("none",) if mult == 1 else RFR_MODES if kind == "g" else ("none", "yarn")
        for mode in modes:
            set_rope(model, mode, grid)
            rows.append(base | {"arm": mode, **scores(model(up), hr, up, grid)})
        set_rope(model, "none", grid)
        if mult > 1 and kind == "g":
            rows.append(base | {"arm": "tiled", **scores(run_tiled(model, up, grid), hr, up, grid)})
    return rows


def _interval(v: list[float]) -> tuple[float, float]:
    """Mean and 95 % Student-t half-interval (n − 1 dof; nan for n = 1)."""
    a = np.array(v, dtype=np.float64)
    half = T95.get(len(a) - 1, 2.0) * a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else math.nan
    return float(a.mean()), float(half)


def summarise(results: dict[str, list[dict]]) -> list[dict]:
    """Mean and 95 % t half-interval over seeds per (run_grid, arm, lap); results: "seed/kind" -> rows. ``delta``:
    the gain minus that of the L_AP-off g-model with its trained RoPE (none) at the same grid, paired by seed (same
    images, and for the RFR arms the same weights), so seed-to-seed spread in how well a model trained cancels."""
    keyed: dict[tuple, list[tuple[str, dict]]] = {}
    ref: dict[tuple[str, str], float] = {}
    for key, rows in results.items():
        seed = key.split("/")[0]
        for r in rows:
            keyed.setdefault((r["run_grid"], r["arm"], r["lap"]), []).append((seed, r))
            if r["arm"] == "none" and r["lap"] == "0":
                ref[(seed, r["run_grid"])] = r["gain_db"]
    out = []
    for (g, arm, lap), rs in keyed.items():
        row = {"run_grid": g, "arm": arm, "lap": lap, "n": len(rs)}
        for k in METRICS:
            v = [r[k] for _, r in rs]
            row[k], row[k + "_ci"] = _interval(v)
            row[k + "_seeds"] = [float(x) for x in v]
        deltas = [r["gain_db"] - ref[(seed, g)] for seed, r in rs if (seed, g) in ref]
        row["delta"], row["delta_ci"] = _interval(deltas) if deltas else (math.nan, math.nan)
        out.append(row)
    return sorted(out, key=lambda r: (r["run_grid"], float(r["lap"]), r["arm"]))


def table(summary: list[dict]) -> str:
    """Markdown table: mean ± 95 % half-interval; gain also per seed and paired against none (``delta``)."""
    lines = [
        "| grid | arm | λ_AP | n | PSNR gain dB | per seed | Δ vs none (paired) | peak | R at 25 px (RoPE band "
        "0) | R at g·4 px |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        cells = [f"{r[k]:.4f} ± {r[k + '_ci']:.4f}" for k in ("peak", "rope_R", "grid_R")]
        seeds = "/".join(f"{x:+.2f}" for x in r["gain_db_seeds"])
        lines.append(
            f"| {r['run_grid']} | {r['arm']} | {r['lap']} | {r['n']} | {r['gain_db']:+.2f} ± "
            f"{r['gain_db_ci']:.2f} | {seeds} | {r['delta']:+.2f} ± {r['delta_ci']:.2f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=int, default=8, help="trained token grid g (px side = 4 g)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=4, help="crops per step at g (the 2g model gets batch / 4)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--lap",
        type=float,
        nargs="*",
        default=[0.01, 0.1, 1.0],
        help="L_AP weights (sweep; the first is trained for every seed before the rest)",
    )
    ap.add_argument("--no-2g", action="store_true", help="skip the model trained at 2g")
    ap.add_argument("--eval-images", type=int, default=8)
    ap.add_argument("--pool", type=int, default=64, help="training images (160-px photo-like, cropped per step)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="per-(seed, model) rows + summary; reused to resume")
    ap.add_argument("--md", type=Path, default=None, help="write the markdown table here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g, t0 = args.grid, time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    pool = images(args.pool, max(160, 2 * g * TP + 32), 1000)
    evals = {m: images(args.eval_images, m * g * TP, 50_000 + 100 * m) for m in (1, 2, 4)}
    setup = {k: v for k, v in vars(args).items() if k not in ("json", "md", "seeds", "lap", "threads")}
    results: dict[str, list[dict]] = {}
    if args.json and args.json.is_file():
        saved = json.loads(args.json.read_text())
        if saved.get("setup") == setup:
            results = saved["results"]
            log(f"resuming: {len(results)} (seed, model) results in {args.json}")
    laps = [f"lap={lam:g}" for lam in args.lap]
    # priority order, so that a cut run has the main arms at full n: the g-model (every RFR mode), the L_AP weights
    # in the order given, the model trained at 2g
    kinds = ["g", *laps, *([] if args.no_2g else ["2g"])]
    jobs = [(s, k) for k in kinds for s in range(args.seeds)]
    for seed, kind in jobs:
        key = f"{seed}/{kind}"
        if key in results:
            continue
        grid, batch = (2 * g, max(1, args.batch // 4)) if kind == "2g" else (g, args.batch)
        lam = float(kind[4:]) if kind.startswith("lap=") else 0.0
        log(f"seed {seed} {kind}: training {args.steps} steps at {grid} tokens, batch {batch}")
        model = train(grid, seed, args.steps, batch, lam, pool, log)
        results[key] = evaluate(kind, model, g, evals)
        own = next(r["gain_db"] for r in results[key] if r["run_grid"] == ("2g" if kind == "2g" else "1g"))
        log(f"seed {seed} {kind}: done, gain at its own grid {own:+.2f} dB")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps({"setup": setup, "results": results, "summary": summarise(results)}))
            tmp.replace(args.json)
    summary = summarise(results)
    head = (
        f"trained at g = {g} tokens ({g * TP} px), ×2 SR, {args.steps} steps, batch {args.batch}, "
        f"{args.seeds} seeds, {args.eval_images} eval images per size; ± = 95 % t-interval over seeds; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print("\n" + head + "\n" + table(summary))
    if args.md:
        args.md.write_text(head + "\n\n" + table(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
