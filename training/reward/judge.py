"""The trained judge as a function ``judge(lr, a, b) -> {"consistency": "A"|"B"|"tie", "naturalness": …} | None``.

``A`` is the first candidate argument, ``B`` the second; ``None`` means the answer was malformed. Both backends
build exactly the training prompt (``examples.render_views`` + ``build_prompt``) from the settings saved beside the
checkpoint (``refreward.json``; defaults for a bare base model) and decode greedily, batched:

- :class:`TransformersJudge` — ``model.generate`` on CPU or GPU, left-padded batches;
- :class:`VLLMJudge` — ``vllm.LLM.generate`` with the images as ``multi_modal_data`` (GPU; needs the vllm extra).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.reward.config import VLLM_FIX
from training.reward.examples import PROMPT_VERSION, PixelBudget, build_prompt, render_views
from training.reward.rewards import parse_answer

JUDGE_META = "refreward.json"


def read_meta(path: str | Path) -> dict[str, Any]:
    """The judge settings saved with a checkpoint; defaults when the folder is a bare base model."""
    p = Path(path) / JUDGE_META
    meta = json.loads(p.read_text()) if p.exists() else {}
    meta.setdefault("prompt_version", PROMPT_VERSION)
    meta.setdefault("answer", "verdict")
    meta.setdefault("pixel_budget", PixelBudget().model_dump())
    meta.setdefault("max_new_tokens", 256)
    return meta


def load_processor(path: str | Path):
    """The checkpoint's processor. ``AutoProcessor`` may return only the tokenizer for a custom class: then load
    the Qwen processor class named in processor_config.json directly."""
    import transformers
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(path)
    if not hasattr(proc, "image_processor"):
        cfg = json.loads((Path(path) / "processor_config.json").read_text())
        proc = getattr(transformers, cfg.get("processor_class", "Qwen2_5_VLProcessor")).from_pretrained(path)
    return proc


def load_model(path: str | Path, device: str = "cpu", dtype: Any = None, attn_implementation: str | None = None):
    import torch
    from transformers import AutoModelForImageTextToText

    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, **kw)
    return model.to(device).eval()


def _chunks(xs: Sequence[Any], n: int):
    for i in range(0, len(xs), n):
        yield xs[i : i + n]


class TransformersJudge:
    """Batched greedy judging with a transformers model (CPU or GPU)."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        budget: PixelBudget | None = None,
        answer: str = "verdict",
        max_new_tokens: int = 256,
        batch_size: int = 8,
    ):
        self.model, self.processor = model, processor
        self.budget = budget or PixelBudget()
        self.answer, self.max_new_tokens, self.batch_size = answer, max_new_tokens, batch_size
        self.last_texts: list[str] = []

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, **kw: Any) -> TransformersJudge:
        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        meta = read_meta(path)
        kw.setdefault("budget", PixelBudget.model_validate(meta["pixel_budget"]))
        kw.setdefault("answer", meta["answer"])
        kw.setdefault("max_new_tokens", meta["max_new_tokens"])
        return cls(load_model(path, device), load_processor(path), **kw)

    def _inputs(self, triples: Sequence[tuple[Any, Any, Any]]):
        texts, images = [], []
        for lr, a, b in triples:
            views = render_views(lr, a, b, self.budget)
            prompt = build_prompt(views, self.answer)
            texts.append(self.processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False))
            images.extend(views.images)
        self.processor.tokenizer.padding_side = "left"
        return self.processor(text=texts, images=images, padding=True, return_tensors="pt")

    def generate(self, triples: Sequence[tuple[Any, Any, Any]]) -> list[str]:
        """Raw completions (greedy) for (lr, A, B) triples."""
        import torch

        out: list[str] = []
        for chunk in _chunks(list(triples), self.batch_size):
            inputs = self._inputs(chunk).to(self.model.device)
            with torch.inference_mode():
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            new = ids[:, inputs["input_ids"].shape[1] :]
            out += self.processor.batch_decode(new, skip_special_tokens=True)
        return out

    def judge_batch(self, triples: Sequence[tuple[Any, Any, Any]]) -> list[dict[str, str] | None]:
        self.last_texts = self.generate(triples)
        return [parse_answer(t, self.answer) for t in self.last_texts]

    def __call__(self, lr: Any, a: Any, b: Any) -> dict[str, str] | None:
        return self.judge_batch([(lr, a, b)])[0]


class VLLMJudge:
    """Batched greedy judging with vLLM (GPU). The checkpoint must be a full model (LoRA merged: the recipe's
    default ``merge_lora: true``)."""

    def __init__(
        self,
        path: str | Path,
        budget: PixelBudget | None = None,
        answer: str | None = None,
        max_new_tokens: int | None = None,
        gpu_memory_utilization: float = 0.5,
        **llm_kwargs: Any,
    ):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise RuntimeError(f"backend='vllm' needs the vllm package: {VLLM_FIX}") from e
        meta = read_meta(path)
        self.budget = budget or PixelBudget.model_validate(meta["pixel_budget"])
        self.answer = answer or meta["answer"]
        self.processor = load_processor(path)
        n_images = 3 * (1 + self.budget.n_crops)
        self.llm = LLM(
            model=str(path),
            limit_mm_per_prompt={"image": n_images},
            gpu_memory_utilization=gpu_memory_utilization,
            **llm_kwargs,
        )
        self.params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens or meta["max_new_tokens"])
        self.last_texts: list[str] = []

    def judge_batch(self, triples: Sequence[tuple[Any, Any, Any]]) -> list[dict[str, str] | None]:
        requests = []
        for lr, a, b in triples:
            views = render_views(lr, a, b, self.budget)
            text = self.processor.apply_chat_template(
                build_prompt(views, self.answer), add_generation_prompt=True, tokenize=False
            )
            requests.append({"prompt": text, "multi_modal_data": {"image": views.images}})
        outs = self.llm.generate(requests, self.params, use_tqdm=False)
        self.last_texts = [o.outputs[0].text for o in outs]
        return [parse_answer(t, self.answer) for t in self.last_texts]

    def __call__(self, lr: Any, a: Any, b: Any) -> dict[str, str] | None:
        return self.judge_batch([(lr, a, b)])[0]


def load_judge(path: str | Path, backend: str = "transformers", device: str | None = None, **kw: Any):
    """A judge callable for a checkpoint folder; ``backend`` is "transformers" or "vllm"."""
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p} is not a judge checkpoint (no config.json): train one with `sr4k train-reward`")
    if backend == "transformers":
        return TransformersJudge.from_pretrained(p, device=device, **kw)
    if backend == "vllm":
        return VLLMJudge(p, **kw)
    raise ValueError(f"backend {backend!r}: choose 'transformers' or 'vllm'")
