"""Judge prompts: one preference pair → one (or two mirrored) multimodal prompts, under a pixel budget.

Prompt
    One user turn: a short instruction, then the images, each introduced by a caption, then the answer format.
    The judge reasons inside ``<think>…</think>`` and answers on one line (strict; ``rewards.parse_answer``)::

        <think>…</think><answer>consistency: A; naturalness: tie</answer>

    ``A``/``B`` are *screen* names: which candidate is shown first. The score variant (``answer="score"``) asks for
    one score per candidate and criterion on a 0–10 scale instead::

        <think>…</think><answer>consistency: A=7.5, B=6; naturalness: A=3, B=8.25</answer>

Position bias
    An MLLM judge prefers one position more often than the content justifies. ``order="random"`` shows each pair once
    with A/B drawn by a hash of (pair_id, seed) — balanced over a data set and reproducible; ``order="mirror"`` emits
    both orders, so every pair's position effect cancels in the reward and the model sees each verdict both ways.
    Labels are mapped to screen terms per example (candidate ``a`` shown second → label ``a`` becomes ``B``).

Pixel budget (4K candidates)
    A 4096² candidate is 16.8 Mpx; Qwen2.5-VL spends one token per 28×28 px (14-px patches, 2×2 merge), so it would
    cost ~21K tokens per image. The policy sends, per pair, a *global view* and *aligned native crops*:

    1. Global view: LR, A and B resized to one common size (gh, gw) with the candidates' aspect ratio, the largest
       with gh·gw ≤ ``global_max_pixels`` and both sides multiples of 28 (so the processor does not resize again).
       The LR is resampled to the same size (upsampled, bicubic) so a position means the same thing in all three.
    2. Crops (only when the global view is a downscale, i.e. fine detail was lost): ``n_crops`` windows of
       ``crop_size``² px taken at the *same* location in A and B at native resolution, plus the LR window at that
       location (side crop_size / s, s = candidate / LR width) upsampled to crop_size². Window corners are multiples
       of s, so the LR window is exact. Locations: ``detail`` (default) picks the windows with the most LR gradient
       energy (where SR methods differ), greedily without overlap; ``center``; ``random`` (seeded by pair_id).

    Images per prompt = 3·(1 + n_crops); vision tokens ≈ 3·(gh·gw + n_crops·crop_size²) / 784. Default
    (448² global, one 448² crop): 6 images, ~1.5K vision tokens per prompt, whatever the candidate size.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field, model_validator

from schemas.labels import CRITERIA

PATCH_MULTIPLE = 28  # Qwen2-VL / 2.5-VL: 14-px patches merged 2×2 → one token per 28×28 px
PROMPT_VERSION = "refreward-prompt/1"

CRITERIA_TEXT = {
    "consistency": "consistency — is the candidate faithful to the low-resolution input (same content, colours and "
    "structures, nothing invented or lost)?",
    "naturalness": "naturalness — does the candidate look like a real high-resolution photograph (no artifacts, "
    "halos, noise or over-smoothing)?",
}


class PixelBudget(BaseModel):
    """How many pixels of a pair the judge sees (see the module docstring for the policy)."""

    global_max_pixels: int = Field(448 * 448, ge=PATCH_MULTIPLE**2, description="Max pixels of each global view image")
    crop_size: int = Field(448, ge=0, description="Side (px) of the native-resolution crops of A and B; 0 = no crops")
    n_crops: int = Field(1, ge=0, le=8, description="Aligned crops per pair (when the global view is a downscale)")
    crop_policy: Literal["detail", "center", "random"] = Field("detail", description="Where the crops go")

    @model_validator(mode="after")
    def _check(self) -> PixelBudget:
        if self.crop_size % PATCH_MULTIPLE:
            fix = max(PATCH_MULTIPLE, round(self.crop_size / PATCH_MULTIPLE) * PATCH_MULTIPLE)
            raise ValueError(
                f"pixel_budget.crop_size={self.crop_size} must be a multiple of {PATCH_MULTIPLE} (the judge's token "
                f"size) so crops are not resampled again: set it to {fix}"
            )
        if self.n_crops > 0 and self.crop_size == 0:
            raise ValueError("pixel_budget.n_crops > 0 needs a crop_size: set crop_size (e.g. 448) or n_crops: 0")
        return self

    def max_image_pixels(self) -> int:
        """The largest single image this budget sends (the processor's max_pixels must be at least this)."""
        return max(self.global_max_pixels, self.crop_size**2 if self.n_crops else 0)


@dataclass(slots=True)
class Views:
    """What the judge sees of one (LR, A, B): images in prompt order and where each came from."""

    images: list[Image.Image]
    captions: list[str]
    global_size: tuple[int, int]  # (height, width) of the global view
    crops: list[tuple[int, int, int]] = field(default_factory=list)  # (y, x, side) in candidate pixels


@dataclass(slots=True)
class Example:
    """One prompt: a pair in one screen order, with its labels in screen terms."""

    example_id: str  # "<pair_id>:ab" (a shown as A) or "<pair_id>:ba"
    pair_id: str
    swap: bool  # True: candidate b is shown as A
    prompt: list[dict[str, Any]]
    images: list[Image.Image]
    labels: dict[str, str]  # criterion -> "A" | "B" | "tie"
    votes: dict[str, dict[str, int]]  # criterion -> {"A": n, "B": n, "tie": n}
    agreement: dict[str, float]

    def row(self) -> dict[str, Any]:
        """A datasets/TRL row: ``prompt`` + ``images`` + flat label columns the reward functions read as kwargs."""
        r: dict[str, Any] = {
            "prompt": self.prompt,
            "images": self.images,
            "example_id": self.example_id,
            "pair_id": self.pair_id,
            "swap": self.swap,
        }
        for c in CRITERIA:
            r[f"label_{c}"] = self.labels[c]
            r[f"agreement_{c}"] = float(self.agreement[c])
            for k in ("A", "B", "tie"):
                r[f"votes_{c}_{k}"] = int(self.votes[c][k])
        return r


def to_pil(img: Any) -> Image.Image:
    """PIL RGB from a PIL image, an HxWx3 (or HxW) uint8 array, or a float array / torch tensor in [0, 1]
    (HxWx3, or 3xHxW as SR models output it; rounded to 8 bits)."""
    if isinstance(img, Image.Image):
        return img if img.mode == "RGB" else img.convert("RGB")
    if hasattr(img, "detach"):  # torch tensor
        img = img.detach().float().cpu().numpy()
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    if arr.dtype != np.uint8:
        raise TypeError(f"images must be PIL, uint8 arrays or float arrays in [0, 1], got dtype {arr.dtype}")
    return Image.fromarray(arr).convert("RGB")


def _round_to(x: float, m: int) -> int:
    return max(m, round(x / m) * m)


def global_size(h: int, w: int, max_pixels: int) -> tuple[int, int]:
    """(gh, gw): aspect of (h, w), gh·gw ≤ max_pixels, sides multiples of 28, never larger than needed."""
    scale = min(1.0, math.sqrt(max_pixels / (h * w)))
    gh, gw = _round_to(h * scale, PATCH_MULTIPLE), _round_to(w * scale, PATCH_MULTIPLE)
    while gh * gw > max_pixels and max(gh, gw) > PATCH_MULTIPLE:  # rounding up can overshoot by one step
        if gh >= gw:
            gh -= PATCH_MULTIPLE
        else:
            gw -= PATCH_MULTIPLE
    return gh, gw


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "little")


