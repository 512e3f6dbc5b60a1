"""Cold-start SFT on the judge's answer *format*, not its verdicts (a step before GRPO for a judge that cannot yet
write the strict answer; benchmarks/training_direction.py).

A random or small judge almost never writes ``<think>…</think><answer>consistency: X; naturalness: Y</answer>``,
so every rollout scores 0, every group's reward has zero spread and GRPO has no gradient (TRL: the advantages are
all 0). DeepSeek-R1 and VisualQuality-R1 start from a short supervised "cold start" on well-formed answers. Here the
targets carry verdicts drawn uniformly from {A, B, tie} independently of the labels, so the SFT teaches the format
while leaving the preference to GRPO: a judge after this step answers well-formed and at chance (≈ 1/3 per
criterion when ties are labels, 1/2 when the label is A or B and the judge rarely says tie).

Loss: next-token cross-entropy on the completion tokens only (the prompt, images included, is masked with −100),
one example per forward, ``batch`` examples accumulated per AdamW step. Writes a judge folder (safetensors weights,
processor, ``refreward.json``) that ``training.reward.judge.load_judge`` and the GRPO recipe load.

Optional ``describe``: a function of the example's *images only* (the PIL views in prompt order) whose text replaces
``compare`` inside ``<think>…</think>``, e.g. a colour word per image computed from its pixels
(benchmarks/training_direction.py). It teaches a judge that ignores its images to look at each one by position — the
ability a pre-trained MLLM brings — while the verdicts stay random as above. It is called with the images and never
with the example, so it cannot read the labels: the cold start carries no preference information either way
(tests/training/reward/test_reward_formatsft.py swaps the labels and gets identical targets).

Optional ``verdict``: a function of the example's *images only* that gives the SFT's (consistency, naturalness)
verdicts in place of the random draws. Random verdicts are fitted best by a verdict that ignores the prompt (in two
tiny-judge seeds that GRPO never taught, the hidden state at the verdict varied 6–13× less across prompts after the
cold start than in one that learns; benchmarks/training_direction.py). A verdict read from the LR alone
(``lr_verdicts`` there) carries no preference either — the LR is the same in both screen orders of a mirrored pair
while the label swaps, so it agrees with the label in exactly half the prompts — but it can only be fitted by reading
the prompt. Measured there: it gave the verdict more spread in two blind seeds of three and moved one of them
half-way; it is an option, not the benchmark's default.

Optional ``verdict_target="uniform"``: at the verdict tokens the loss is the cross-entropy to the uniform
distribution over {A, B, tie}, −(1/3) Σ_v log p(v), instead of the cross-entropy to one verdict drawn at random. Its
gradient is the *expectation* of the random draw's gradient (E_v[∇ −log p(v)] with v uniform): the same cold start
with the draw's per-example noise integrated out (a Rao–Blackwellised target); the verdict tokens fed as context
(teacher forcing) are still the random draws. The hypothesis it tested: the draws are labels the judge cannot predict
from the prompt, and fitting that noise is what makes the verdict ignore the prompt and leaves GRPO at a blind saddle
in about half the seeds. Refuted (benchmarks/training_direction.py, 2026-12-08): with the uniform target the
verdict's spread across prompts after the cold start is as small as with the draws (sd P(A) 0.0003–0.02). Yet GRPO
then taught 6 of 9 seeds against 4 of 9 with the draws (held-out mean 0.75 against 0.70, paired seeds; not a
significant difference), so the benchmark uses it by default; here the default stays ``draw``, the target this
module has always written. It needs each verdict to be one token (checked).

Optional before both: ``align`` — single-image captioning, the analogue of LLaVA's stage 1 ("pre-training for feature
alignment": image–caption pairs, one short caption per image, loss on the caption only; Liu et al. 2023, Visual
Instruction Tuning §5) and of Qwen-VL's first, image–text stage. A real judge starts from an MLLM that has been
through such a stage; a tiny random one has not, and multi-image SFT alone leaves its image → text path at a saddle
(benchmarks/training_direction.py: describe SFT of 1,500 steps reached 0.36–0.58 description accuracy; 300 steps
after 1,000 align steps reach 0.72). Differences from LLaVA, and why: every weight trains (LLaVA freezes the LLM and
the vision encoder to keep what they learnt; here both are random, there is nothing to keep), and the captions are a
function of each image's pixels (``caption``) rather than web alt-text. The prompt is one image and a fixed
instruction; the images are the training examples' views, never the held-out ones, and never with a label.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.reward.examples import PROMPT_VERSION, PixelBudget, make_examples
from training.reward.judge import JUDGE_META, load_model, load_processor

VERDICTS = ("A", "B", "tie")
VERDICT_KEYS = ("consistency: ", "naturalness: ")


def verdict_token_ids(tok: Any) -> list[int]:
    """The token id of each of VERDICTS as it follows a verdict key in a target (``"consistency: A"``); ValueError
    when a verdict is not exactly one token there (the uniform target is over single tokens)."""
    ids = []
    head = tok(VERDICT_KEYS[0].rstrip(), add_special_tokens=False)["input_ids"]  # the space goes with the verdict
    for v in VERDICTS:
        full = tok(VERDICT_KEYS[0] + v, add_special_tokens=False)["input_ids"]
        if full[: len(head)] != head or len(full) != len(head) + 1:
            raise ValueError(f"verdict_target 'uniform' needs one-token verdicts; {v!r} is {full[len(head) :]}")
        ids.append(full[-1])
    return ids


def verdict_positions(tok: Any, target: str, input_ids: list[int]) -> list[int]:
    """Indices in ``input_ids`` (a prompt followed by ``target`` + ``<|im_end|>``) of the verdict tokens of
    ``target``: the token after each of VERDICT_KEYS. ValueError when the tail of ``input_ids`` is not ``target``'s
    own tokenization (the prompt and the target would then share a token)."""
    enc = tok(target + "<|im_end|>", return_offsets_mapping=True, add_special_tokens=False)
    ids, offs = enc["input_ids"], enc["offset_mapping"]
    n = len(ids)
    if list(input_ids[-n:]) != ids:
        raise ValueError("the target's tokens are not the tail of the input: cannot place the verdict tokens")
    starts = [target.index(key) + len(key) for key in VERDICT_KEYS]
    return [len(input_ids) - n + k for k, (a, b) in enumerate(offs) if any(a <= at < b for at in starts)]


def uniform_verdict_loss(logits: Any, labels: Any, positions: list[int], verdict_ids: list[int]) -> Any:
    """Mean next-token cross-entropy over the labelled tokens of one example (HF's loss), where the term of each
    verdict token in ``positions`` is −mean_v log p(v) over ``verdict_ids`` instead (module docstring)."""
    logp = logits[0, :-1].float().log_softmax(-1)
    tgt = labels[0, 1:]
    keep = tgt != -100
    ce = -logp.gather(1, tgt.clamp(min=0)[:, None])[:, 0]
    for p in positions:
        if int(labels[0, p]) not in verdict_ids:
            raise ValueError(f"token {p} is not a verdict")
        ce[p - 1] = -logp[p - 1, verdict_ids].mean()
    return (ce * keep).sum() / keep.sum()


def format_target(rng: random.Random, think: str = "compare", verdicts: tuple[str, str] | None = None) -> str:
    """A well-formed verdict answer after ``think``: verdicts drawn at random (the format, no preference), or the
    given (consistency, naturalness) pair."""
    c, n = verdicts if verdicts is not None else (rng.choice(VERDICTS), rng.choice(VERDICTS))
    return f"<think>{think}</think><answer>consistency: {c}; naturalness: {n}</answer>"


def target_for(
    ex: Any,
    rng: random.Random,
    describe: Callable[[list[Any]], str] | None = None,
    verdict: Callable[[list[Any]], tuple[str, str]] | None = None,
) -> str:
    """The SFT target of one example: ``describe`` and ``verdict`` see ``ex.images`` only (never ``ex.labels`` /
    ``ex.votes``)."""
    think = "compare" if describe is None else describe(list(ex.images))
    return format_target(rng, think, None if verdict is None else verdict(list(ex.images)))


def param_groups(model: Any, lr: float, vision_lr: float | None = None) -> list[dict[str, Any]]:
    """AdamW parameter groups: every trainable parameter at ``lr`` (default), or with ``vision_lr`` the vision
    tower's (names containing ``visual``) at ``vision_lr`` — 0 freezes them — and the rest at ``lr``."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if vision_lr is None:
        return [{"params": [p for _, p in params]}]
    vision = [p for n, p in params if "visual" in n]
    if vision_lr == 0:
        for p in vision:
            p.requires_grad_(False)
    groups = [{"params": [p for n, p in params if "visual" not in n], "lr": lr}]
    return groups + ([{"params": vision, "lr": vision_lr}] if vision_lr > 0 else [])


ALIGN_INSTRUCTION = "colour"


def align_prompt(processor: Any) -> str:
    """The align stage's prompt: one image and ``ALIGN_INSTRUCTION``, in the processor's chat template, ready for the
    caption (``align`` trains on it; evaluations ask the same)."""
    msg = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ALIGN_INSTRUCTION}]}]
    return processor.apply_chat_template(msg, add_generation_prompt=True, tokenize=False)


