"""Rollout throughput of the RefReward judge on a GPU: transformers ``generate`` and, when installed, vLLM.

No weights are downloaded: the model is a random-initialised Qwen2.5-VL with the published 3B or 7B architecture
(``training.reward.tiny.realistic_config``), fed real judge prompts (``training.reward.examples``: LR + A + B global
views and one aligned crop each, 6 images of 448² px, ~1.5K vision tokens per prompt). Random weights generate
random tokens, so every rollout is forced to the full ``--new-tokens`` length (EOS ignored): the numbers are the
cost of a GRPO group's rollouts at that completion length. The tokenizer is the tiny offline one (its ids are a
subset of the real vocabulary), so nothing is decoded.

    python benchmarks/reward_gpu.py                       # 3B, batch 1/8/32, 256 new tokens
    python benchmarks/reward_gpu.py --size 7b --batch 1,16
    python benchmarks/reward_gpu.py --tiny                # CPU smoke mode: the tiny model, tiny images

Prints one table row per (backend, batch): seconds per batch, rollouts/s, generated tokens/s, peak GPU memory, and
the speed-up over transformers at batch 1 measured in the same process. Without a CUDA device (and without --tiny)
it prints "no CUDA device" and exits 0. vLLM runs in its own environment (its wheel pins torch/transformers): run
the script there to get its rows; it is skipped with a note when ``import vllm`` fails.

Dependencies: the script runs from the repository tree (the repo root goes on ``sys.path``; the sr4k package need
not be installed) with torch, transformers and peft (rich comes with transformers' typer) plus ``WHEELS``. On a
machine without network, fetch them here and carry them in the working tree::

    pip download pydantic Pillow pyarrow -d wheels/ --python-version 3.11 --only-binary=:all:
    pip download torchvision==<the version built for that machine's torch> --no-deps -d wheels/
    # there:  pip install --no-index --find-links wheels/ pydantic Pillow pyarrow torchvision

A missing one is named in one line (exit 2); tests/training/test_gpu_scripts_standalone.py runs the script under
``python -S`` with only those distributions importable.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the repository tree: `training` imports without the sr4k package installed
# distributions needed beyond torch, transformers, peft (and their dependencies); pyarrow: schemas.labels;
# torchvision: transformers' Qwen2.5-VL processor classes fail to build without it (the video processor registry)
WHEELS = ("pydantic", "Pillow", "pyarrow", "torchvision")
MODULES = {"Pillow": "PIL"}
_missing = [w for w in WHEELS if importlib.util.find_spec(MODULES.get(w, w)) is None]
if _missing and __name__ == "__main__":
    print(
        f"missing: {' '.join(_missing)} (needed beyond torch/transformers/peft): pip install {' '.join(_missing)}, "
        "or offline: pip download them into wheels/ and pip install --no-index --find-links wheels/ ..."
    )
    raise SystemExit(2)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from training.reward.examples import PixelBudget, build_prompt, render_views  # noqa: E402

console = Console(width=160)


def _triple(side: int, scale: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    lr = rng.integers(0, 256, (side // scale, side // scale, 3), dtype=np.uint8)
    a = np.kron(lr, np.ones((scale, scale, 1), np.uint8))
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    return lr, a, b


def _prompts(processor, budget: PixelBudget, side: int, n: int):
    texts, images = [], []
    for i in range(n):
        views = render_views(*_triple(side, seed=i), budget, key=str(i))
        texts.append(processor.apply_chat_template(build_prompt(views), add_generation_prompt=True, tokenize=False))
        images.append(views.images)
    return texts, images


def _build(args, workdir: Path):
    """(model folder, model, processor, budget, candidate side, device)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from training.reward.judge import load_processor
    from training.reward.tiny import SPECIAL_TOKENS, build_tiny_qwen_vl, realistic_config

    if args.tiny:
        path = build_tiny_qwen_vl(workdir / "tiny")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path).to(device).eval()
        return path, model, load_processor(path), PixelBudget(global_max_pixels=28 * 28, crop_size=28), 56, device
    path = build_tiny_qwen_vl(workdir / "proc")  # only for its processor; the model below is the real size
    processor = load_processor(path)
    ids = {t: processor.tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    cfg = realistic_config(args.size)
    cfg.image_token_id, cfg.video_token_id = ids["<|image_pad|>"], ids["<|video_pad|>"]
    cfg.vision_start_token_id, cfg.vision_end_token_id = ids["<|vision_start|>"], ids["<|vision_end|>"]
    cfg.text_config.eos_token_id = ids["<|im_end|>"]
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
    model.eval()
    return path, model, processor, PixelBudget(global_max_pixels=448 * 448, crop_size=448), 1792, "cuda"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_transformers(model, processor, budget, side, device, batches, new_tokens, repeats):
    rows = []
    processor.tokenizer.padding_side = "left"
    for bs in batches:
        texts, images = _prompts(processor, budget, side, bs)
        inputs = processor(text=texts, images=[im for ims in images for im in ims], padding=True, return_tensors="pt")
        inputs = inputs.to(device)
        gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, temperature=1.0)
        with torch.inference_mode():
            model.generate(**inputs, **{**gen, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(repeats):
                _sync(device)
                t = time.perf_counter()
                out = model.generate(**inputs, **gen)
                _sync(device)
                times.append(time.perf_counter() - t)
        n_new = int(out.shape[1] - inputs["input_ids"].shape[1])
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        rows.append(("transformers", bs, int(inputs["input_ids"].shape[1]), n_new, min(times), peak))
    return rows


def bench_vllm(path: Path, model, processor, budget, side, batches, new_tokens, repeats):
    try:
        from vllm import LLM, SamplingParams
    except ImportError as e:
        console.print(f"[yellow]vLLM not installed ({e.__class__.__name__}): its rows are skipped[/]")
        return []
    vdir = path.parent / "vllm-model"
    model.save_pretrained(vdir, safe_serialization=True)
    processor.save_pretrained(vdir)
    del model
    gc.collect()
    torch.cuda.empty_cache()
    llm = LLM(
        model=str(vdir),
        limit_mm_per_prompt={"image": 3 * (1 + budget.n_crops)},
        gpu_memory_utilization=0.6,
        max_model_len=8192,
        seed=0,
    )
    params = SamplingParams(
        temperature=1.0, max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True, detokenize=False
    )
    rows = []
    for bs in batches:
        texts, images = _prompts(processor, budget, side, bs)
        reqs = [{"prompt": t, "multi_modal_data": {"image": ims}} for t, ims in zip(texts, images, strict=True)]
        llm.generate(reqs[:1], SamplingParams(max_tokens=2), use_tqdm=False)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            outs = llm.generate(reqs, params, use_tqdm=False)
            times.append(time.perf_counter() - t)
        n_prompt = max(len(o.prompt_token_ids) for o in outs)
        rows.append(("vllm", bs, n_prompt, len(outs[0].outputs[0].token_ids), min(times), float("nan")))
    return rows


def table(rows, title: str) -> Table:
    t = Table(title=title)
    for col in (
        "backend",
        "batch",
        "prompt tokens",
        "new tokens",
        "s / batch",
        "rollouts/s",
        "tokens/s",
        "peak GiB",
        "× transformers bs=1",
    ):
        t.add_column(col, justify="left" if col == "backend" else "right")
    base = next((r[3] * r[1] / r[4] for r in rows if r[0] == "transformers" and r[1] == rows[0][1]), None)
    for backend, bs, n_prompt, n_new, sec, peak in rows:
        tps = bs * n_new / sec
        t.add_row(
            backend,
            str(bs),
            str(n_prompt),
            str(n_new),
            f"{sec:.3f}",
            f"{bs / sec:.2f}",
            f"{tps:.1f}",
            f"{peak:.1f}" if peak == peak else "-",
            f"{tps / base:.2f}" if base else "-",
        )
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=["3b", "7b"], default="3b", help="Qwen2.5-VL architecture to instantiate")
    ap.add_argument("--batch", default=None, help="Comma-separated prompts per generate call [1,8,32; tiny: 1,4]")
    ap.add_argument("--new-tokens", type=int, default=None, help="Tokens per rollout [256; tiny: 16]")
    ap.add_argument("--repeats", type=int, default=2, help="Timed repeats per row (the best is reported)")
    ap.add_argument("--tiny", action="store_true", help="Tiny model, tiny images: a CPU smoke run of this script")
    ap.add_argument("--no-vllm", action="store_true", help="Skip the vLLM rows")
    args = ap.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        console.print("no CUDA device: this benchmark needs a GPU (use --tiny for the CPU smoke run)")
        return 0
    batches = [int(b) for b in (args.batch or ("1,4" if args.tiny else "1,8,32")).split(",")]
    new_tokens = args.new_tokens or (16 if args.tiny else 256)
    with tempfile.TemporaryDirectory(prefix="refreward-bench-") as tmp:
        path, model, processor, budget, side, device = _build(args, Path(tmp))
        name = "tiny" if args.tiny else f"Qwen2.5-VL-{args.size.upper()} (random init, bf16)"
        gpu = torch.cuda.get_device_name() if device == "cuda" else "CPU"
        rows = bench_transformers(model, processor, budget, side, device, batches, new_tokens, args.repeats)
        if device == "cuda" and not args.no_vllm:
            rows += bench_vllm(Path(path), model, processor, budget, side, batches, new_tokens, args.repeats)
        console.print(table(rows, f"judge rollouts — {name} on {gpu}, {3 * (1 + budget.n_crops)} images/prompt"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
