"""Training checkpoints: an OP4KSR checkpoint folder plus the optimizer and trainer state, safetensors + JSON only.

``<out>/checkpoint-<step:06d>/``: ``op4ksr.json``, ``lora.safetensors``, ``text_embeds.safetensors`` (loadable by
``OP4KSR.from_checkpoint``), ``optimizer.safetensors`` (every tensor of the optimizer state, keyed
``state.<param index>.<name>``) and ``trainer_state.json`` (step, the optimizer's param groups and non-tensor state,
recipe extras). No pickle anywhere, so a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from training.sr.model import OP4KSR

OPT_NAME, STATE_NAME = "optimizer.safetensors", "trainer_state.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def save_checkpoint(out: str | Path, step: int, model: OP4KSR, optimizer: torch.optim.Optimizer, extra: dict) -> Path:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    path = model.save(Path(out) / f"checkpoint-{step:06d}", extra={"step": step})
    save_file(tensors, str(path / OPT_NAME))
    state = {"step": step, "param_groups": sd["param_groups"], "scalars": scalars, "extra": extra}
    (path / STATE_NAME).write_text(json.dumps(state, indent=1))
    return path


def latest_checkpoint(out: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in ``out`` (one with a trainer state), or None."""
    best: tuple[int, Path] | None = None
    for p in Path(out).glob("checkpoint-*"):
        m = _CKPT.match(p.name)
        if m and (p / STATE_NAME).is_file() and (p / OPT_NAME).is_file() and (best is None or int(m[1]) > best[0]):
            best = (int(m[1]), p)
    return best[1] if best else None


def load_training_state(path: Path, model: OP4KSR, optimizer: torch.optim.Optimizer) -> dict:
    """Load LoRA weights and optimizer state from ``path`` into the live objects; returns the trainer state."""
    from peft.utils import set_peft_model_state_dict

    set_peft_model_state_dict(model.transformer, load_file(str(path / "lora.safetensors"), device=str(model.device)))
    state = json.loads((path / STATE_NAME).read_text())
    tensors = load_file(str(path / OPT_NAME))
    opt_state: dict[int, dict] = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        opt_state.setdefault(int(idx), {})[name] = v
    for key, v in state["scalars"].items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    return state
