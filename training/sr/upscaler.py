"""``op4ksr:<checkpoint>`` as a ``pipelines.models.upscalers.Upscaler`` (benchmark harness, candidate runners).

The version hashes the LoRA weights, the cached text embedding and the model config (RFR included), so cached
candidate outputs are invalidated exactly when the checkpoint changes. The base transformer and VAE are identified by
their paths in the config (hashing 24 GB of Flux weights per load would dominate a benchmark).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.sr.model import OP4KSR


@dataclass
class OP4KSRUpscaler:
    name: str
    version: str
    scale: int
    model: OP4KSR
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> OP4KSRUpscaler:
        path = Path(path).expanduser()
        model = OP4KSR.from_checkpoint(path)
        name = path.name if path.name != "model" else path.parent.name
        return cls(f"op4ksr-{name}", f"op4ksr:{model.version()}", model.cfg.scale, model)

    def upscale(self, image: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.model.upscale(image)