def align(
    base: str | Path,
    images: list[Any],
    caption: Callable[[Any], str],
    out: str | Path,
    steps: int = 1000,
    lr: float = 3e-3,
    batch: int = 32,
    seed: int = 0,
    log: Callable[[int, float], None] | None = None,
) -> Path:
    """Single-image caption SFT (module docstring): ``batch`` images a step drawn from ``images``, target
    ``caption(image)`` + ``<|im_end|>``, loss on the target tokens only; writes a checkpoint folder (safetensors and
    processor) that ``train`` takes as its ``base``. ``log(step, loss)`` is called every 100 steps and at the end."""
    import torch

    if not images:
        raise ValueError("align needs at least one image")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = load_model(base, "cpu", torch.float32).train()
    processor = load_processor(base)
    prompt = align_prompt(processor)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        pick = [rng.choice(images) for _ in range(batch)]
        # one forward per (image size, caption): those rows have equal token counts, so they batch without padding
        groups: dict[tuple, list[tuple[Any, str]]] = {}
        for im in pick:
            cap = caption(im)
            groups.setdefault((im.size, cap), []).append((im, cap))
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for rows in groups.values():
            ims = [im for im, _ in rows]
            n = processor(text=[prompt], images=ims[:1], return_tensors="pt")["input_ids"].shape[1]
            full = processor(text=[prompt + cap + "<|im_end|>" for _, cap in rows], images=ims, return_tensors="pt")
            labels = full["input_ids"].clone()
            labels[:, :n] = -100
            loss = model(**full, labels=labels).loss * len(rows) / batch
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if log is not None and (step % 100 == 0 or step == steps - 1):
            log(step, total)
    out = Path(out)
    model.eval().save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)
    return out


