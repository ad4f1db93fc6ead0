"""An export bundle as a `DualEncoder`: evaluate, distil against or quantize-check the exported artifacts
themselves, per language, with the same code that evaluates torch models (`compact eval BUNDLE`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from compact.errors import CompactError
from compact.models.dual_encoder import DualEncoder, TokenBatch
from compact.models.preprocess import PreprocessConfig
from export.targets import Artifact, Runner, get_target


class BundleEncoder(DualEncoder):
    """Runs a bundle's image and text artifacts on the target's runtime (onnxruntime, OpenVINO, ExecuTorch, ...).

    `prefer_optimized` picks ORT-optimised graphs when the bundle has them. `runners` overrides the runtime per
    tower (used by quantization to evaluate candidate graphs)."""

    def __init__(self, bundle: Path, prefer_optimized: bool = False, runners: Optional[dict[str, Runner]] = None):
        super().__init__()
        from compact.models.tokenizer import load_tokenizer
        from export.bundle import ExportConfig, read_manifest

        self.bundle = Path(bundle)
        self.manifest = m = read_manifest(self.bundle)
        self.embed_dim = int(m["embed_dim"])
        self.preprocess_cfg = PreprocessConfig.from_dict(m["preprocess"])
        self.languages = tuple(m["languages"]) if m.get("languages") else None
        tok = m.get("tokenizer")
        if tok is None:
            raise CompactError(f"{bundle} has no tokenizer, so its text tower cannot be evaluated from text")
        self.tokenizer = load_tokenizer(self.bundle)
        self.variable_length_text = tok.get("pad_to") == "longest"
        self.fixed_length = tok.get("fixed_length")
        self._logit_scale = float(m.get("logit_scale", 100.0))
        self.entries: dict[str, dict] = {}
        for f in m["files"]:
            if bool(f.get("optimized")) == prefer_optimized or f["tower"] not in self.entries:
                self.entries[f["tower"]] = f
        target = get_target(m["target"])
        target.require()
        cfg = ExportConfig(**{k: v for k, v in m.get("export_config", {}).items() if k in ExportConfig.__dataclass_fields__})
        self.runners: dict[str, Runner] = dict(runners or {})
        for tower, f in self.entries.items():
            if tower not in self.runners:
                run = target.runner(Artifact(f["path"], tower, f["precision"], dict(f)), self.bundle, cfg)
                if run is None:
                    raise CompactError(f"{m['target']} artifacts cannot run on this machine "
                                       f"({target.unverified_reason()}); evaluate an onnx/openvino bundle instead")
                self.runners[tower] = run
        self.max_batch = {t: _max_batch(f) for t, f in self.entries.items()}

    def tokenize(self, texts) -> TokenBatch:
        return self.tokenizer(texts)

    def _run(self, tower: str, feeds: dict[str, np.ndarray]) -> torch.Tensor:
        n = len(next(iter(feeds.values())))
        fixed, limit = self.max_batch[tower]
        outs = []
        for s in range(0, n, limit):
            chunk = {k: v[s:s + limit] for k, v in feeds.items()}
            k = len(next(iter(chunk.values())))
            if fixed and k < limit:  # a frozen batch axis: pad with copies of the last row
                chunk = {key: np.concatenate([v, np.repeat(v[-1:], limit - k, 0)]) for key, v in chunk.items()}
            outs.append(np.asarray(self.runners[tower](chunk))[:k])
        return torch.from_numpy(np.concatenate(outs).astype(np.float32))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._run("image", {"pixel_values": pixels.float().numpy()})

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = ids.numpy().astype(np.int64), mask.numpy().astype(np.int64)
        if self.fixed_length:
            ids, mask = ids[:, : self.fixed_length], mask[:, : self.fixed_length]
        return self._run("text", {"input_ids": ids, "attention_mask": mask})

    @property
    def logit_scale(self) -> float:
        return self._logit_scale


def _max_batch(entry: dict) -> tuple[bool, int]:
    """(is the batch axis frozen, the largest batch one call may take) from the manifest's input spec."""
    spec = entry["inputs"][0]
    dyn = spec.get("dynamic_axes", {}).get("0")
    if dyn:
        return False, int(dyn["max"])
    return True, int(spec["shape"][0])