def crop_locations(
    lr: np.ndarray, scale: int, side: int, n: int, policy: str, key: str, hr_hw: tuple[int, int]
) -> list[tuple[int, int]]:
    """Top-left corners (y, x) in candidate pixels, multiples of ``scale``, of ``n`` windows of ``side`` px."""
    H, W = hr_hw
    side = min(side, H, W)
    ls = max(1, side // scale)  # window side on the LR
    max_y, max_x = (H - side) // scale, (W - side) // scale  # in LR pixels
    if n <= 0:
        return []
    if policy == "center":
        return [(max_y // 2 * scale, max_x // 2 * scale)] * n
    if policy == "random":
        rng = np.random.default_rng(_seed(key, "crops"))
        return [(int(rng.integers(0, max_y + 1)) * scale, int(rng.integers(0, max_x + 1)) * scale) for _ in range(n)]
    # detail: gradient energy of the LR luma, summed over each window by an integral image, greedy non-overlapping.
    g = lr.astype(np.float32).mean(axis=2)
    energy = np.zeros_like(g)
    energy[:, 1:] += np.diff(g, axis=1) ** 2
    energy[1:, :] += np.diff(g, axis=0) ** 2
    ii = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    stride = max(1, ls // 4)
    ys, xs = np.arange(0, max_y + 1, stride), np.arange(0, max_x + 1, stride)
    if ys[-1] != max_y:
        ys = np.append(ys, max_y)
    if xs[-1] != max_x:
        xs = np.append(xs, max_x)
    Y, X = np.meshgrid(ys, xs, indexing="ij")
    sums = ii[Y + ls, X + ls] - ii[Y, X + ls] - ii[Y + ls, X] + ii[Y, X]
    chosen: list[tuple[int, int]] = []
    for idx in np.argsort(-sums, axis=None, kind="stable"):
        y, x = int(Y.flat[idx]), int(X.flat[idx])
        if all(abs(y - cy) >= ls or abs(x - cx) >= ls for cy, cx in chosen):
            chosen.append((y, x))
        if len(chosen) == n:
            break
    while len(chosen) < n:  # image too small for n disjoint windows: repeat the best
        chosen.append(chosen[0])
    return [(y * scale, x * scale) for y, x in chosen]


def render_views(lr: Any, a: Any, b: Any, budget: PixelBudget, key: str = "") -> Views:
    """Apply the pixel-budget policy to one (LR, first-shown, second-shown) triple; see the module docstring."""
    lr, a, b = to_pil(lr), to_pil(a), to_pil(b)
    if b.size != a.size:  # candidates of one LR have one size; a stray one is brought to A's size, not rejected
        b = b.resize(a.size, Image.Resampling.LANCZOS)
    W, H = a.size
    gh, gw = global_size(H, W, budget.global_max_pixels)
    images = [lr.resize((gw, gh), Image.Resampling.BICUBIC)]
    images += [im.resize((gw, gh), Image.Resampling.LANCZOS) for im in (a, b)]
    captions = [
        "the low-resolution input (LR), resized to the candidates' view",
        "candidate A, whole image",
        "candidate B, whole image",
    ]
    crops: list[tuple[int, int, int]] = []
    downscaled = gh * gw < H * W * 0.999
    if budget.n_crops > 0 and budget.crop_size > 0 and downscaled:
        scale = max(1, round(W / lr.size[0]))
        # side: a multiple of 28 (no resampling by the processor) and of the scale (a whole LR window)
        step = math.lcm(PATCH_MULTIPLE, scale)
        side = (min(budget.crop_size, H, W) // step) * step or (min(H, W) // scale) * scale
        lr_arr = np.asarray(lr)
        locs = crop_locations(lr_arr, scale, side, budget.n_crops, budget.crop_policy, key, (H, W))
        for i, (y, x) in enumerate(locs, 1):
            box = (x, y, x + side, y + side)
            lbox = (x // scale, y // scale, (x + side) // scale, (y + side) // scale)
            images += [lr.crop(lbox).resize((side, side), Image.Resampling.BICUBIC), a.crop(box), b.crop(box)]
            where = f"crop {i} at x={x}, y={y}, {side}x{side} px at native resolution"
            captions += [f"LR, {where} (upsampled)", f"candidate A, {where}", f"candidate B, {where}"]
            crops.append((y, x, side))
    return Views(images=images, captions=captions, global_size=(gh, gw), crops=crops)


def instruction(answer: str = "verdict") -> str:
    crit = "\n".join(f"- {CRITERIA_TEXT[c]}" for c in CRITERIA)
    if answer == "score":
        fmt = (
            "Score each candidate from 0 (worst) to 10 (best) on each criterion. First reason inside "
            "<think></think>, then answer exactly in this form:\n"
            "<think>...</think><answer>consistency: A=<score>, B=<score>; naturalness: A=<score>, B=<score></answer>"
        )
    else:
        fmt = (
            "For each criterion say which candidate is better: A, B, or tie. First reason inside <think></think>, "
            "then answer exactly in this form:\n"
            "<think>...</think><answer>consistency: A|B|tie; naturalness: A|B|tie</answer>"
        )
    return f"Compare candidates A and B on two criteria:\n{crit}\n{fmt}"


def build_prompt(views: Views, answer: str = "verdict") -> list[dict[str, Any]]:
    """Conversational prompt with one ``{"type": "image"}`` placeholder per image (TRL / chat-template format)."""
    content: list[dict[str, Any]] = [
        {"type": "text", "text": "You judge two super-resolution results (A, B) of the same low-resolution photo.\n"}
    ]
    for i, cap in enumerate(views.captions, 1):
        content += [{"type": "text", "text": f"Image {i}: {cap}.\n"}, {"type": "image"}]
        content.append({"type": "text", "text": "\n"})
    content.append({"type": "text", "text": instruction(answer)})
    return [{"role": "user", "content": content}]


def order_for(pair_id: str, seed: int) -> bool:
    """Deterministic coin for ``order="random"``: True = swap (candidate b shown as A)."""
    return bool(_seed(pair_id, str(seed), "order") & 1)


def to_screen(label: str, swap: bool) -> str:
    """Candidate-term label ("a" | "b" | "tie") → screen term ("A" | "B" | "tie") for one display order."""
    if label == "tie":
        return "tie"
    if label not in ("a", "b"):
        raise ValueError(f"label must be 'a', 'b' or 'tie', got {label!r}")
    return {"a": "B", "b": "A"}[label] if swap else label.upper()


def to_candidate(verdict: str, swap: bool) -> str:
    """Screen term ("A" | "B" | "tie") → candidate term ("a" | "b" | "tie")."""
    if verdict == "tie":
        return "tie"
    return {"A": "b", "B": "a"}[verdict] if swap else verdict.lower()


def make_examples(
    sample: Any, budget: PixelBudget, order: str = "random", seed: int = 0, answer: str = "verdict"
) -> list[Example]:
    """Prompts for one ``data.PreferenceSample``: one (``order="random"``) or both (``"mirror"``) screen orders."""
    rec = sample.rec
    lr, a, b = sample.load()
    swaps = [False, True] if order == "mirror" else [order_for(rec.pair_id, seed)]
    out = []
    for swap in swaps:
        first, second = (b, a) if swap else (a, b)
        views = render_views(lr, first, second, budget, key=rec.pair_id)
        labels, votes, agreement = {}, {}, {}
        for c in CRITERIA:
            labels[c] = to_screen(getattr(rec, c), swap)
            va, vb, vt = (getattr(rec, f"{c}_votes_{k}") for k in ("a", "b", "tie"))
            votes[c] = {"A": vb, "B": va, "tie": vt} if swap else {"A": va, "B": vb, "tie": vt}
            agreement[c] = float(getattr(rec, f"{c}_agreement"))
        out.append(
            Example(
                example_id=f"{rec.pair_id}:{'ba' if swap else 'ab'}",
                pair_id=rec.pair_id,
                swap=swap,
                prompt=build_prompt(views, answer),
                images=views.images,
                labels=labels,
                votes=votes,
                agreement=agreement,
            )
        )
    return out