def train(
    base: str | Path,
    samples: list[Any],
    out: str | Path,
    steps: int = 60,
    budget: dict | None = None,
    seed: int = 0,
    lr: float = 1e-3,
    batch: int = 4,
    describe: Callable[[list[Any]], str] | None = None,
    max_new_tokens: int = 48,
    vision_lr: float | None = None,
    verdict: Callable[[list[Any]], tuple[str, str]] | None = None,
    verdict_target: str = "draw",
) -> Path:
    """The cold-start SFT (module docstring); ``verdict_target``: ``draw`` (cross-entropy to the random verdict) or
    ``uniform`` (to the uniform distribution over VERDICTS; not with ``verdict``). Returns the judge folder."""
    import torch

    if verdict_target not in ("draw", "uniform"):
        raise ValueError(f"verdict_target must be 'draw' or 'uniform', got {verdict_target!r}")
    if verdict_target == "uniform" and verdict is not None:
        raise ValueError("verdict_target 'uniform' replaces the verdicts' targets: it cannot be used with verdict")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    pb = PixelBudget.model_validate(budget or {})
    model = load_model(base, "cpu", torch.float32).train()
    processor = load_processor(base)
    tok = processor.tokenizer
    verdict_ids = verdict_token_ids(tok) if verdict_target == "uniform" else []
    examples = [ex for s in samples for ex in make_examples(s, pb, order="mirror", seed=seed)]
    if not examples:
        raise ValueError("format SFT needs at least one preference sample")
    opt = torch.optim.AdamW(param_groups(model, lr, vision_lr), lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        for _ in range(batch):
            ex = rng.choice(examples)
            prompt = processor.apply_chat_template(ex.prompt, add_generation_prompt=True, tokenize=False)
            p_ids = processor(text=[prompt], images=ex.images, return_tensors="pt")
            target = target_for(ex, rng, describe, verdict)
            full = processor(text=[prompt + target + "<|im_end|>"], images=ex.images, return_tensors="pt")
            labels = full["input_ids"].clone()
            labels[:, : p_ids["input_ids"].shape[1]] = -100
            if verdict_ids:
                at = verdict_positions(tok, target, full["input_ids"][0].tolist())
                loss = uniform_verdict_loss(model(**full).logits, labels, at, verdict_ids) / batch
            else:
                loss = model(**full, labels=labels).loss / batch
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    out = Path(out)
    model.eval().save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    tok.save_pretrained(out)
    meta = {
        "prompt_version": PROMPT_VERSION,
        "answer": "verdict",
        "pixel_budget": pb.model_dump(),
        "max_new_tokens": max_new_tokens,
        "base_model": str(Path(base).resolve()),
        "stage": "format-sft",
        "steps": steps,
    }
    if describe is not None:
        meta["cold_start"] = "describe"
    if verdict is not None:
        meta["sft_verdicts"] = getattr(verdict, "__name__", "custom")
    if verdict_target != "draw":
        meta["verdict_target"] = verdict_target
    (out / JUDGE_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
